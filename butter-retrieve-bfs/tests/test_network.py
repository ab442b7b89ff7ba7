"""Retrieval on real nodes over the memory transport (fast timers), on asyncio and trio."""

from __future__ import annotations

import logging
import os
from typing import Any

import anyio
import pytest

import butter
from butter import RouteRequest
from butter.blocks import chunk
from butter.capabilities import Counters, ItemHolders
from butter.errors import ButterConfigError, ItemNotFound, PeerGone
from butter.peers import PeerAddress
from butter.wire import decode_payload
from butter_retrieve_bfs import ROUTE_QUERY, Query, Ring, Seen, decode_reply

from .conftest import MakeSettings, bfs, clique, keeps, line

pytestmark = pytest.mark.anyio


async def test_an_item_is_found_several_hops_away(memory_settings: MakeSettings) -> None:
    with anyio.fail_after(20):
        async with line(memory_settings, 6) as net:
            data = os.urandom(3000)
            content_id = await net.nodes[-1].store(data)
            querier = bfs(net.nodes[0])
            assert await querier.retrieve(content_id, rings=[Ring(ttl=5, fraction=1.0)]) == data
            stats = querier.last_query
            assert stats is not None and stats.found and stats.max_depth == 5
            assert stats.search_requests == 5 and stats.fetch_requests == 2 and stats.nodes_asked == 5


async def test_the_ttl_bounds_the_search_and_a_wider_ring_finds_it(memory_settings: MakeSettings) -> None:
    with anyio.fail_after(20):
        async with line(memory_settings, 6) as net:
            content_id = await net.nodes[-1].store(b"beyond the horizon")
            querier = bfs(net.nodes[0])
            with pytest.raises(ItemNotFound, match=r"asked 3 node\(s\) in 1 ring\(s\), reaching 3 hop\(s\).*TTL 3"):
                await querier.retrieve(content_id, rings=[Ring(ttl=3, fraction=1.0)])
            assert querier.last_query is not None and querier.last_query.max_depth == 3
            # the expanding ring: TTL 3 fails, then the unlimited ring finds it, going on from the horizon (node 3,
            # asked again with hops to spare, then 4 and 5) rather than asking nodes 1 and 2 again
            found = await querier.retrieve(content_id, rings=[Ring(ttl=3, fraction=1.0), Ring(ttl=None, fraction=1.0)])
            assert found == b"beyond the horizon"
            assert querier.last_query is not None and querier.last_query.rings == 2
            assert querier.last_query.search_requests == 3 + 3 and querier.last_query.nodes_asked == 5


async def test_no_node_handles_a_query_twice(memory_settings: MakeSettings) -> None:
    with anyio.fail_after(20):
        async with clique(memory_settings, 7) as net:
            before = [bfs(n).handler.stats.handled for n in net.nodes]
            querier = bfs(net.nodes[0])
            with pytest.raises(ItemNotFound):
                await querier.retrieve("cd" * 32, rings=[Ring(ttl=None, fraction=1.0)], parallelism=8)
            stats = querier.last_query
            assert stats is not None and stats.nodes_asked == 6 and stats.search_requests == 6
            handled = [bfs(n).handler.stats.handled - b for n, b in zip(net.nodes, before, strict=True)]
            assert handled == [0] + [1] * 6  # every other node exactly once, although each named all the others
            assert all(bfs(n).handler.stats.duplicates == 0 for n in net.nodes)
            # a repeated query id is refused, and counted
            query = Query(b"d" * 16, "cd" * 32, 2, 1.0)
            peer = net.nodes[1]
            first = decode_reply(await net.nodes[0].request(peer.address, ROUTE_QUERY, query.encode()))
            again = decode_reply(await net.nodes[0].request(peer.address, ROUTE_QUERY, query.encode()))
            assert not isinstance(first, Seen) and isinstance(again, Seen)
            assert bfs(peer).handler.stats.duplicates == 1


