"""UPnP failures are logged, never raised: without miniupnpc, and with a gateway search that fails.

No test here sends anything: the search is replaced by a fake ``miniupnpc`` module (a real search would
multicast on the machine's network; the netns tests run the real one inside their namespaces, where no
gateway answers, and check that the node goes on).
"""

from __future__ import annotations

import logging
import sys
import types
from typing import Any

import pytest

from butter_wider_ambassador import map_port

pytestmark = pytest.mark.anyio


def fake_miniupnpc(monkeypatch: pytest.MonkeyPatch, **behaviour: Any) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []

    class UPnP:
        discoverdelay = 0
        lanaddr = "10.1.0.10"

        def discover(self) -> int:
            if behaviour.get("search_error"):
                raise Exception("Miniupnpc Socket error")
            return int(behaviour.get("devices", 1))

        def selectigd(self) -> None:
            pass

        def externalipaddress(self) -> str:
            return "198.51.100.7"

        def addportmapping(self, *args: Any) -> bool:
            calls.append(("add", *args))
            return bool(behaviour.get("accept", True))

        def deleteportmapping(self, *args: Any) -> bool:
            calls.append(("delete", *args))
            return True

    module = types.ModuleType("miniupnpc")
    module.UPnP = UPnP  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "miniupnpc", module)
    return calls


async def test_without_miniupnpc_nothing_is_mapped(monkeypatch: pytest.MonkeyPatch, caplog: Any) -> None:
    monkeypatch.setitem(sys.modules, "miniupnpc", None)  # import raises ImportError
    with caplog.at_level(logging.INFO):
        assert await map_port(7000) is None
    assert "miniupnpc is not installed" in caplog.text


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [
        ({"search_error": True}, "the gateway search (SSDP) failed (Miniupnpc Socket error)"),
        ({"devices": 0}, "no gateway answered the search"),
        ({"accept": False}, "the gateway refused the mapping"),
    ],
)
async def test_failures_are_logged_not_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: Any, behaviour: dict[str, Any], reason: str
) -> None:
    fake_miniupnpc(monkeypatch, **behaviour)
    with caplog.at_level(logging.INFO):
        assert await map_port(7000) is None
    assert f"UPnP: port 7000 not mapped: {reason}; going on without it" in caplog.text


async def test_a_mapping_is_made_and_removed(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_miniupnpc(monkeypatch)
    mapping = await map_port(7000)
    assert mapping is not None and (mapping.external_host, mapping.external_port) == ("198.51.100.7", 7000)
    await mapping.remove()
    assert calls == [("add", 7000, "TCP", "10.1.0.10", 7000, "butter node", ""), ("delete", 7000, "TCP")]
