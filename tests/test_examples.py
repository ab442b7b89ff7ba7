"""The ohce and chat examples, end to end: as real processes over TCP on 127.0.0.1, and in-process on the
memory transport (which needs no sockets). Every wait is bounded; every process is killed in a finally."""

from __future__ import annotations

import importlib.util
import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest

import butter
from butter.testing.process import RunningProcess

ROOT = Path(__file__).resolve().parents[1]
OHCE = ROOT / "examples" / "ohce" / "ohce.py"
CHAT = ROOT / "examples" / "chat" / "chat.py"
LISTENING = r"listening on (127\.0\.0\.1:\d+)"


def tcp_installed() -> bool:
    try:
        import butter_transport_tcp  # noqa: F401
    except ImportError:
        return False
    return True


needs_tcp = pytest.mark.skipif(not tcp_installed(), reason="butter_transport_tcp is not installed")


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No stray butter.toml or BUTTER_* variable, and no discovery beyond the addresses a test gives."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("BUTTER_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("BUTTER_DISCOVERY__DRIVERS", "[]")


# -- as real processes -------------------------------------------------------------------------------------


def Running(script: Path, *args: str, stdin: int = subprocess.DEVNULL) -> RunningProcess:
    """An example running as a real process."""
    return RunningProcess([sys.executable, str(script), *args], stdin=stdin)


def run_once(script: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script), *args], env={**os.environ, "PYTHONUNBUFFERED": "1"}, text=True,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
    )


@pytest.fixture
def started() -> Iterator[list[Running]]:
    """Processes a test starts; all killed at the end, whatever happened."""
    processes: list[Running] = []
    yield processes
    for process in processes:
        process.stop(signal.SIGKILL, timeout=10)


def start(started: list[Running], script: Path, *args: str, stdin: int = subprocess.DEVNULL) -> Running:
    process = Running(script, *args, stdin=stdin)
    started.append(process)
    return process


@pytest.mark.parametrize("script", [OHCE, CHAT], ids=["ohce", "chat"])
def test_help(script: Path) -> None:
    result = run_once(script, "--help", timeout=30)
    assert result.returncode == 0
    assert "--peer" in result.stdout and "--port" in result.stdout and "--transport" in result.stdout


@pytest.mark.parametrize("script", [OHCE, CHAT], ids=["ohce", "chat"])
def test_a_bad_peer_address_is_a_usage_error(script: Path) -> None:
    result = run_once(script, "--peer", "no-port-here", timeout=30)
    assert result.returncode == 2 and "--peer" in result.stdout and "Traceback" not in result.stdout


@needs_tcp
@pytest.mark.parametrize(("server_backend", "client_backend"), [("asyncio", "trio"), ("trio", "asyncio")])
def test_ohce_reverses_over_tcp(started: list[Running], server_backend: str, client_backend: str) -> None:
    server = start(started, OHCE, "--host", "127.0.0.1", "--backend", server_backend)
    address = server.wait_for(LISTENING).group(1)
    result = run_once(OHCE, "--send", "héllo wörld", "--to", address, "--backend", client_backend)
    assert result.returncode == 0, result.stdout
    assert f"{address} responded with: dlröw olléh" in result.stdout
    assert server.stop(signal.SIGINT) == 0, server.output


@needs_tcp
def test_ohce_interactive_client_and_prompt_exit(started: list[Running]) -> None:
    server = start(started, OHCE, "--host", "127.0.0.1")
    address = server.wait_for(LISTENING).group(1)
    client = start(started, OHCE, "--host", "127.0.0.1", "--peer", address, stdin=subprocess.PIPE)
    client.wait_for(LISTENING)
    deadline = time.monotonic() + 20
    while True:  # the peer is admitted in the background: until then the client answers "no known peers"
        seen = client.type("stressed")
        reply = client.wait_for(r"responded with: (.*)|no known peers", after=seen)
        if reply.group(1) is not None:
            assert reply.group(1) == "desserts"
            break
        assert time.monotonic() < deadline, client.output
        time.sleep(0.3)
    assert address in reply.string
    # Ctrl-C leaves at once, even while a thread still waits for a line on the open stdin.
    begun = time.monotonic()
    assert client.stop(signal.SIGINT, timeout=15) == 0, client.output
    assert time.monotonic() - begun < 10
    assert server.stop(signal.SIGTERM) == 0, server.output


