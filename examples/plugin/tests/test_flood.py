"""What is particular to butter-retrieve-flood, on real nodes on Butter's in-process memory transport: it is
selected by a setting alone, validates its options, finds items within its hop limit and no further, and
each node answers a query once. Runs on asyncio and trio.

The ``Retrieval`` slot's general promises (byte-for-byte retrieval across hops, streaming, missing and
invalid ids, corrupted holders, concurrency) are checked by Butter's conformance kit, in
``test_conformance.py``; these tests borrow its overlay builder, which pins who knows whom.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

import butter
from butter import installed_drivers
from butter.slots import Retrieval
from butter.testing.conformance_retrieval import RetrievalFactory, line
from butter_retrieve_flood import FloodRetrieval

pytestmark = pytest.mark.anyio
MakeSettings = Callable[..., butter.ButterSettings]


def flood(node: butter.Node) -> FloodRetrieval:
    assert isinstance(node.retrieval, FloodRetrieval)
    return node.retrieval


async def test_selected_by_a_setting_alone(memory_settings: MakeSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "flood" in installed_drivers("butter.retrieval")  # the entry point, from this package's metadata
    monkeypatch.setenv("BUTTER_RETRIEVAL__DRIVER", "flood")
    monkeypatch.setenv("BUTTER_RETRIEVAL__OPTIONS__TTL", "2")
    base = memory_settings()
    settings = butter.load_settings(transport=base.transport.model_dump(), discovery={"drivers": []},
                                    persistence={"driver": ""})  # nothing else names the driver
    async with butter.open_node(settings) as node:
        assert node.plugins.selected("retrieval") == ["flood"]
        assert isinstance(node.retrieval, Retrieval) and flood(node).ttl == 2
        assert "flood-query" in node.routes


async def test_a_misspelt_option_is_refused_naming_it(memory_settings: MakeSettings) -> None:
    with pytest.raises(butter.ButterConfigError, match="tll"):
        async with butter.open_node(memory_settings(retrieval={"driver": "flood", "options": {"tll": 3}})):
            pass


async def test_finds_within_the_hop_limit_and_not_beyond() -> None:
    # a line 0 - 1 - 2 - 3: from node 3, node 0 is 3 hops away, i.e. 2 hops beyond the first peer
    async with RetrievalFactory("flood", {"ttl": 2, "hop_timeout": 0.5}).open_overlay(line(4)) as net:
        data = bytes(range(256)) * 20
        content_id = (await net.hold(0, data)).content_id
        assert await net.retrieve(3, content_id) == data
    async with RetrievalFactory("flood", {"ttl": 1, "hop_timeout": 0.5}).open_overlay(line(4)) as net:
        content_id = (await net.hold(0, b"too far")).content_id
        assert await net.retrieve(2, content_id) == b"too far"
        with pytest.raises(butter.ItemNotFound, match="within 1 hops"):
            await net.retrieve(3, content_id)


async def test_each_node_answers_a_query_once() -> None:
    mesh = {0: [], 1: [0], 2: [0, 1], 3: [0, 1, 2], 4: [0, 1, 2, 3]}  # each node knows every earlier one
    async with RetrievalFactory("flood", {"ttl": 4, "hop_timeout": 0.5}).open_overlay(mesh) as net:
        with pytest.raises(butter.ItemNotFound):
            await net.retrieve(4, "ab" * 32)  # nobody has it: the flood reaches everyone it can
        assert [flood(n).counters()["queries_answered"] for n in net.nodes[:4]] == [1, 1, 1, 1]
