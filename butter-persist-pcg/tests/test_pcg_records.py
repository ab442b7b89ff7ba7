"""Signed records kept by PCG groups, on real nodes (memory transport and TCP on 127.0.0.1, asyncio and trio):
holders converge on the newest sequence through heartbeats alone, a recruit gets the newest, a member
offering a forged or older record is refused and counted, a name published far away resolves, and a deleted
name resolves as deleted."""

from __future__ import annotations

import dataclasses
import time
from contextlib import AsyncExitStack
from typing import Any

import anyio
import pytest

import butter
from butter import codec
from butter.records import SignedRecord, sign_record
from butter_persist_pcg._messages import GroupBeat, Heartbeat, JoinReply

from .helpers import FAST_HOSTS, MakeSettings, Network, network, pcg, tcp_settings

pytestmark = pytest.mark.anyio


def sequence(node: butter.Node, name: str) -> int | None:
    record = node.records.get(name, now=time.time())
    return record.sequence if record is not None else None


def newer(record: SignedRecord, owner: butter.Node, value: bytes, step: int = 1) -> SignedRecord:
    """The owner's next record of ``record``'s name (its identity key signs it)."""
    return sign_record(owner.identity.private_key, record.label, value, sequence=record.sequence + step,
                       expires_at=record.expires_at)


async def kept_by_three(net: Network, name: str) -> list[butter.Node]:
    await net.wait_for(lambda: len(net.holders(name)) == 3)
    return net.holders(name)


@pytest.mark.parametrize("kind", ["memory", "tcp"])
async def test_holders_converge_on_the_newest_record_through_heartbeats_and_a_recruit_gets_it(
        kind: str, memory_settings: MakeSettings) -> None:
    make = memory_settings if kind == "memory" else tcp_settings(secure=True)
    async with network(make, 5) as net:
        publisher = net.nodes[0]
        record = await publisher.publish("site", b"v1", fanout=0)  # pushed to no peer: only the group spreads it
        holders = await kept_by_three(net, record.name)
        await net.wait_for(lambda: all(sequence(h, record.name) == record.sequence for h in holders))

        # a newer record reaches one holder only (no publish, no push): the others pull it after its heartbeat
        one = next(h for h in holders if h is not publisher)
        update = newer(record, publisher, b"v2")
        assert one.records.offer(update, now=time.time()) == "accepted"
        await net.wait_for(lambda: all(sequence(h, record.name) == update.sequence for h in net.holders(record.name)))
        assert sum(pcg(h).counters()["records_pulled"] for h in net.holders(record.name)) >= 2

        # a holder dies: the group recruits another node, which joins with the newest record
        await net.kill(one)
        before = set(net.holders(record.name))
        await net.wait_for(lambda: len(net.holders(record.name)) == 3)
        (recruit,) = set(net.holders(record.name)) - before
        assert sequence(recruit, record.name) == update.sequence


async def test_a_member_offering_a_forged_or_older_record_is_refused_and_counted(
        memory_settings: MakeSettings) -> None:
    async with network(memory_settings, 4) as net:
        publisher = net.nodes[0]
        record = await publisher.publish("site", b"v1", fanout=0)
        holders = await kept_by_three(net, record.name)
        target = next(h for h in holders if h is not publisher)
        await net.wait_for(lambda: sequence(target, record.name) == record.sequence)
        hostile = await net.stack.enter_async_context(butter.open_node(memory_settings()))
        forged = dataclasses.replace(record, sequence=record.sequence + 100, value=b"evil")  # old signature
        older = newer(record, publisher, b"old", step=-1)  # signed by the owner, but behind
        served: list[SignedRecord] = []

        @hostile.route("get-record")
        async def serve(request: butter.RouteRequest) -> bytes:
            return codec.encode({"record": served[-1].encode()})

        size = pcg(target)._groups[record.name].size

        def only_confirmed_members() -> bool:
            """The hostile node is not in the target's view of the group (read afresh: the target may have left
            the group and joined it again meanwhile), unless it was recruited and keeps the item: a claim
            spreads by gossip to the other members, which may then shed a member and recruit the hostile node
            for real."""
            view = pcg(target)._groups.get(record.name)
            return view is None or hostile.node_id not in view.members or record.name in pcg(hostile).kept_items()

        for bad in (forged, older):
            served.append(bad)
            refused = pcg(target).counters()["records_refused"]
            claim = GroupBeat(record.name, size, 0, [], record.sequence + 100)  # "I am far ahead"
            beat = Heartbeat(hostile.node_id, hostile.address, False, [claim])
            await hostile.request(target.address, "pcg-heartbeat", beat.encode())
            await net.wait_for(lambda refused=refused: pcg(target).counters()["records_refused"] > refused)
            assert target.records.get(record.name, now=time.time()) == record
            # the claim of membership is checked at once (heartbeaten back): the hostile node never leads the group
            await net.wait_for(only_confirmed_members)
        assert target.records.counts["forged"] >= 1 and target.records.counts["stale"] >= 1


