"""butter.net.accept: the next connection of a listener, and no connection lost when accepts are cancelled."""

from __future__ import annotations

import anyio
import pytest

from butter.net import accept

pytestmark = pytest.mark.anyio


async def test_accepts_a_connection_and_stops_when_the_listener_closes() -> None:
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with await anyio.connect_tcp("127.0.0.1", port) as client:
            server = await accept(listener)
            await client.send(b"ping")
            assert await server.receive() == b"ping"
            await server.aclose()
    with pytest.raises(anyio.ClosedResourceError):
        await accept(listener)


async def test_cancelled_accepts_lose_no_connection() -> None:
    """Accepts cancelled at once, again and again, while clients connect: every connection is still accepted
    by a later accept (asyncio's sock_accept could lose it and raise InvalidStateError in the loop)."""
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        clients = [await anyio.connect_tcp("127.0.0.1", port) for _ in range(20)]
        for _ in range(50):
            with anyio.move_on_after(0):
                await accept(listener)
        with anyio.fail_after(30):
            for _ in clients:
                await (await accept(listener)).aclose()
        for client in clients:
            await client.aclose()
