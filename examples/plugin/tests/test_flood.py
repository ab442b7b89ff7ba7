"""butter-retrieve-flood against the ``Retrieval`` slot protocol (butter.slots), on real nodes on Butter's
in-process memory transport: selected by a setting alone, finds items within its hop limit and no further,
answers each query once, verifies what it fetches. Runs on asyncio and trio.

Butter's conformance kits (``butter.testing.conformance``) cover transports so far; this file checks the
retrieval protocol's promises directly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import anyio
import pytest
from anyio.abc import TaskStatus

import butter
from butter.blocks import chunk
from butter.plugins import installed_drivers
from butter.slots import Retrieval
from butter_retrieve_flood import FloodRetrieval

pytestmark = pytest.mark.anyio
MakeSettings = Callable[..., butter.ButterSettings]


class FixedHosts:
    """A host manager that knows exactly ``addresses``: it pins the overlay's shape (a line, a mesh)."""

    capacity = 0  # admits no one: discovery and exchanges cannot change the shape

    def __init__(self, addresses: list[butter.PeerAddress]) -> None:
        self._peers = [butter.PeerInfo(f"{a.port:064x}", a, butter.HostQuality(), 0.0) for a in addresses]

    def peers(self) -> list[butter.PeerInfo]:
        return list(self._peers)

    def sample(self, k: int) -> list[butter.PeerInfo]:
        return self._peers[:k]

    async def offer(self, address: butter.PeerAddress) -> bool:
        return False

    def report_dead(self, address: butter.PeerAddress) -> None:
        pass

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await anyio.sleep_forever()


class FixedHostsPlugin:  # given to open_node(plugins=...), answers the host-manager factory hook
    def __init__(self, addresses: list[butter.PeerAddress]) -> None:
        self.addresses = addresses

    @butter.hookimpl
    def butter_host_manager(self, node: butter.Node) -> FixedHosts:
        return FixedHosts(self.addresses)


@asynccontextmanager
async def overlay(make: MakeSettings, links: list[list[int]], **options: object) -> AsyncIterator[list[butter.Node]]:
    """Nodes 0..n-1 started in order; node i knows the nodes ``links[i]``, all of lower index."""
    async with AsyncExitStack() as stack:
        nodes: list[butter.Node] = []
        for known in links:
            settings = make(discovery={"drivers": []}, host_manager={"driver": ""},
                            retrieval={"driver": "flood", "options": {"hop_timeout": 0.5, **options}})
            plugin = FixedHostsPlugin([nodes[j].address for j in known])
            nodes.append(await stack.enter_async_context(butter.open_node(settings, plugins=(plugin,))))
        yield nodes


async def hold(node: butter.Node, data: bytes) -> str:
    """Put an item's blocks in ``node``'s store, as persistence would; returns its content id."""
    item = chunk(data, block_size=1024)
    for address, block in item.all_blocks.items():
        await node.blocks.put(address, block)
    return item.content_id


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


async def test_finds_within_the_hop_limit_and_not_beyond(memory_settings: MakeSettings) -> None:
    line = [[], [0], [1], [2]]  # 3 knows 2, 2 knows 1, 1 knows 0: from 3, node 0 is 3 hops away
    async with overlay(memory_settings, line, ttl=2) as nodes:
        data = bytes(range(256)) * 20  # 5 blocks
        content_id = await hold(nodes[0], data)
        assert await nodes[3].retrieve(content_id) == data
        blocks = [block async for block in nodes[3].retrieve_stream(content_id)]
        assert blocks == [data[i:i + 1024] for i in range(0, len(data), 1024)]
        assert await nodes[0].retrieve(content_id) == data  # held locally
    async with overlay(memory_settings, line, ttl=1) as nodes:
        content_id = await hold(nodes[0], b"too far")
        assert await nodes[2].retrieve(content_id) == b"too far"
        with pytest.raises(butter.ItemNotFound, match="within 1 hops"):
            await nodes[3].retrieve(content_id)


async def test_each_node_answers_a_query_once(memory_settings: MakeSettings) -> None:
    mesh = [[], [0], [0, 1], [0, 1, 2], [0, 1, 2, 3]]
    async with overlay(memory_settings, mesh, ttl=4) as nodes:
        with pytest.raises(butter.ItemNotFound):
            await nodes[4].retrieve("ab" * 32)  # nobody has it: the flood reaches everyone it can
        assert [flood(n).queries_answered for n in nodes[:4]] == [1, 1, 1, 1]


async def test_a_bad_id_and_a_holder_serving_wrong_bytes(memory_settings: MakeSettings) -> None:
    async with overlay(memory_settings, [[], [0]]) as nodes:
        with pytest.raises(butter.ItemNotFound):
            await nodes[1].retrieve("not a content id")
        content_id = await hold(nodes[0], b"x" * 3000)
        manifest = await nodes[0].blocks.get(content_id)
        assert manifest is not None

        async def lying(request: butter.RouteRequest) -> bytes:  # the manifest is right, every block is not
            return manifest if content_id.encode() in request.body else b"y" * 1024

        nodes[0].route("fetch-block", lying)  # replaces the built-in route
        with pytest.raises(butter.ItemNotFound, match="does not match"):
            await nodes[1].retrieve(content_id)
