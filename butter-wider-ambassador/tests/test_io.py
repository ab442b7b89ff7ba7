"""The message channel (``_io.Channel``) over a real TCP connection on 127.0.0.1 (asyncio and trio): messages
split across sends arrive whole, a malformed one ends the conversation, and raw bytes after an ``accept``
are handed over."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from anyio.abc import SocketStream

from butter.errors import FrameTooLarge, ProtocolError
from butter.peers import PeerAddress
from butter.wire import encode_payload
from butter_wider_ambassador import MAX_MESSAGE, Accept, Ping, Welcome, encode_message
from butter_wider_ambassador._io import Channel

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def connected() -> AsyncIterator[tuple[SocketStream, Channel]]:
    """A raw stream (the peer) and a channel on the other end of one loopback connection."""
    async with await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0) as listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        accepted: list[SocketStream] = []

        async def accept(stream: SocketStream) -> None:
            accepted.append(stream)
            await anyio.sleep_forever()

        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, accept)
            raw = await anyio.connect_tcp("127.0.0.1", port)
            while not accepted:
                await anyio.sleep(0.01)
            channel = Channel(accepted[0])
            async with raw:
                yield raw, channel
            await channel.aclose()
            tg.cancel_scope.cancel()


async def test_messages_split_across_sends_arrive_whole() -> None:
    welcome = Welcome(PeerAddress("203.0.113.5", 4000), "203.0.113.0/24")
    data = encode_message(welcome) + encode_message(Ping())
    with anyio.fail_after(5):
        async with connected() as (raw, channel):
            for i in range(0, len(data), 3):
                await raw.send(data[i : i + 3])
            assert await channel.expect(Welcome, 2) == welcome
            assert await channel.receive(2) == Ping()


@pytest.mark.parametrize("bad", ["unknown kind", "oversized"])
async def test_a_malformed_message_ends_the_conversation(bad: str) -> None:
    if bad == "oversized":
        data, error = struct.pack(">I", MAX_MESSAGE + 1), FrameTooLarge
    else:
        payload = encode_payload({"t": "nope"})
        data, error = struct.pack(">I", len(payload)) + payload, ProtocolError
    with anyio.fail_after(5):
        async with connected() as (raw, channel):
            await raw.send(data + encode_message(Ping()))
            with pytest.raises(error):
                await channel.receive(2)
            with pytest.raises(error):  # and nothing after it is read
                await channel.receive(2)


async def test_the_bytes_after_an_accept_are_handed_over() -> None:
    with anyio.fail_after(5):
        async with connected() as (raw, channel):
            await raw.send(encode_message(Accept(3, b"t" * 16)) + b"raw circuit bytes")
            assert await channel.receive(2) == Accept(3, b"t" * 16)
            piped = channel.decoder.rest()  # what was read with the accept, then the stream's own bytes
            while len(piped) < len(b"raw circuit bytes"):
                piped += await channel.stream.receive()
            assert piped == b"raw circuit bytes"