async def test_a_multi_block_item_reassembles_and_streams_byte_for_byte(memory_settings: MakeSettings) -> None:
    with anyio.fail_after(20):
        async with clique(memory_settings, 5) as net:
            data = os.urandom(100 * 1024)  # 25 distinct blocks
            content_id = await net.nodes[0].store(data)
            await net.replicated(content_id)
            reader = next(n for n in net.nodes if n not in net.holders(content_id))
            assert await reader.retrieve(content_id) == data
            stats = bfs(reader).last_query
            assert stats is not None and stats.found and stats.blocks == 25 and stats.holders == 3
            assert stats.fetch_requests == 26 and stats.corrupted == 0  # the manifest and 25 blocks, once each
            pieces = [piece async for piece in reader.retrieve_stream(content_id)]
            assert b"".join(pieces) == data and len(pieces) == 25
            assert all(len(p) == 4096 for p in pieces)
            streamed = bfs(reader).last_query
            assert streamed is not None and streamed.found and streamed.fetch_requests == 26


async def test_a_stream_abandoned_early_stops_fetching(memory_settings: MakeSettings) -> None:
    with anyio.fail_after(20):
        async with clique(memory_settings, 4, retrieval={"stream_window": 4}) as net:
            content_id = await net.nodes[0].store(os.urandom(40 * 4096))
            await net.replicated(content_id)
            reader = next(n for n in net.nodes if n not in net.holders(content_id))
            stream = reader.retrieve_stream(content_id)
            async for _ in stream:
                break
            await stream.aclose()  # type: ignore[attr-defined]
            stats = bfs(reader).last_query
            assert stats is not None and not stats.found
            assert stats.fetch_requests == 1 + 4  # the manifest and one window


async def test_a_local_hit_costs_no_message(memory_settings: MakeSettings) -> None:
    with anyio.fail_after(20):
        async with clique(memory_settings, 3) as net:
            data = os.urandom(9000)
            content_id = await net.nodes[0].store(data)
            assert await net.nodes[0].retrieve(content_id) == data
            stats = bfs(net.nodes[0]).last_query
            assert stats is not None and stats.local and stats.requests == 0 and stats.replies == 0


async def test_digests_point_straight_at_a_holder(memory_settings: MakeSettings) -> None:
    with anyio.fail_after(20):
        async with clique(memory_settings, 8) as net:
            content_id = await net.nodes[0].store(b"hinted")
            await net.replicated(content_id)
            reader = next(n for n in net.nodes if n not in net.holders(content_id))
            holders = {h.address for h in net.holders(content_id)}
            await net.wait_for(lambda: set(bfs(reader).book.matching(content_id, holders)) == holders)
            assert await reader.retrieve(content_id) == b"hinted"
            stats = bfs(reader).last_query
            assert stats is not None and stats.search_requests == 1 and stats.fetch_requests == 2
            assert bfs(reader).totals.digest_requests > 0


async def test_a_node_that_gains_an_item_pushes_its_digest_to_its_hosts(memory_settings: MakeSettings) -> None:
    """Churn: a new replica must be hinted before its hosts would pull its digest again. Here they never would
    (an hour between pulls): the holder pushes its changed digest to every known host within a second or so."""
    with anyio.fail_after(30):
        slow = {"digest_interval": 3600.0, "digest_max_interval": 3600.0}
        async with clique(memory_settings, 4, retrieval=slow, pcg={"replicas": 1}) as net:
            holder, others = net.nodes[0], net.nodes[1:]
            # every host pulled the holder's (empty) digest when it admitted it
            await net.wait_for(lambda: all(bfs(n).book.tag(holder.address) is not None for n in others))
            content_id = await holder.store(b"a new replica")
            await net.wait_for(lambda: all(bfs(n).book.matching(content_id, [holder.address]) for n in others))
            assert bfs(holder).totals.digest_pushes >= len(others)
            reader = others[0]
            assert await reader.retrieve(content_id) == b"a new replica"
            stats = bfs(reader).last_query
            assert stats is not None and stats.search_requests == 1


