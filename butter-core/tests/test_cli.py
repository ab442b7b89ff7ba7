"""The ``butter`` command: help, plugins, settings, error exits, ``peers`` against a live node, and ``node``
run as a real process. Every socket is on 127.0.0.1."""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from typer.testing import CliRunner, Result

import butter
from butter.cli import app
from butter.settings import ButterSettings
from butter.testing.process import RunningProcess

runner = CliRunner()
Pair = tuple[BlockingPortal, butter.Node, butter.Node]
TCP_MISSING = "butter_transport_tcp is not installed"


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No stray butter.toml or BUTTER_* variable; logging configuration restored after each test."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("BUTTER_"):
            monkeypatch.delenv(name)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return runner.invoke(app, list(args), env=env)


def tcp_installed() -> bool:
    try:
        import butter_transport_tcp  # noqa: F401
    except ImportError:
        return False
    return True


# -- help and version --------------------------------------------------------------------------------------


def test_help_lists_every_command() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("node", "peers", "plugins", "settings"):
        assert re.search(rf"\b{command}\b", result.output)


def test_no_arguments_shows_help() -> None:
    result = invoke()
    assert "Usage" in result.output and "node" in result.output


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.output.strip() == f"butter {butter.__version__}"


@pytest.mark.parametrize("command", ["node", "peers", "plugins", "settings"])
def test_command_help_has_examples(command: str) -> None:
    result = invoke(command, "--help")
    assert result.exit_code == 0
    assert "Examples" in result.output and f"butter {command}" in result.output


def test_help_keeps_the_example_lines_apart() -> None:
    output = invoke("node", "--help").output
    assert "\n    butter node --host 127.0.0.1 --port 9000\n    butter node --host 127.0.0.1 --port 9001" in output