@needs_tcp
def test_ohce_reports_an_unreachable_peer() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"
    result = run_once(OHCE, "--send", "x", "--to", address, "--timeout", "2")
    assert result.returncode == 1
    assert f"unable to send to {address}" in result.stdout and "Traceback" not in result.stdout


@needs_tcp
def test_chat_delivers_a_message_over_tcp(started: list[Running]) -> None:
    alice = start(started, CHAT, "--host", "127.0.0.1", "--name", "alice")
    address = alice.wait_for(LISTENING).group(1)
    result = run_once(CHAT, "--peer", address, "--name", "bob", "--say", "hi alice", "--wait", "20")
    assert result.returncode == 0, result.stdout
    assert f"* {address} joined" in result.stdout and f"{address}: received" in result.stdout
    alice.wait_for(r"^bob: hi alice$")
    assert alice.stop(signal.SIGINT) == 0, alice.output


@needs_tcp
def test_chat_interactive_lines_reach_the_peer(started: list[Running]) -> None:
    alice = start(started, CHAT, "--host", "127.0.0.1", "--name", "alice")
    address = alice.wait_for(LISTENING).group(1)
    bob = start(started, CHAT, "--host", "127.0.0.1", "--name", "bob", "--peer", address, stdin=subprocess.PIPE)
    bob.wait_for(rf"\* {re.escape(address)} joined")  # the event hook fired
    seen = bob.type("anyone there?")
    bob.wait_for(rf"{re.escape(address)}: received", after=seen)
    alice.wait_for(r"^bob: anyone there\?$")
    assert bob.stop(signal.SIGTERM) == 0, bob.output
    assert alice.stop(signal.SIGINT) == 0, alice.output


@needs_tcp
def test_chat_say_without_peers_gives_up(started: list[Running]) -> None:
    result = run_once(CHAT, "--say", "hello?", "--wait", "1")
    assert result.returncode == 1 and "no peers found within 1.0 s" in result.stdout


# -- in-process, on the memory transport -------------------------------------------------------------------

def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def until_ok(coro_fn: object, *args: object, timeout: float = 10) -> None:
    """Call ``await coro_fn(*args)`` until it returns 0 (the server may not be listening yet)."""
    with anyio.fail_after(timeout):
        while await coro_fn(*args) != 0:  # type: ignore[operator]
            await anyio.sleep(0.05)