async def test_a_holder_serving_corrupted_blocks_is_bypassed(memory_settings: MakeSettings) -> None:
    with anyio.fail_after(20):
        async with clique(memory_settings, 5) as net:
            data = os.urandom(60 * 1024)  # 15 blocks, spread over the three holders
            content_id = await net.nodes[0].store(data)
            await net.replicated(content_id)
            liar = net.holders(content_id)[1]
            served = []

            async def corrupted(request: RouteRequest) -> bytes:
                served.append(decode_payload(request.body)["block_id"])
                return b"not what you asked for"

            liar.route("fetch-block", corrupted)
            reader = next(n for n in net.nodes if n not in net.holders(content_id))
            assert await reader.retrieve(content_id) == data
            stats = bfs(reader).last_query
            # tried only by the fetches already under way when its first bad block arrived, then avoided
            assert stats is not None and 1 <= stats.corrupted == len(served) <= bfs(reader).options.fetch_concurrency
            assert b"".join([p async for p in reader.retrieve_stream(content_id)]) == data


async def test_a_holder_killed_mid_transfer_does_not_fail_the_retrieval(memory_settings: MakeSettings) -> None:
    with anyio.fail_after(20):
        async with clique(memory_settings, 5, retrieval={"fetch_concurrency": 2}) as net:
            data = os.urandom(200 * 1024)  # 50 blocks
            content_id = await net.nodes[0].store(data)
            await net.replicated(content_id)
            victim = net.holders(content_id)[0]
            original = victim._route_table._handlers["fetch-block"]
            served = anyio.Event()
            count = 0

            async def slow(request: RouteRequest) -> bytes:
                nonlocal count
                count += 1
                if count == 3:
                    served.set()
                await anyio.sleep(0.05)
                return await original(request)

            victim.route("fetch-block", slow)
            reader = next(n for n in net.nodes if n not in net.holders(content_id))
            result: list[bytes] = []
            gone = 0  # the reader's fetches from the victim that found nothing listening (PeerGone)
            fetch_block = reader.fetch_block

            async def watched_fetch(peer: PeerAddress, block_id: str, **kwargs: Any) -> bytes:
                nonlocal gone
                try:
                    return await fetch_block(peer, block_id, **kwargs)
                except PeerGone:
                    gone += peer == victim.address
                    raise

            reader.fetch_block = watched_fetch  # type: ignore[method-assign]

            async def read() -> None:
                result.append(await reader.retrieve(content_id))

            async with anyio.create_task_group() as tg:
                tg.start_soon(read)
                await served.wait()
                await victim.aclose(graceful=False)
            assert result == [data]
            stats = bfs(reader).last_query
            assert stats is not None and stats.found
            # a connection lost mid-request proves nothing (a busy holder loses them too): the holder is dropped
            # for this retrieval only; host management's own polls find it dead (a refused connection is). A
            # fetch that reached the victim once it had stopped (a worker taking its next block before the lost
            # one was handled) found nothing listening (PeerGone): that, and only that, is reported
            assert stats.dead_reported == min(gone, 1)


async def test_dead_hosts_met_during_a_search_are_reported(memory_settings: MakeSettings) -> None:
    with anyio.fail_after(20):
        async with clique(memory_settings, 5, hosts={"refresh_interval": 60.0}) as net:
            querier, dead = net.nodes[0], net.nodes[3]
            await dead.aclose(graceful=False)
            assert dead.address in {p.address for p in querier.hosts.peers()}  # nobody noticed yet
            with pytest.raises(ItemNotFound):
                await bfs(querier).retrieve("ee" * 32, rings=[Ring(ttl=None, fraction=1.0)])
            stats = bfs(querier).last_query
            assert stats is not None and stats.dead_reported == 1
            assert dead.address not in {p.address for p in querier.hosts.peers()}


