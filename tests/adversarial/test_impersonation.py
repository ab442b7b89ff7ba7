"""Two nodes with different identities cannot impersonate each other (real nodes over TCP on 127.0.0.1).

A node's known hosts carry node ids; the ``tcp`` plugin makes the transport expect those ids at those
addresses, so another node taking over a known address (same IP and port, other key) is refused, and the
node learns the newcomer only under its own id once the old host has been dropped. And a body naming
another node as its sender is refused when the connection authenticated someone else.
"""

from __future__ import annotations

import anyio
import pytest

import butter
from butter.errors import PeerIdentityMismatch
from butter.wire import Reply, Request, encode, encode_payload

from .nodes import target_node, tcp_settings
from .test_hostile_peers import events, secure_raw

pytestmark = pytest.mark.anyio


def known(node: butter.Node) -> dict[butter.PeerAddress, str]:
    return {p.address: p.node_id for p in node.hosts.peers()}


async def test_a_node_taking_over_a_known_address_is_refused() -> None:
    with anyio.fail_after(30):
        async with butter.open_node(tcp_settings(refresh=60.0, stack=False)) as watcher:
            async with butter.open_node(tcp_settings()) as original:
                port = original.address.port
                watcher.introduce([original.address])
                while known(watcher).get(original.address) != original.node_id:
                    await anyio.sleep(0.05)
                address, original_id = original.address, original.node_id
            async with butter.open_node(tcp_settings(port=port)) as usurper:
                assert usurper.address == address and usurper.node_id != original_id
                with pytest.raises(PeerIdentityMismatch) as info:
                    await watcher.request(address, "ping", timeout=3)
                assert (info.value.expected, info.value.actual) == (original_id, usurper.node_id)
                await watcher.hosts.refresh()  # the original does not answer: dropped, and its id forgotten
                assert address not in known(watcher)
                assert await watcher.hosts.offer(address)  # now the newcomer is admitted as itself
                assert known(watcher)[address] == usurper.node_id


async def test_each_side_of_a_node_connection_knows_who_the_other_is() -> None:
    with anyio.fail_after(20):
        async with butter.open_node(tcp_settings()) as a, butter.open_node(tcp_settings()) as b:
            assert a.transport.node_id == a.node_id  # type: ignore[attr-defined]  # the node's own key
            await b.request(a.address, "ping", timeout=3)
            assert b.transport.expected_node_id(a.address) == a.node_id  # type: ignore[attr-defined]
            (inbound,) = a.transport._inbound  # type: ignore[attr-defined]
            assert inbound.node_id == b.node_id


async def test_a_peer_cannot_release_the_hold_of_another_node() -> None:
    with anyio.fail_after(20):
        async with target_node() as (node, _), butter.open_node(tcp_settings(refresh=60.0, stack=False)) as holder:
            holds = encode_payload({"id": holder.node_id, "holds": True, "hold_timeout": 600})
            await holder.request(node.address, "host-quality", holds, timeout=3)
            assert node.quality().known_by == 1
            release = encode_payload({"id": holder.node_id, "holds": False})  # posing as the holder
            async with await secure_raw(node.address) as stream:  # a throwaway identity
                await stream.send(encode(Request(1, "host-quality", release)))
                (reply,) = await events(stream, 1)
            assert isinstance(reply, Reply) and reply.error is not None and reply.error.code == "sender-mismatch"
            assert node.quality().known_by == 1 and node.stats.sender_mismatches == 1
