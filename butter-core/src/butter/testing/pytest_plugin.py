"""The ``butter`` pytest plugin (entry point ``pytest11``): fixtures for testing dapps and plugins.

* ``memory_settings``: a factory ``(**overrides) -> ButterSettings`` for nodes on one fresh, private
  memory network with static discovery, so tests never touch a real network. The stack is minimal (no
  persistence, no retrieval) unless ``persistence=...`` or ``retrieval=...`` is passed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from ..settings import ButterSettings

__all__ = ["memory_settings", "memory_settings_factory"]


def memory_settings_factory(network: str) -> Callable[..., ButterSettings]:
    def make(**overrides: Any) -> ButterSettings:
        values: dict[str, Any] = {
            "host": "127.0.0.1",
            "transport": {"driver": "memory", "options": {"network": network}},
            "discovery": {"drivers": ["static"]},
            "persistence": {"driver": ""},
            "retrieval": {"driver": ""},
        }
        values.update(overrides)
        return ButterSettings(**values)

    return make


@pytest.fixture
def memory_settings() -> Callable[..., ButterSettings]:
    return memory_settings_factory(f"test-{uuid.uuid4().hex[:8]}")
