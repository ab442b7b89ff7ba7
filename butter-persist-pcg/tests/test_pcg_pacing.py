"""Pacing: recruits fetching many items from one storer at once keep at most ``peer_window`` block fetches in
flight to it (butter.pacing, shared by every group of the node), and an ``overloaded`` answer only delays a
replica; a node runs at most ``max_jobs`` recruitments at once, and serves at most ``max_joins`` invitations;
invitations to one peer travel together.
Real nodes on the memory transport, on asyncio and trio."""

from __future__ import annotations

import anyio
import pytest

import butter
from butter import RouteRequest
from butter.errors import RouteError
from butter.peers import PeerAddress
from butter.wire import decode_payload
from butter_persist_pcg._messages import Invitation, Join, JoinReply

from .helpers import MakeSettings, network, pcg

pytestmark = pytest.mark.anyio


class WatchedBlocks:
    """Replaces ``node``'s ``fetch-block`` route: counts the fetches in flight from each caller (and the most
    ever seen), answers ``overloaded`` to the first ``refuse``, and makes each answer take ``delay`` seconds."""

    def __init__(self, node: butter.Node, *, delay: float, refuse: int = 0) -> None:
        self.node, self.delay, self.refuse = node, delay, refuse
        self.in_flight: dict[PeerAddress | None, int] = {}
        self.most = self.refused = 0
        node.route("fetch-block", self._serve)

    async def _serve(self, request: RouteRequest) -> bytes:
        caller = request.caller.address
        self.in_flight[caller] = self.in_flight.get(caller, 0) + 1
        self.most = max(self.most, self.in_flight[caller])
        try:
            if self.refused < self.refuse:
                self.refused += 1
                raise RouteError("overloaded", "256 requests already being handled on this connection")
            await anyio.sleep(self.delay)
            data = await self.node.blocks.get(decode_payload(request.body)["block_id"])
            if data is None:
                raise RouteError("not-found", "no such block")
            return data
        finally:
            self.in_flight[caller] -= 1


async def test_recruits_keep_their_fetches_from_one_storer_within_the_window(memory_settings: MakeSettings) -> None:
    async with network(memory_settings, 4, peer_window=3, fetch_concurrency=8, overload_retry_interval=0.01) as net:
        storer = WatchedBlocks(net.nodes[0], delay=0.02, refuse=5)
        items = [bytes([i]) * (40_000 + i) for i in range(6)]  # 10 blocks each; each other node recruited for most
        content_ids: list[str] = []

        async def store(data: bytes) -> None:
            content_ids.append(await net.nodes[0].store(data))

        async with anyio.create_task_group() as tg:
            for data in items:
                tg.start_soon(store, data)
        await net.wait_for(lambda: all(len(net.holders(content_id)) == 3 for content_id in content_ids))
        assert storer.refused == 5  # answered overloaded, yet every item reached its three replicas
        assert 2 <= storer.most <= 3  # 6 groups x 8 blocks in parallel would have put up to 48 in flight


async def test_a_node_runs_at_most_max_jobs_recruitments_at_once(memory_settings: MakeSettings) -> None:
    """Each recruitment makes its invitees fetch an item: a node starting one per group at once (64 before
    ``max_jobs``) kept ~1,500 item fetches in flight in ``butter demo``, and every invitation timed out."""
    async with network(memory_settings, 4, max_jobs=2) as net:
        serving = most = 0

        def watch(node: butter.Node) -> None:
            original = pcg(node)._serve_join

            async def serve(request: RouteRequest) -> bytes:
                nonlocal serving, most
                invitations = len(Join.decode(request.body).invitations)
                serving += invitations
                most = max(most, serving)
                try:
                    await anyio.sleep(0.1)
                    return await original(request)
                finally:
                    serving -= invitations

            node.route("pcg-join", serve)

        for node in net.nodes[1:]:
            watch(node)
        content_ids = [await net.nodes[0].store(bytes([i]) * 5_000) for i in range(8)]  # 8 cold groups at once
        await net.wait_for(lambda: all(len(net.holders(content_id)) == 3 for content_id in content_ids))
        assert 2 <= most <= 2 * 2  # 2 jobs, each inviting the 2 replicas it lacks; 8 x 2 = 16 without the bound


