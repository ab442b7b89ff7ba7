"""The ``single`` persistence driver beyond the kit: what it keeps survives a restart with a durable store,
and it offers its capabilities. Asyncio and trio."""

from __future__ import annotations

from pathlib import Path

import pytest

import butter
from butter.capabilities import Counters, ItemHolders, KeptItems
from butter.errors import IncompleteItem
from butter.slots import Persistence

pytestmark = pytest.mark.anyio


def settings(data_dir: Path) -> butter.ButterSettings:
    return butter.ButterSettings(
        host="127.0.0.1", data_dir=data_dir, store={"driver": "sqlite"},
        transport={"driver": "memory", "options": {"network": f"single-{data_dir.name}"}},
        discovery={"drivers": []}, persistence={"driver": "single"}, retrieval={"driver": ""},
    )


async def test_items_are_kept_again_after_a_restart(tmp_path: Path) -> None:
    async with butter.open_node(settings(tmp_path)) as node:
        content_id = await node.store(b"kept across restarts")
        single = node.capability(KeptItems)
        assert isinstance(single, Persistence) and set(single.kept_items()) == {content_id}
        with pytest.raises(IncompleteItem):
            await single.keep("0" * 64)
    async with butter.open_node(settings(tmp_path)) as node:
        single = node.capability(KeptItems)
        assert single is not None and set(single.kept_items()) == {content_id}
        assert isinstance(single, ItemHolders) and single.holders(content_id) == [node.address]
        assert isinstance(single, Counters) and single.counters() == {"items_kept": 1, "keeps_refused": 0}