@pytest.mark.anyio
async def test_ohce_in_process(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    ohce = load(OHCE)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # the server's stdin is at its end at once
    port = 40000 + os.getpid() % 20000
    async with anyio.create_task_group() as tg:
        tg.start_soon(ohce.main, ohce.parse_args(["--transport", "memory", "--port", str(port)]))
        client = ohce.parse_args(["--transport", "memory", "--send", "abc → ✓", "--to", f"default:{port}"])
        await until_ok(ohce.main, client)
        tg.cancel_scope.cancel()
    assert f"default:{port} responded with: ✓ → cba" in capsys.readouterr().out


@pytest.mark.anyio
async def test_chat_in_process(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    chat = load(CHAT)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    port = 40000 + (os.getpid() + 1) % 20000
    async with anyio.create_task_group() as tg:
        tg.start_soon(chat.main, chat.parse_args(["--transport", "memory", "--port", str(port), "--name", "alice"]))
        bob = chat.parse_args(["--transport", "memory", "--peer", f"default:{port}", "--name", "bob",
                               "--say", "hi", "--wait", "0.5"])
        await until_ok(chat.main, bob)
        tg.cancel_scope.cancel()
    out = capsys.readouterr().out
    assert "bob: hi" in out and f"default:{port}: received" in out


# -- persist ------------------------------------------------------------------------------------------------

PERSIST = ROOT / "examples" / "persist" / "persist.py"
FAST_PCG = {  # seconds: heartbeats and host-management polls a few times faster than the defaults
    "BUTTER_PERSISTENCE__OPTIONS__HEARTBEAT_INTERVAL": "0.5",
    "BUTTER_HOST_MANAGER__OPTIONS__REFRESH_INTERVAL": "1.0",
    "BUTTER_HOST_MANAGER__OPTIONS__EXCHANGE_INTERVAL": "0.5",
    "BUTTER_HOST_MANAGER__OPTIONS__QUALITY_TIMEOUT": "1.0",
}


def ask(process: RunningProcess, command: str, pattern: str, timeout: float = 20) -> re.Match[str]:
    return process.wait_for(pattern, timeout, after=process.type(command))


@needs_tcp
def test_persist_help() -> None:
    result = run_once(PERSIST, "--help", timeout=30)
    assert result.returncode == 0 and "--peer" in result.stdout and "--discovery" in result.stdout


@needs_tcp
def test_persist_add_kill_get(started: list[Running], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Add on A, watch its group fill up to 3 replicas, SIGKILL A, get it on C; a file stored on B comes back
    byte for byte on C."""
    pytest.importorskip("butter_persist_pcg", reason="butter-persist-pcg is not installed")
    for name, value in FAST_PCG.items():
        monkeypatch.setenv(name, value)
    a = start(started, PERSIST, "--discovery", "static", stdin=subprocess.PIPE)
    address = a.wait_for(LISTENING).group(1)
    b = start(started, PERSIST, "--peer", address, "--backend", "trio", stdin=subprocess.PIPE)
    c = start(started, PERSIST, "--peer", address, stdin=subprocess.PIPE)
    for process in (b, c):
        process.wait_for(LISTENING)

    for process in (a, b, c):  # until everyone knows everyone (peers are admitted in the background)
        deadline = time.monotonic() + 30
        while int(ask(process, "groups", r"known hosts: (\d+)").group(1)) < 2:
            assert time.monotonic() < deadline, process.output
            time.sleep(0.3)
    stored = ask(a, "add hello, persistent world", r"stored ([0-9a-f]{64}) \(23 bytes\); group: 1 of 3")
    content_id = stored.group(1)
    ask(a, "groups", r"^1 group; known hosts: 2$")
    deadline = time.monotonic() + 30
    while "3 of 3 replicas (goldilocks)" not in ask(a, "groups", rf"^{content_id} ").string:
        assert time.monotonic() < deadline, a.output
        time.sleep(0.3)

    a.stop(signal.SIGKILL)
    found = ask(c, f"get {content_id}", r"^found (\d+) bytes: (.*)$")
    assert found.groups() == ("23", "hello, persistent world")

    original = tmp_path / "in.bin"
    original.write_bytes(os.urandom(50_000))  # 13 blocks of 4 KiB
    file_id = ask(b, f"file {original}", r"stored ([0-9a-f]{64}) \(50000 bytes\)").group(1)
    ask(c, f"get {file_id} {tmp_path / 'out.bin'}", r"^wrote 50000 bytes")
    assert (tmp_path / "out.bin").read_bytes() == original.read_bytes()
    ask(c, "get " + "0" * 64, r"^not found: ")
    found = ask(c, f"get {content_id[:8]}", r"^found (\d+) bytes: (.*)$")  # the start of an id C keeps
    assert found.groups() == ("23", "hello, persistent world")
    ask(c, "get 0000beef", r"^no item this node keeps starts with 0000beef: give the whole id")
    ask(c, "get xyz", r"^an id is 64 hexadecimal characters, or the first 4 or more")
    ask(c, "nonsense", r"^Commands: ")

    b.type("quit")  # leaves gracefully, handing its replicas over
    assert b.proc.wait(20) == 0, b.output
    assert c.stop(signal.SIGINT) == 0, c.output


# -- --peer means what it means for `butter node` ----------------------------------------------------------------

@pytest.mark.parametrize("script", [OHCE, CHAT, PERSIST], ids=lambda path: path.parent.name)
def test_peer_adds_static_discovery_beside_the_configured_drivers(script: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from butter._catalogue import effective_discovery

    module = load(script)
    node_settings = module.node_settings
    monkeypatch.delenv("BUTTER_DISCOVERY__DRIVERS")  # the default: multicast
    settings = node_settings(module.parse_args(["--peer", "127.0.0.1:9"]))
    assert settings.peers == ["127.0.0.1:9"] and effective_discovery(settings) == ["multicast", "static"]
    only_static = node_settings(module.parse_args(["--peer", "127.0.0.1:9", "--discovery", "static"]))
    assert effective_discovery(only_static) == ["static"]
    assert "beside the configured discovery drivers" in " ".join(run_once(script, "--help", timeout=30).stdout.split())


# -- the README's first example runs and shows something ----------------------------------------------------------

ROOT_README = ROOT / "README.md"


def first_example() -> str:
    section = ROOT_README.read_text().split("## A node in a few lines", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None
    return match.group(1)


@needs_tcp
def test_readme_first_example_prints_a_reply(tmp_path: Path) -> None:
    pytest.importorskip("butter_persist_pcg", reason="butter-persist-pcg is not installed")
    pytest.importorskip("butter_retrieve_bfs", reason="butter-retrieve-bfs is not installed")
    (tmp_path / "first.py").write_text(first_example())
    result = subprocess.run([sys.executable, "first.py"], cwd=tmp_path, text=True, timeout=60,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert result.returncode == 0, result.stdout
    assert re.fullmatch(r"127\.0\.0\.1:\d+ answered hello!\n", result.stdout), result.stdout


def test_root_readme_code_compiles() -> None:
    import ast

    blocks = re.findall(r"```python\n(.*?)```", ROOT_README.read_text(), re.S)
    assert blocks and blocks[0] == first_example()
    for block in blocks:
        compile(block, str(ROOT_README), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


# -- examples/README.md: its code is correct against the current API -------------------------------------------

README = ROOT / "examples" / "README.md"


def test_readme_code_compiles() -> None:
    import ast

    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 4
    for block in blocks:  # fragments may await at top level and name things defined elsewhere
        compile(block, str(README), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


@needs_tcp
def test_readme_dapp_and_its_test_run(tmp_path: Path) -> None:
    """The complete files in the README (``# NAME.py: ...``) run: the dapp over TCP on 127.0.0.1, its test
    on the memory transport."""
    pytest.importorskip("butter_persist_pcg", reason="butter-persist-pcg is not installed")
    for block in re.findall(r"```python\n(# (\w+\.py):.*?)```", README.read_text(), re.S):
        (tmp_path / block[1]).write_text(block[0])
    result = subprocess.run([sys.executable, "mydapp.py"], cwd=tmp_path, text=True, timeout=60,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert result.returncode == 0, result.stdout
    assert re.search(r"127\.0\.0\.1:\d+ shouted HELLO", result.stdout), result.stdout
    assert re.search(r"stored [0-9a-f]{64}\nfound b'a note the network keeps'", result.stdout), result.stdout
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_mydapp.py"],
                            cwd=tmp_path, text=True, timeout=60, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert result.returncode == 0 and "2 passed" in result.stdout, result.stdout


# -- wiki: concurrent edits, in process on the memory transport (its pages and CLI: tests/browser) -------------


@pytest.mark.anyio
async def test_wiki_shows_edits_saved_at_once_on_two_nodes_until_an_edit_follows_both(
    memory_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("hypercorn", reason="hypercorn (the wiki's web server) is not installed")
    monkeypatch.syspath_prepend(str(ROOT))
    from examples.wiki.articles import Article, Wiki
    from examples.wiki.web import article_html

    hosts = {"driver": "diversity", "options": {"refresh_interval": 0.2, "exchange_interval": 0.2}}
    async with butter.open_node(memory_settings(host_manager=hosts)) as a, \
            butter.open_node(memory_settings(host_manager=hosts, peers=[str(a.address)])) as b:
        with anyio.fail_after(30):
            while not (a.hosts.peers() and b.hosts.peers()):
                await anyio.sleep(0.05)
        on_a, on_b = Wiki(a), Wiki(b)
        article_id = await on_a.write("Plums", "ripe")
        assert (await on_b.read(article_id)).current.article.body == "ripe"
        for node, text in ((a, "ripe in June"), (b, "ripe in July")):  # fanout 0: neither sees the other's
            await node.append(article_id, Article("Plums", text).to_bytes(), fanout=0)

        seen_by_a, seen_by_b = await on_a.read(article_id), await on_b.read(article_id)  # reads merge both
        assert len(seen_by_a.heads) == len(seen_by_b.heads) == 2
        assert seen_by_a.current == seen_by_b.current  # the same version on every node
        other = next(head for head in seen_by_a.heads if head != seen_by_a.current.revision)
        html = article_html(seen_by_a, seen_by_a.current, mine=True)
        assert 'id="concurrent"' in html and f"/revision/{other}" in html and 'id="delete"' in html

        revision, parents = await on_b.edit(article_id, "Plums", "ripe in summer")  # follows both heads
        assert sorted(parents) == sorted(seen_by_a.heads)
        merged = await on_a.read(article_id)
        assert merged.heads == (revision,) and merged.current.article.body == "ripe in summer"
        assert 'id="concurrent"' not in article_html(merged, merged.current, mine=True)
        assert len(merged.history) == 4
