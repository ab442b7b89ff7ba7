import importlib.metadata
import logging
import re
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest
from stevedore import ExtensionManager

import butter
from butter import _catalogue
from butter._catalogue import DISTRIBUTIONS, STACK, effective_discovery, missing_driver_message, readable_list
from butter._plugins import PluginStack, load_driver
from butter.errors import ButterConfigError
from butter.settings import ButterSettings

MakeSettings = Callable[..., ButterSettings]

FIRST_COME = '''
"""A third-party host manager: keeps the first hosts offered, never evicts (the naive rule)."""
import anyio
from pydantic import BaseModel
import butter
from butter.wire import decode_payload


class FirstComeHostManager:
    def __init__(self, node, limit):
        self.node, self.limit, self.hosts = node, limit, {}

    @property
    def capacity(self):
        return self.limit

    def peers(self):
        return list(self.hosts.values())

    def sample(self, k):
        return self.peers()[:k]

    async def offer(self, address):
        if address in self.hosts or len(self.hosts) >= self.limit:
            return address in self.hosts
        try:
            ping = decode_payload(await self.node.request(address, "ping"))
        except butter.ButterError:
            return False
        self.hosts[address] = butter.PeerInfo(ping["id"], address)
        return True

    def report_dead(self, address):
        self.hosts.pop(address, None)

    def known_by(self):
        return 0

    async def run(self, *, task_status):
        task_status.started()


class FirstComePlugin:
    class Options(BaseModel):
        limit: int = 4

    def __init__(self, options):
        self.options = options

    @butter.hookimpl
    def butter_host_manager(self, node):
        return FirstComeHostManager(node, self.options.limit)
'''


@pytest.fixture
def third_party(tmp_path: Path) -> Iterator[str]:
    """A throwaway distribution 'butter-firstcome', installed onto sys.path with its entry point."""
    (tmp_path / "butter_firstcome.py").write_text(FIRST_COME)
    dist_info = tmp_path / "butter_firstcome-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: butter-firstcome\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(
        textwrap.dedent("""\
        [butter.host_manager]
        firstcome = butter_firstcome:FirstComePlugin
        """)
    )
    sys.path.insert(0, str(tmp_path))
    ExtensionManager.ENTRY_POINT_CACHE.clear()  # stevedore caches entry points per process: act as a new one
    try:
        yield "firstcome"
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("butter_firstcome", None)
        ExtensionManager.ENTRY_POINT_CACHE.clear()


def test_builtin_entry_points_are_installed() -> None:
    assert "memory" in butter.installed_drivers("butter.transport")
    assert "static" in butter.installed_drivers("butter.discovery")
    assert "diversity" in butter.installed_drivers("butter.host_manager")


def test_missing_driver_names_group_request_and_installed() -> None:
    with pytest.raises(ButterConfigError) as info:
        load_driver("butter.transport", "carrier-pigeon", {})
    message = str(info.value)
    assert "butter.transport" in message and "carrier-pigeon" in message and "memory" in message


def test_a_missing_default_driver_names_its_distribution_and_the_stack() -> None:
    assert missing_driver_message("butter.persistence", "pcg") == (
        "the persistence driver 'pcg' is not installed: pip install butter-persist-pcg, or pip install "
        "butter-stack for the whole default stack (entry-point group butter.persistence; installed: "
        + ", ".join(butter.installed_drivers("butter.persistence")) + ")")
    ambassador = missing_driver_message("butter.discovery", "ambassador")
    assert "pip install butter-wider-ambassador (" in ambassador and STACK not in ambassador


def test_a_near_miss_of_a_driver_not_installed_names_its_install_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_catalogue, "installed_drivers", lambda group: [])
    assert missing_driver_message("butter.retrieval", "bsf") == (
        "no retrieval driver 'bsf' is installed: did you mean 'bfs' (pip install butter-retrieve-bfs, or pip "
        "install butter-stack for the whole default stack)? (entry-point group butter.retrieval; installed: none)")
    assert "did you mean" not in missing_driver_message("butter.retrieval", "zzz")