async def test_an_unknown_id_raises_item_not_found_with_the_extent_of_the_search(memory_settings: MakeSettings) -> None:
    with anyio.fail_after(20):
        async with clique(memory_settings, 4) as net:
            with pytest.raises(ItemNotFound, match=r"not found: asked 3 node\(s\) in 2 ring\(s\)"):
                await net.nodes[0].retrieve("ab" * 32)
            with pytest.raises(ItemNotFound, match="not a content id"):
                await net.nodes[0].retrieve("nope")
            with pytest.raises(ItemNotFound):
                [piece async for piece in net.nodes[0].retrieve_stream("ab" * 32)]
            stats = bfs(net.nodes[0]).last_query
            assert stats is not None and not stats.found and "ItemNotFound" in stats.error


async def test_options_are_validated_at_start(memory_settings: MakeSettings) -> None:
    bad = memory_settings(retrieval={"driver": "bfs", "options": {"rings": [{"ttl": 4, "fraction": 1.0},
                                                                            {"ttl": 2, "fraction": 1.0}]}})
    with pytest.raises(ButterConfigError, match="ring"):
        async with butter.open_node(bad):
            pass


async def test_without_persistence_capabilities_bfs_says_so_once_and_still_retrieves(
    memory_settings: MakeSettings, caplog: pytest.LogCaptureFixture
) -> None:
    """No persistence driver, so no ItemHolders nor KeptItems: bfs logs what is off once per node, at start,
    and finds an item put straight into a block store (its digest then lists every stored block)."""
    caplog.set_level(logging.INFO, logger="butter.bfs")
    bare = {"driver": "bfs", "options": {"digest_interval": 0.3}}
    with anyio.fail_after(20):
        async with butter.open_node(memory_settings(retrieval=bare)) as holder, butter.open_node(
            memory_settings(retrieval=bare, peers=[str(holder.address)])
        ) as reader:
            data = os.urandom(9000)
            item = chunk(data, block_size=4096)
            for block_id, block in item.all_blocks.items():
                await holder.blocks.put(block_id, block)
            while not reader.hosts.peers():
                await anyio.sleep(0.05)
            assert await reader.retrieve(item.content_id) == data
            assert bfs(holder).counters()["queries_hits"] == 1
            assert bfs(reader).counters()["found"] == 1
    for capability in ("ItemHolders", "KeptItems"):
        said = [r for r in caplog.records if f"offer no {capability}" in r.getMessage()]
        assert len(said) == 2 and all(r.levelno == logging.INFO for r in said), capability


async def test_counters_are_a_capability(memory_settings: MakeSettings) -> None:
    async with clique(memory_settings, 3) as net:
        counters = net.nodes[0].capability(Counters)
        assert counters is not None and counters is not bfs(net.nodes[0])  # pcg comes first: persistence
        snapshot = bfs(net.nodes[0]).counters()
        assert isinstance(bfs(net.nodes[0]), Counters)
        assert all(type(v) is int and v >= 0 for v in snapshot.values())
        assert {"retrievals", "digest_requests", "queries_handled", "queries_duplicates"} <= set(snapshot)


async def test_a_one_block_item_comes_whole_from_the_holder_that_answered(memory_settings: MakeSettings) -> None:
    """Churn: a holder has just died and its group still names it. Every reader fetches the manifest and the
    block from the holder whose hit answered (known live), never from the dead member: 2 fetches each."""
    with anyio.fail_after(30):
        async with clique(memory_settings, 7) as net:
            content_id = await net.nodes[0].store(b"one block")
            await net.replicated(content_id)
            dead = net.holders(content_id)[0]
            await dead.aclose(graceful=False)
            survivors = net.holders(content_id)
            named = [n.capability(ItemHolders) for n in survivors]
            assert all(h is not None and dead.address in h.holders(content_id) for h in named)
            readers = [n for n in net.nodes if not n.closing and n not in survivors]
            remote = 0
            for reader in readers:
                assert await reader.retrieve(content_id) == b"one block"
                stats = bfs(reader).last_query
                assert stats is not None and stats.found
                if stats.local:  # the cold group recruited this reader meanwhile (one of the four at most)
                    assert keeps(reader, content_id) and stats.fetch_requests == 0
                    continue
                assert stats.fetch_requests == stats.fetch_replies == 2
                remote += 1
            assert remote >= len(readers) - 1


