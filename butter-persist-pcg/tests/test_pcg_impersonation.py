"""A group member cannot speak for another one (real nodes over TCP on 127.0.0.1, asyncio and trio).

With the secure channel the transport authenticates every caller (``RouteRequest.caller.node_id``): a heartbeat
naming another sender, a join that does not list its inviter and a leave from outside the group are refused
and change nothing. In plaintext nothing is authenticated, and bodies are taken at their word, as before.

Heartbeat rounds are driven by the tests (``tick``), never by the clock: with ``seed`` 15 a node's first
round would come after 58 of the 60 s ``heartbeat_interval``, so no heartbeat races an assertion.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

import butter
from butter.errors import RemoteError
from butter_persist_pcg._messages import GroupBeat, Heartbeat, Invitation, Join, JoinReply, content_id_body
from butter_persist_pcg._service import ROUTE_HEARTBEAT, ROUTE_JOIN, ROUTE_LEAVE

from .helpers import Network, goldilocks, network, pcg, tcp_settings

pytestmark = pytest.mark.anyio

QUIET = {"heartbeat_interval": 60.0, "palpitation": 0.0, "seed": 15}  # rounds only when a test ticks


@asynccontextmanager
async def group(*, secure: bool) -> AsyncIterator[tuple[Network, str, list[butter.Node], butter.Node]]:
    """Four TCP nodes; one stores an item, which gets three holders whose views agree. Yields the network,
    the content id, the holders and the one node outside the group."""
    with anyio.fail_after(30):
        async with network(tcp_settings(secure=secure), 4, **QUIET) as net:
            content_id = await net.nodes[0].store(b"keep me" * 300)
            await net.wait_for(lambda: len(net.holders(content_id)) == 3)
            holders = net.holders(content_id)
            for _ in range(2):  # two rounds: every member hears from every other
                for holder in holders:
                    await pcg(holder).tick()
            assert all(goldilocks(h, content_id) for h in holders)
            (outsider,) = [n for n in net.nodes if n not in holders]
            yield net, content_id, holders, outsider


def leaving_beat(claimed: butter.Node, content_id: str) -> bytes:
    """A final heartbeat (``leaving``) naming ``claimed`` as its sender: members drop the sender at once."""
    return Heartbeat(claimed.node_id, claimed.address, True, [GroupBeat(content_id, 0, 0, [])]).encode()


def members(node: butter.Node, content_id: str) -> set[butter.PeerAddress]:
    return set(pcg(node).holders(content_id))


async def test_a_member_cannot_make_another_leave_the_group() -> None:
    async with group(secure=True) as (_, content_id, (target, victim, impostor), _outsider):
        before = members(target, content_id)
        with pytest.raises(RemoteError) as refused:
            await impostor.request(target.address, ROUTE_HEARTBEAT, leaving_beat(victim, content_id), timeout=5)
        assert refused.value.code == "sender-mismatch"
        assert impostor.node_id in refused.value.message
        assert members(target, content_id) == before  # the victim is still a member
        assert target.stats.sender_mismatches == 1
        # the honest path: the victim's own final heartbeat drops it at once
        await victim.request(target.address, ROUTE_HEARTBEAT, leaving_beat(victim, content_id), timeout=5)
        assert members(target, content_id) == before - {victim.address}
        assert target.stats.sender_mismatches == 1


async def test_a_heartbeat_naming_another_sender_adds_no_member() -> None:
    async with group(secure=True) as (_, content_id, (target, *_others), outsider):
        before = members(target, content_id)
        fake = Heartbeat("f" * 64, outsider.address, False, [GroupBeat(content_id, 0, 0, [])]).encode()
        with pytest.raises(RemoteError, match="sender-mismatch"):
            await outsider.request(target.address, ROUTE_HEARTBEAT, fake, timeout=5)
        assert members(target, content_id) == before


async def test_only_a_member_may_shed_a_replica() -> None:
    async with group(secure=True) as (_, content_id, (target, member, _), outsider):
        with pytest.raises(RemoteError) as refused:
            await outsider.request(target.address, ROUTE_LEAVE, content_id_body(content_id), timeout=5)
        assert refused.value.code == "not-a-member"
        assert content_id in pcg(target).kept_items() and await target.blocks.has(content_id)
        assert pcg(target).counters()["leaves_refused"] == 1
        await member.request(target.address, ROUTE_LEAVE, content_id_body(content_id), timeout=5)
        assert content_id not in pcg(target).kept_items() and not await target.blocks.has(content_id)


async def test_an_invitation_must_come_from_a_listed_member() -> None:
    async with group(secure=True) as (_, content_id, holders, outsider):
        inviter = holders[0]
        entries = pcg(inviter)._groups[content_id].entries(anyio.current_time())
        others = [e for e in entries if e[0] != inviter.node_id]
        size = pcg(inviter)._groups[content_id].size
        listed, unlisted = Invitation(content_id, size, entries), Invitation(content_id, size, others)
        with pytest.raises(RemoteError, match="sender-mismatch"):
            await inviter.request(outsider.address, ROUTE_JOIN, Join([unlisted]).encode(), timeout=5)
        with pytest.raises(RemoteError, match="sender-mismatch"):  # one invitation without it refuses them all
            await inviter.request(outsider.address, ROUTE_JOIN, Join([listed, unlisted]).encode(), timeout=5)
        assert content_id not in pcg(outsider).kept_items() and not await outsider.blocks.has(content_id)
        reply = await inviter.request(outsider.address, ROUTE_JOIN, Join([listed]).encode(), timeout=10)
        assert JoinReply.decode(reply) == JoinReply((content_id,), ())
        assert content_id in pcg(outsider).kept_items()


async def test_in_plaintext_bodies_are_taken_at_their_word_as_before() -> None:
    async with group(secure=False) as (_, content_id, (target, victim, impostor), outsider):
        before = members(target, content_id)
        await impostor.request(target.address, ROUTE_HEARTBEAT, leaving_beat(victim, content_id), timeout=5)
        assert members(target, content_id) == before - {victim.address}  # nothing authenticated: believed
        assert target.stats.sender_mismatches == 0
        await outsider.request(target.address, ROUTE_LEAVE, content_id_body(content_id), timeout=5)
        assert content_id not in pcg(target).kept_items()
