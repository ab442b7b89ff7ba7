import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest
from stevedore import ExtensionManager

import butter
from butter._plugins import PluginStack, installed_drivers, load_driver
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
    assert "memory" in installed_drivers("butter.transport")
    assert "static" in installed_drivers("butter.discovery")
    assert "diversity" in installed_drivers("butter.host_manager")


def test_missing_driver_names_group_request_and_installed() -> None:
    with pytest.raises(ButterConfigError) as info:
        load_driver("butter.transport", "carrier-pigeon", {})
    message = str(info.value)
    assert "butter.transport" in message and "carrier-pigeon" in message and "memory" in message


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
    assert third_party in installed_drivers("butter.host_manager")
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
