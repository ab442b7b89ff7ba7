"""What the conformance kits share: the settings of a node on a private memory network."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, NoReturn

from ..settings import ButterSettings


def private_network(kit: str) -> str:
    """A memory-network name no other test uses, e.g. ``retrieval-kit-3f9c…``."""
    return f"{kit}-kit-{uuid.uuid4().hex[:12]}"


def kit_settings(network: str, settings: Mapping[str, Any], **slot: dict[str, Any]) -> ButterSettings:
    """A node on memory network ``network`` with no discovery, persistence or retrieval; ``settings`` (the
    factory's) over that; the slot under test (``retrieval={"driver": ..., "options": ...}``) over all."""
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "transport": {"driver": "memory", "options": {"network": network}},
        "discovery": {"drivers": []},
        "persistence": {"driver": ""},
        "retrieval": {"driver": ""},
        **settings,
        **slot,
    }
    return ButterSettings(**values)


def not_promised(reason: str) -> NoReturn:
    """Skip the running check: the driver under test does not promise what it checks, as its factory says
    (``reason`` names the promise). The kits run under pytest; this raises pytest's skip exception."""
    import pytest

    pytest.skip(reason)