def python_modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter has imported after running ``code`` (``butter`` commands run with
    their output discarded)."""
    script = f"import sys, contextlib, io\n{code}\nprint(' '.join(sorted(sys.modules)), file=sys.__stderr__)"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUTTER_")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    return set(result.stderr.split())


HEAVY = {"anyio", "pydantic", "pydantic_settings", "rich", "stevedore", "pluggy", "cryptography", "butter.node"}


def run_cli(*args: str) -> str:
    return (f"from butter.cli import app\nwith contextlib.redirect_stdout(io.StringIO()):\n"
            f"    try: app({list(args)!r})\n    except SystemExit: pass")


def test_import_butter_and_help_import_nothing_heavy() -> None:
    """``import butter`` and ``butter --help`` start quickly: their names are imported when first used."""
    assert not HEAVY & python_modules_after("import butter")
    assert not HEAVY & python_modules_after(run_cli("--help"))
    assert not {"stevedore", "pluggy", "cryptography", "butter.node"} & python_modules_after(run_cli("plugins"))


def test_every_export_resolves_lazily() -> None:
    assert set(butter._EXPORTS) == set(butter.__all__)  # type: ignore[attr-defined]
    for name, module in butter._EXPORTS.items():  # type: ignore[attr-defined]
        assert getattr(butter, name) is getattr(importlib.import_module(module, "butter"), name)
    assert set(butter.__all__) <= set(dir(butter))
    with pytest.raises(AttributeError, match="no attribute 'Nde'"):
        butter.Nde  # type: ignore[attr-defined]  # noqa: B018


def test_node_help_names_its_options() -> None:
    output = invoke("node", "--help").output
    for option in ("--config", "--host", "--port", "--data-dir", "--peer", "--transport", "--discovery",
                   "--log-level", "--backend"):
        assert option in output


# -- plugins -----------------------------------------------------------------------------------------------


def plugin_rows(*args: str, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    result = invoke("plugins", "--json", *args, env=env)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert isinstance(rows, list)
    return rows


def test_plugins_lists_the_core_drivers() -> None:
    rows = plugin_rows()
    by_slot = {(row["slot"], row["name"]): row for row in rows}
    assert by_slot["transport", "memory"]["target"] == "butter.testing.memory:MemoryTransportPlugin"
    assert by_slot["discovery", "static"]["target"] == "butter._static:StaticDiscoveryPlugin"
    assert by_slot["host_manager", "diversity"]["selected"] is True
    assert by_slot["transport", "memory"]["selected"] is False  # tcp is the default transport
    table = invoke("plugins").output
    for name in ("memory", "static", "diversity", "butter.hosts:DiversityHostManagerPlugin"):
        assert name in table


@pytest.mark.skipif(not tcp_installed(), reason=TCP_MISSING)
def test_plugins_lists_tcp_once_installed() -> None:
    rows = {(row["slot"], row["name"]): row for row in plugin_rows()}
    assert rows["transport", "tcp"]["installed"] is True
    assert rows["transport", "tcp"]["distribution"].startswith("butter-transport-tcp")


def test_plugins_selection_follows_env_config_and_extra_args(tmp_path: Path) -> None:
    def selected(rows: list[dict[str, Any]]) -> set[tuple[str, str]]:
        return {(row["slot"], row["name"]) for row in rows if row["selected"]}

    rows = plugin_rows(env={"BUTTER_TRANSPORT__DRIVER": "memory", "BUTTER_DISCOVERY__DRIVERS": '["static"]'})
    assert {("transport", "memory"), ("discovery", "static")} <= selected(rows)
    config = tmp_path / "other.toml"
    config.write_text('[butter.transport]\ndriver = "memory"\n')
    assert ("transport", "memory") in selected(plugin_rows("--config", str(config)))
    assert ("transport", "memory") in selected(plugin_rows("--transport.driver", "memory"))


def test_plugins_marks_a_selected_driver_that_is_missing() -> None:
    rows = plugin_rows(env={"BUTTER_TRANSPORT__DRIVER": "carrier-pigeon"})
    missing = [row for row in rows if row["name"] == "carrier-pigeon"]
    assert missing == [
        {"slot": "transport", "group": "butter.transport", "name": "carrier-pigeon", "target": "-",
         "distribution": "-", "selected": True, "installed": False}
    ]
    assert "not installed" in invoke("plugins", env={"BUTTER_TRANSPORT__DRIVER": "carrier-pigeon"}).output


def option_rows(*args: str) -> dict[str, dict[str, Any]]:
    result = invoke("plugins", "--options", *args, "--json")
    assert result.exit_code == 0, result.output
    return {row["name"]: row for row in json.loads(result.stdout)}


def test_plugins_options_prints_every_option_of_a_driver() -> None:
    from butter.hosts import DiversityOptions

    rows = option_rows("diversity")
    assert list(rows) == list(DiversityOptions.model_fields)
    assert rows["capacity"] == {
        "slot": "host_manager", "driver": "diversity", "name": "capacity", "type": "int ≥ 1, or unset",
        "default": "unset", "description": "hosts kept; unset: from the memory budget",
        "key": "host_manager.options.capacity", "env": "BUTTER_HOST_MANAGER__OPTIONS__CAPACITY"}
    assert (rows["refresh_interval"]["type"], rows["refresh_interval"]["default"]) == ("float > 0", "10.0")
    assert rows["random_factor"]["type"] == "0 ≤ float ≤ 1"
    table = invoke("plugins", "--options", "host_manager:diversity").output
    assert "options of the host manager driver diversity" in table
    for name in DiversityOptions.model_fields:
        assert name in table
    first = next(iter(DiversityOptions.model_fields)).upper()  # the footer's example sets the first option
    assert f"BUTTER_HOST_MANAGER__OPTIONS__{first}=VALUE" in table and "[butter.host_manager.options]" in table


def test_plugins_options_of_a_discovery_driver_name_its_nested_key() -> None:
    rows = option_rows("discovery:static")
    assert rows["peers"]["type"] == "list[str]" and rows["peers"]["default"] == "[]"
    assert rows["interval"]["env"] == "BUTTER_DISCOVERY__OPTIONS__STATIC__INTERVAL"
    assert "--discovery.options '{\"static\": {\"peers\": VALUE}}'" in invoke("plugins", "--options", "static").output


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("divrsity", "no host manager driver 'divrsity' is installed: did you mean 'diversity'?"),
        ("transport:memroy", "no transport driver 'memroy' is installed: did you mean 'memory'?"),
        ("carrier-pigeon", "no driver 'carrier-pigeon' is installed for any slot"),
        ("courier:memory", "no slot 'courier'"),
    ],
)
def test_plugins_options_of_a_missing_driver_is_one_line(spec: str, says: str) -> None:
    result = invoke("plugins", "--options", spec)
    assert result.exit_code == 2
    assert says in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_plugins_names_the_fix_for_a_selected_driver_that_is_missing() -> None:
    result = invoke("plugins", env={"BUTTER_RETRIEVAL__DRIVER": "flod"})
    assert "no retrieval driver 'flod' is installed" in result.stderr


# -- settings and error exits ------------------------------------------------------------------------------


def test_settings_json_merges_file_env_and_extra_args(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text("[butter]\nport = 1234\nrequest_timeout = 7\n")
    result = invoke("settings", "--json", "--config", str(config), "--request_timeout", "3",
                    env={"BUTTER_CONNECT_TIMEOUT": "2"})
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["port"], data["request_timeout"], data["connect_timeout"]) == (1234, 3, 2)


def test_settings_toml_round_trips(tmp_path: Path) -> None:
    result = invoke("settings", "--toml", "--port", "4321", "--peers", '["127.0.0.1:9"]')
    assert result.exit_code == 0, result.output
    assert tomllib.loads(result.stdout)["butter"]["port"] == 4321
    config = tmp_path / "written.toml"
    config.write_text(result.stdout)
    again = json.loads(invoke("settings", "--json", "--config", str(config)).stdout)
    expected = json.loads(invoke("settings", "--json", "--port", "4321", "--peers", '["127.0.0.1:9"]').stdout)
    assert again == expected


def test_settings_table_shows_where_to_set_each_key() -> None:
    output = invoke("settings").output
    assert "BUTTER_TRANSPORT__DRIVER" in output and "transport.driver" in output and "memory_budget" in output


def setting_row(output: str, key: str) -> list[str]:
    """The cells of the table row for ``key`` (its first line)."""
    line = next(line for line in output.splitlines() if re.match(rf"│ {re.escape(key)} ", line))
    return [cell.strip() for cell in line.strip("│").split("│")]


def test_settings_show_sizes_in_binary_units() -> None:
    output = invoke("settings").output
    assert setting_row(output, "memory_budget")[1] == "512MiB"
    assert setting_row(output, "max_frame")[1] == "4MiB" and setting_row(output, "store.block_size")[1] == "4KiB"
    assert setting_row(invoke("settings", "--memory_budget", "1500000").output, "memory_budget")[1] == "1500000"
    toml = tomllib.loads(invoke("settings", "--toml").stdout)["butter"]
    assert toml["memory_budget"] == "512MiB" and toml["store"]["block_size"] == "4KiB"
    assert json.loads(invoke("settings", "--json").stdout)["memory_budget"] == 512 * 1024 * 1024


def test_settings_show_every_option_of_the_selected_drivers() -> None:
    output = invoke("settings", "--host_manager.options", '{"refresh_interval": 3}').output
    assert setting_row(output, "host_manager.options.refresh_interval")[1:3] == [
        "3.0", "BUTTER_HOST_MANAGER__OPTIONS__REFRESH_INTERVAL"]
    assert setting_row(output, "host_manager.options.exchange_interval")[1] == "10.0"  # a default, filled in
    assert "host_manager.options " not in output  # no raw `{}` row left


def test_settings_show_the_discovery_drivers_the_node_runs() -> None:
    assert setting_row(invoke("settings").output, "discovery.drivers")[1] == '["multicast"]'
    output = invoke("settings", env={"BUTTER_PEERS": '["127.0.0.1:9"]'}).output
    row = setting_row(output, "discovery.drivers")
    assert row[1] == '["multicast", "static"]' and "static added because peers are set" in output
    assert setting_row(output, "discovery.options.static.interval")[1] == "2.0"


def test_settings_of_a_missing_driver_say_how_to_install_it() -> None:
    result = invoke("settings", "--persistence.driver", "pgc")
    assert result.exit_code == 0, result.output
    assert "no persistence driver 'pgc' is installed: did you mean 'pcg'" in result.stderr


def test_settings_with_invalid_driver_options_exit_2_naming_the_option() -> None:
    result = invoke("settings", "--host_manager.options", '{"refresh_interval": -1}')
    assert result.exit_code == 2 and "refresh_interval" in result.stderr and "Traceback" not in result.output


def test_slot_options_alone_keep_the_default_driver() -> None:
    result = invoke("settings", "--json", "--host_manager.options", '{"capacity": 8}')
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["host_manager"] == {"driver": "diversity", "options": {"capacity": 8}}


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (["node", "--port", "99999"], "port"),
        (["node", "--memory_budget", "1KiB"], "memory_budget"),
        (["node", "--peer", "nonsense"], "peers"),
        (["node", "--no_such_setting", "1"], "no_such_setting"),
        (["node", "--config", "missing.toml"], "missing.toml"),
        (["settings", "--request_timeout", "soon"], "request_timeout"),
        (["plugins", "--port", "-1"], "port"),
    ],
)
def test_invalid_settings_exit_2_naming_the_key(args: list[str], key: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert "error" in result.stderr and key in result.stderr
    assert "Traceback" not in result.output


def test_node_with_a_missing_driver_exits_2() -> None:
    result = invoke("node", "--transport", "carrier-pigeon", "--discovery", "static", "--host", "127.0.0.1")
    assert result.exit_code == 2
    assert "carrier-pigeon" in result.stderr and "memory" in result.stderr  # names the installed ones


def test_node_with_a_misspelt_driver_suggests_the_right_one_in_one_line() -> None:
    result = invoke("node", "--transport", "memroy", "--discovery", "static", "--host", "127.0.0.1")
    assert result.exit_code == 2
    assert result.stderr.strip() == ("error: no transport driver 'memroy' is installed: did you mean 'memory'? "
                                     "(entry-point group butter.transport; installed: " +
                                     ", ".join(butter.installed_drivers("butter.transport")) + ")")


def test_backend_trio_without_trio_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "trio", None)  # as if not installed: find_spec and import both fail
    result = invoke("node", "--backend", "trio", "--transport", "memory", "--discovery", "static")
    assert result.exit_code == 2
    assert result.stderr.strip() == ("error: --backend trio needs trio, which is not installed: "
                                     "pip install 'butter-core[trio]'")


def test_peers_rejects_a_malformed_address() -> None:
    result = invoke("peers", "not-an-address")
    assert result.exit_code == 2 and "HOST:PORT" in result.stderr


# -- peers against a live node -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def tcp_pair() -> Iterator[tuple[BlockingPortal, butter.Node, butter.Node]]:
    """Two TCP nodes on 127.0.0.1 served by an event loop in another thread (reach it through the portal);
    ``b`` knows ``a``."""
    pytest.importorskip("butter_transport_tcp", reason=TCP_MISSING)
    settings = ButterSettings(host="127.0.0.1", transport={"driver": "tcp"}, discovery={"drivers": []},
                              persistence={"driver": ""})
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(butter.open_node(settings)) as a,
        portal.wrap_async_context_manager(butter.open_node(settings)) as b,
    ):
        assert portal.call(b.hosts.offer, a.address)
        yield portal, a, b


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_peers_shows_the_known_hosts_of_a_running_node(tcp_pair: Pair, backend: str) -> None:
    _, a, b = tcp_pair
    result = invoke("peers", str(b.address), "--json", "--timeout", "5", "--backend", backend)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["node"]["id"] == b.node_id and report["node"]["known_hosts"] == 1
    assert [host["id"] for host in report["hosts"]] == [a.node_id]
    assert report["hosts"][0]["address"] == str(a.address) and report["complete"] is True
    table = invoke("peers", str(b.address)).output
    assert b.node_id in table and a.node_id in table and "1 of 1 known hosts" in table


def test_peers_is_invisible_to_the_node(tcp_pair: Pair) -> None:
    portal, a, _ = tcp_pair
    assert portal.call(a.quality).known_by == 1  # b holds a (its admission probe said so)
    assert invoke("peers", str(a.address)).exit_code == 0
    assert portal.call(a.hosts.peers) == [] and portal.call(a.quality).known_by == 1


def test_peers_of_an_unreachable_node_exits_1() -> None:
    pytest.importorskip("butter_transport_tcp", reason=TCP_MISSING)
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = invoke("peers", address, "--timeout", "2")
    assert result.exit_code == 1
    assert f"cannot query {address}" in result.stderr and "Traceback" not in result.output
    assert time.monotonic() - started < 15


# -- butter node as a real process -------------------------------------------------------------------------


def Running(*args: str, cwd: Path) -> RunningProcess:
    """``butter ARGS`` as a real process, without any BUTTER_* variable from the test environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUTTER_")}
    return RunningProcess([sys.executable, "-m", "butter.cli", *args], cwd=cwd, env=env)