def test_stevedore_never_reports_a_missing_driver_itself(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ButterConfigError, match="did you mean 'memory'"):
        load_driver("butter.transport", "memroy", {})
    assert not [record for record in caplog.records if record.name.startswith("stevedore")]


def test_the_distribution_table_matches_the_installed_metadata() -> None:
    for (group, name), distribution in DISTRIBUTIONS.items():
        entry_points = importlib.metadata.distribution(distribution).entry_points
        assert any(ep.group == group and ep.name == name for ep in entry_points), (group, name)
    stack = {re.match(r"[\w.-]+", requirement).group()  # type: ignore[union-attr]
             for requirement in importlib.metadata.requires(STACK) or [] if "extra ==" not in requirement}
    defaults = butter.ButterSettings()
    selected = [(group, getattr(defaults, slot).driver) for slot, group in _catalogue.SLOT_GROUPS.items()
                if slot != "discovery"] + [("butter.discovery", name) for name in defaults.discovery.drivers]
    assert stack == {"butter-core"} | {DISTRIBUTIONS[driver] for driver in selected if driver in DISTRIBUTIONS}


def test_peers_add_static_beside_the_configured_discovery(memory_settings: MakeSettings) -> None:
    assert effective_discovery(memory_settings(discovery={"drivers": []}, peers=["default:1"])) == ["static"]
    assert effective_discovery(memory_settings(discovery={"drivers": ["multicast", "multicast"]})) == ["multicast"]
    settings = memory_settings(discovery={"drivers": ["multicast"], "options": {"static": {"interval": 1}}},
                               peers=["default:1"])
    assert effective_discovery(settings) == ["multicast", "static"]
    assert PluginStack(settings).describe() == (
        "transport memory, discovery multicast and static, host manager diversity, persistence none, retrieval none")


def test_readable_list() -> None:
    assert [readable_list(names) for names in ([], ["a"], ["a", "b"], ["a", "b", "c"])] == [
        "none", "a", "a and b", "a, b and c"]


def test_driver_validates_its_own_options() -> None:
    with pytest.raises(ButterConfigError, match="refresh_interval"):
        load_driver("butter.host_manager", "diversity", {"refresh_interval": -1})
    with pytest.raises(ButterConfigError, match="bogus"):
        load_driver("butter.host_manager", "diversity", {"bogus": 1})


def test_only_the_configured_driver_is_loaded(memory_settings: MakeSettings) -> None:
    stack = PluginStack(memory_settings())
    assert stack.selected("transport") == ["memory"]
    assert stack.selected("discovery") == ["static"]
    assert stack.selected("persistence") == []
    drivers = [name for name, _ in stack.pm.list_name_plugin() if not name.startswith("butter.plugins:")]
    assert sorted(drivers) == [  # observers (group butter.plugins) are all loaded, whatever is installed
        "butter.discovery:static", "butter.host_manager:diversity", "butter.transport:memory"]


def test_options_for_a_disabled_discovery_driver_are_refused(memory_settings: MakeSettings) -> None:
    with pytest.raises(ButterConfigError, match="multicast"):
        PluginStack(memory_settings(discovery={"drivers": ["static"], "options": {"multicast": {}}}))


@pytest.mark.anyio
async def test_third_party_plugin_is_selected_by_a_setting_alone(
    memory_settings: MakeSettings, third_party: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert third_party in butter.installed_drivers("butter.host_manager")
    monkeypatch.setenv("BUTTER_HOST_MANAGER__DRIVER", third_party)
    monkeypatch.setenv("BUTTER_HOST_MANAGER__OPTIONS__LIMIT", "1")
    base = memory_settings()
    settings = butter.load_settings(transport=base.transport.model_dump(), host="127.0.0.1",
                                    discovery={"drivers": ["static"]})
    async with butter.open_node(settings) as a:
        assert type(a.hosts).__name__ == "FirstComeHostManager"
        assert a.hosts.capacity == 1
        async with butter.open_node(settings.model_copy(update={"peers": [str(a.address)]})) as b:
            with anyio.fail_after(5):
                while not b.hosts.peers():
                    await anyio.sleep(0.02)
            assert b.hosts.peers()[0].node_id == a.node_id