async def test_a_recruit_refuses_an_invitation_carrying_a_forged_record(memory_settings: MakeSettings) -> None:
    async with network(memory_settings, 2) as net:
        a, b = net.nodes
        record = await a.publish("site", b"v1", fanout=0)
        await net.wait_for(lambda: record.name in pcg(b).kept_items())
        forged = dataclasses.replace(record, label="other")  # its name no longer matches its key and label
        other = await a.publish("second", b"x", fanout=0)
        view = pcg(a)._groups[other.name]
        assert a.records.offer(forged, now=time.time()) == "forged"  # the book never takes it
        refused = pcg(b).counters()["records_refused"]
        async with AsyncExitStack():
            body = codec.encode({"items": [{"cid": other.name, "size": view.size, "members": [[a.node_id, [
                a.address.host, a.address.port], 0.0]], "record": forged.encode()}]})
            reply = JoinReply.decode(await a.request(b.address, "pcg-join", body))
        assert reply.joined == () and [(r.content_id, r.code) for r in reply.refused] == [(other.name, "bad-record")]
        assert pcg(b).counters()["records_refused"] == refused + 1


async def chain(stack: AsyncExitStack, make: MakeSettings, count: int) -> list[butter.Node]:
    """``count`` nodes in a line, each told only its two neighbours; known-host exchanges are off."""
    hosts: dict[str, Any] = {**FAST_HOSTS, "exchange_interval": 3600.0}
    nodes: list[butter.Node] = []
    for i in range(count):
        settings = make(peers=[str(nodes[i - 1].address)] if i else [],
                        host_manager={"driver": "diversity", "options": hosts},
                        persistence={"driver": "pcg", "options": {"heartbeat_interval": 0.2, "join_timeout": 3.0}},
                        retrieval={"driver": "bfs"})
        nodes.append(await stack.enter_async_context(butter.open_node(settings)))
        if i:
            nodes[i - 1].introduce([nodes[i].address])
    return nodes


def within_two_hops(node: butter.Node, nodes: list[butter.Node]) -> set[butter.Node]:
    by_address = {n.address: n for n in nodes}
    near = {by_address[p.address] for p in node.hosts.peers() if p.address in by_address}
    return near | {by_address[p.address] for n in near for p in n.hosts.peers() if p.address in by_address}


async def test_a_name_published_beyond_two_hops_resolves_through_its_holders(memory_settings: MakeSettings) -> None:
    async with AsyncExitStack() as stack:
        nodes = await chain(stack, memory_settings, 7)
        net = Network(memory_settings, stack)
        net.nodes = nodes
        await net.wait_for(lambda: all(len(n.hosts.peers()) == (1 if n in (nodes[0], nodes[-1]) else 2) for n in nodes))
        record = await nodes[0].publish("far", b"away")
        await net.wait_for(lambda: len(net.holders(record.name)) >= 2)
        await anyio.sleep(1.0)  # the digests of the holders' neighbours list the name
        resolver = nodes[-1]
        having = {n for n in nodes if n.records.get(record.name, now=time.time()) is not None}
        assert not having & (within_two_hops(resolver, nodes) | {resolver}), "the chain is too short for this test"
        with anyio.fail_after(30):
            got = await resolver.resolve(record.name)
        assert got == record


@pytest.mark.parametrize("kind", ["memory", "tcp"])
async def test_a_deleted_name_resolves_as_deleted_and_holders_refuse_its_older_records(
        kind: str, memory_settings: MakeSettings) -> None:
    make = memory_settings if kind == "memory" else tcp_settings(secure=True)
    async with network(make, 5) as net:
        publisher, reader = net.nodes[0], net.nodes[-1]
        record = await publisher.publish("site", b"v1", fanout=0)
        holders = await kept_by_three(net, record.name)
        deletion = await publisher.unpublish("site", fanout=0)
        assert deletion.deleted and deletion.name == record.name and deletion.sequence > record.sequence
        await net.wait_for(lambda: all(sequence(h, record.name) == deletion.sequence for h in holders))
        for holder in holders:
            reply = await reader.request(holder.address, "put-record", codec.encode({"record": record.encode()}))
            assert codec.Fields.decode(reply).string("outcome") == "stale"  # not resurrected by stale gossip
        with pytest.raises(butter.RecordDeleted) as info:
            await reader.resolve(record.name)
        assert isinstance(info.value, butter.RecordNotFound) and info.value.record == deletion