async def test_a_node_serving_max_joins_invitations_answers_joins_full(memory_settings: MakeSettings) -> None:
    async with network(memory_settings, 2, replicas=1, max_joins=1) as net:
        inviter, invitee = net.nodes
        WatchedBlocks(inviter, delay=0.5)  # the first invitation holds the invitee's only join place meanwhile
        items = [bytes([i]) * 5_000 for i in range(3)]
        content_ids = [await inviter.store(data) for data in items]
        entries = [(inviter.node_id, inviter.address, 0.0)]
        replies: list[JoinReply] = []

        async def invite(*invitations: Invitation) -> None:
            body = await inviter.request(invitee.address, "pcg-join", Join(invitations).encode(), timeout=20)
            replies.append(JoinReply.decode(body))

        first, second, third = (Invitation(c, len(d) + 200, entries) for c, d in zip(content_ids, items, strict=True))
        async with anyio.create_task_group() as tg:
            tg.start_soon(invite, first)
            await anyio.sleep(0.1)
            tg.start_soon(invite, second)  # while the first is served: refused
        await invite(second, third)  # one request, one place: the first of them joins, the second is refused
        answers = [([*r.joined], [(x.content_id, x.code) for x in r.refused]) for r in replies]
        assert answers == [
            ([], [(content_ids[1], "joins-full")]), ([content_ids[0]], []),
            ([content_ids[1]], [(content_ids[2], "joins-full")]),
        ]
        assert not await invitee.blocks.has(content_ids[2])  # the refused one left nothing behind


async def test_invitations_to_one_peer_travel_together(memory_settings: MakeSettings) -> None:
    """While one ``pcg-join`` to a peer is in flight, the other invitations for it wait and go together in the
    next request (one request per item before: a node holding thousands of replicas that died cost thousands
    of joins)."""
    async with network(memory_settings, 2, replicas=2, join_timeout=60.0) as net:
        storer, invitee = net.nodes
        gate = anyio.Event()
        carried: list[int] = []
        serve_join = pcg(invitee)._serve_join

        async def hold(request: RouteRequest) -> bytes:
            carried.append(len(Join.decode(request.body).invitations))
            await gate.wait()  # the first request is in flight until every item is stored
            return await serve_join(request)

        invitee.route("pcg-join", hold)
        content_ids = [await storer.store(b"first" * 1_000)]
        await net.wait_for(lambda: carried == [1])
        content_ids += [await storer.store(bytes([i]) * 5_000) for i in range(5)]
        await net.wait_for(lambda: pcg(storer).counters()["invitations_sent"] == 6)
        gate.set()
        await net.wait_for(lambda: all(len(net.holders(content_id)) == 2 for content_id in content_ids))
        assert carried[:2] == [1, 5]  # (later ones: a member dropped on a loaded machine and invited again)
        counters = pcg(storer).counters()
        assert counters["joins_sent"] == len(carried) and counters["invitations_sent"] == sum(carried)


async def test_a_refused_invitation_is_replaced_at_once_while_another_is_still_served(
    memory_settings: MakeSettings,
) -> None:
    """A cold group keeps as many invitations in flight as replicas are missing: one refused (``joins-full``)
    is replaced by the next candidate at once, not after the group's other invitations are answered (which
    put a second join-time on 3-replica time for every item with a refusal in ``benchmarks/scale.py``)."""
    async with network(memory_settings, 4, join_timeout=60.0) as net:
        storer, held, refuser, acceptor = net.nodes
        gate = anyio.Event()
        serve_held = pcg(held)._serve_join

        async def hold(request: RouteRequest) -> bytes:
            await gate.wait()  # this invitation is still being served until the test lets it go
            return await serve_held(request)

        async def refuse(request: RouteRequest) -> bytes:
            raise RouteError("joins-full", "8 invitations already being served")

        held.route("pcg-join", hold)
        refuser.route("pcg-join", refuse)
        # 6 items: each item's first two invitations go to two of the three candidates at random, so with
        # invitations sent in waves some item would invite the acceptor only after the held one is answered
        content_ids = [await storer.store(bytes([i]) * 5_000) for i in range(6)]
        await net.wait_for(lambda: all(acceptor in net.holders(content_id) for content_id in content_ids))
        assert not any(held in net.holders(content_id) for content_id in content_ids)
        gate.set()
        await net.wait_for(lambda: all(len(net.holders(content_id)) == 3 for content_id in content_ids))
