"""Shared helpers for the tcp transport tests: a loopback factory and raw-socket utilities.

Every socket here is on 127.0.0.1.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from anyio.abc import SocketStream

from butter.peers import PeerAddress
from butter.settings import ButterSettings
from butter.slots import Dispatcher
from butter.testing.conformance import echo_dispatcher
from butter.wire import Event, FrameDecoder
from butter_transport_tcp import Network, TcpOptions, TcpTransport

LOOPBACK = "127.0.0.1"


def tcp_transport(
    *, host: str = LOOPBACK, port: int = 0, max_frame: int = 64 * 1024, connect_timeout: float = 2.0,
    advertise_host: str = "", network_id: str = "butter", network_key: str = "", **options: Any,
) -> TcpTransport:
    """A transport listening on ``host:port`` (default loopback, a port the OS picks) with node settings
    ``max_frame`` (bytes), ``connect_timeout`` (seconds), ``advertise_host``, ``network_id`` and
    ``network_key``, and driver ``options``."""
    settings = ButterSettings(
        host=host, port=port, max_frame=max_frame, connect_timeout=connect_timeout, advertise_host=advertise_host,
        network_id=network_id, network_key=network_key,
    )
    return TcpTransport(settings, TcpOptions(**options))


def unused_port() -> int:
    """A port on 127.0.0.1 where nobody listens (bound, noted, released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


class TcpFactory:
    """The conformance kit's factory (:class:`butter.testing.conformance.TransportFactory`) on loopback;
    ``secure=False`` makes plaintext transports."""

    def __init__(self, *, secure: bool = True) -> None:
        self.secure = secure
        self.authenticates = secure  # the conformance kit then insists each request names its sender's id

    def make(self, max_frame: int) -> TcpTransport:
        return tcp_transport(max_frame=max_frame, secure=self.secure)

    def unused_address(self) -> PeerAddress:
        return PeerAddress(LOOPBACK, unused_port())


@asynccontextmanager
async def serving(transport: TcpTransport, dispatch: Dispatcher = echo_dispatcher) -> AsyncIterator[PeerAddress]:
    """Run ``transport.serve`` for the duration of the block; yield its address."""
    async with anyio.create_task_group() as tg:
        address: PeerAddress = await tg.start(transport.serve, dispatch)
        yield address
        tg.cancel_scope.cancel()


def header(length: int) -> bytes:
    return struct.pack(">I", length)


async def read_events(stream: SocketStream, count: int, max_frame: int = 1 << 20) -> list[Event]:
    """Read until ``count`` events have arrived on a raw client stream."""
    decoder = FrameDecoder(max_frame)
    events: list[Event] = []
    while len(events) < count:
        decoder.feed(await stream.receive())
        events.extend(decoder.events())
    return events


async def connect_plain(port: int, *, local_host: str | None = None, network_id: str = "butter") -> SocketStream:
    """A raw client connection to a plaintext transport on 127.0.0.1:``port``, past the network check (as
    network ``network_id``, no key): frames of our choosing may follow."""
    stream = await anyio.connect_tcp(LOOPBACK, port, local_host=local_host)
    await Network(network_id).exchange(stream, server=False)
    return stream


async def accept_plain(stream: SocketStream, *, network_id: str = "butter") -> None:
    """Pass a plaintext client's network check as the server of a raw ``stream`` (network ``network_id``)."""
    await Network(network_id).exchange(stream, server=True)