def test_node_runs_until_sigint_then_leaves_gracefully(tmp_path: Path) -> None:
    node = Running("node", "--transport", "memory", "--discovery", "static", "--host", "127.0.0.1", cwd=tmp_path)
    try:
        node.wait_for(r"butter node [0-9a-f]{32}")
        node.wait_for(r"listening on \S+")
        node.wait_for(r"listening on default:\d+ \(memory transport: the in-process network 'default'; nothing "
                      r"outside this process can reach it\)")
        node.wait_for(r"^  transport memory, discovery static, host manager diversity, persistence \w+")
        node.wait_for(r"INFO .*butter\.node")  # INFO logs are shown by default
        assert node.stop(signal.SIGINT) == 0, node.output
        node.wait_for("left gracefully")
    finally:
        node.stop(signal.SIGKILL)


@pytest.mark.skipif(not tcp_installed(), reason=TCP_MISSING)
def test_two_nodes_log_peers_joining_and_leaving(tmp_path: Path) -> None:
    fast = ["--host_manager.driver", "diversity", "--host_manager.options", '{"refresh_interval": 0.5}']
    first = Running("node", "--host", "127.0.0.1", "--discovery", "static", cwd=tmp_path)
    second = None
    try:
        address = first.wait_for(r"listening on (127\.0\.0\.1:\d+)").group(1)
        second = Running("node", "--host", "127.0.0.1", "--peer", address, "--discovery", "static", *fast,
                         cwd=tmp_path)
        second.wait_for(rf"peer joined: .*{re.escape(address)}")
        assert first.stop(signal.SIGTERM) == 0, first.output
        second.wait_for(rf"peer left: .*{re.escape(address)}")
        assert second.stop(signal.SIGTERM) == 0, second.output
    finally:
        for node in (first, second):
            if node is not None:
                node.stop(signal.SIGKILL)


def test_node_with_a_data_dir_that_is_a_file_exits_2_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("x")
    result = invoke("node", "--data-dir", str(tmp_path / "taken"), "--discovery", "static", "--transport", "memory",
                    "--host", "127.0.0.1")
    assert result.exit_code == 2, result.output
    assert "is not a directory" in result.stderr and "Traceback" not in result.output
    assert len(result.output.splitlines()) < 5, result.output


def test_get_from_an_unreachable_node_names_the_reason() -> None:
    with socket.socket() as unused:  # bound, never listening: nothing answers at this address
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
        result = invoke("get", "a" * 64, "--node", f"127.0.0.1:{port}", "--timeout", "1")
    assert result.exit_code == 1, result.output
    assert f"no answer from 127.0.0.1:{port}" in result.stderr and "is a node running there?" in result.stderr
    assert "TimeoutError" not in result.output
