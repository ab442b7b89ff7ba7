"""Adopting a connection made elsewhere (a hole punch, butter-wider-ambassador) with real sockets on 127.0.0.1.

The adopted stream is secured like a dialled one, replaces the pooled connection without failing the requests
in flight on it, and is refused when it reaches a node other than the one expected.
"""

from __future__ import annotations

import anyio
import pytest

from butter.errors import PeerIdentityMismatch
from butter.peers import PeerAddress
from butter.wire import Reply, Request
from butter_transport_tcp import TcpTransport

from .helpers import LOOPBACK, serving, tcp_transport

pytestmark = pytest.mark.anyio


def transport() -> TcpTransport:
    return tcp_transport()


class SlowEcho:
    """Echoes; a request to route ``slow`` waits until ``release`` is set."""

    def __init__(self) -> None:
        self.release = anyio.Event()

    async def __call__(self, request: Request) -> Reply:
        if request.route == "slow":
            await self.release.wait()
        return Reply(request.id, request.body)


async def test_an_adopted_stream_replaces_the_pool_without_failing_requests_in_flight() -> None:
    with anyio.fail_after(10):
        server, client = transport(), transport()
        dispatch = SlowEcho()
        async with serving(server, dispatch) as address, serving(client), anyio.create_task_group() as tg:
            assert await client.request(address, "echo", b"first", timeout=5) == b"first"
            relayed = client._pool.connections[address]
            replies: list[bytes] = []

            async def slow() -> None:
                replies.append(await client.request(address, "slow", b"in flight", timeout=5))

            tg.start_soon(slow)
            while not relayed.pending:
                await anyio.sleep(0.01)
            direct = await anyio.connect_tcp(address.host, address.port)
            await client.adopt_outgoing(address, direct)
            adopted = client._pool.connections[address]
            assert adopted is not relayed and adopted.node_id == server.node_id
            assert await client.request(address, "echo", b"direct", timeout=5) == b"direct"
            assert not relayed.closed  # still answering its request in flight
            dispatch.release.set()
            while not relayed.closed:  # retired once its last reply landed
                await anyio.sleep(0.01)
            assert client._pool.connections[address] is adopted and not adopted.closed
        assert replies == [b"in flight"]


async def test_an_adopted_stream_reaching_another_node_is_refused() -> None:
    with anyio.fail_after(10):
        server, impostor, client = transport(), transport(), transport()
        async with serving(server) as address, serving(impostor) as other, serving(client):
            client.expect_identity(address, server.node_id)
            wrong = await anyio.connect_tcp(other.host, other.port)
            with pytest.raises(PeerIdentityMismatch):
                await client.adopt_outgoing(address, wrong)
            assert address not in client._pool.connections
            assert client.open_connections == 0
            assert await client.request(address, "echo", b"dialled", timeout=5) == b"dialled"


async def test_adopting_while_not_serving_closes_the_stream() -> None:
    with anyio.fail_after(10):
        server, client = transport(), transport()
        async with serving(server) as address:
            stream = await anyio.connect_tcp(address.host, address.port)
            with pytest.raises(Exception, match="not serving"):
                await client.adopt_outgoing(PeerAddress(LOOPBACK, address.port), stream)
            with pytest.raises(anyio.ClosedResourceError):
                await stream.send(b"x")