def test_changes_within_the_push_interval_go_as_one_push() -> None:
    """On virtual time: a holder whose kept set changes three times pushes its digest twice to each subscriber:
    at once for the first change, then the next two (2 s apart) together ``digest_push_interval`` (5 s) after
    the first push; every subscriber ends with the last digest without pulling it again."""
    from trio.testing import MockClock

    from butter.testing.pytest_plugin import memory_settings_factory

    async def main() -> tuple[int, int, bool]:
        slow = {"digest_interval": 3600.0, "digest_max_interval": 3600.0, "digest_push_interval": 5.0}
        async with clique(memory_settings_factory("push-coalesce"), 4, retrieval=slow, pcg={"replicas": 1}) as net:
            holder, others = net.nodes[0], net.nodes[1:]
            await net.wait_for(lambda: all(bfs(n).book.tag(holder.address) is not None for n in others))
            pushes, pulls = bfs(holder).totals.digest_pushes, sum(bfs(n).totals.digest_requests for n in others)
            first = await holder.store(b"first")  # pushed at once
            await net.wait_for(lambda: all(bfs(n).book.matching(first, [holder.address]) for n in others))
            await holder.store(b"second")  # these two go as one push, 5 s after the first
            await anyio.sleep(2.0)
            third = await holder.store(b"third")
            await net.wait_for(lambda: all(bfs(n).book.matching(third, [holder.address]) for n in others))
            await anyio.sleep(10.0)  # nothing more to push
            tag = (await bfs(holder).local_digest()).tag
            current = all(bfs(n).book.tag(holder.address) == tag for n in others)
            return (bfs(holder).totals.digest_pushes - pushes,
                    sum(bfs(n).totals.digest_requests for n in others) - pulls, current)

    pushes, pulls, current = anyio.run(main, backend="trio", backend_options={"clock": MockClock(autojump_threshold=0)})
    assert current and pulls == 0
    assert pushes == 2 * 3, pushes


def test_a_new_replica_pushes_its_digest_to_the_subscribers_outside_its_group() -> None:
    """On virtual time: the two nodes a group recruits push their new digest to the other subscribers, not to
    the member that recruited them (it answers for the item itself and knows its group)."""
    from trio.testing import MockClock

    from butter.testing.pytest_plugin import memory_settings_factory

    async def main() -> tuple[bool, bool]:
        slow = {"digest_interval": 3600.0, "digest_max_interval": 3600.0}
        async with clique(memory_settings_factory("push-group"), 5, retrieval=slow) as net:
            storer = net.nodes[0]
            await net.wait_for(lambda: all(bfs(n).book.tag(m.address) is not None
                                           for n in net.nodes for m in net.nodes if m is not n))
            content_id = await storer.store(b"a group of three")
            await net.replicated(content_id)
            recruits = [n for n in net.holders(content_id) if n is not storer]
            outside = [n for n in net.nodes if n not in net.holders(content_id)]
            await net.wait_for(lambda: all(bfs(n).book.matching(content_id, [r.address])
                                           for n in outside for r in recruits))
            await anyio.sleep(5.0)  # every push has landed
            return (bool(bfs(storer).book.matching(content_id, [r.address for r in recruits])),
                    all(bfs(n).book.tag(storer.address) == bfs(outside[0]).book.tag(storer.address) for n in outside))

    storer_told, outside_current = anyio.run(main, backend="trio",
                                             backend_options={"clock": MockClock(autojump_threshold=0)})
    assert outside_current and not storer_told
