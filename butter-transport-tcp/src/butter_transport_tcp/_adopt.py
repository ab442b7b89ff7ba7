"""Adopting a connection that was established elsewhere (a TCP hole punch) as an outgoing connection.

Added for butter-wider-ambassador: after a simultaneous open, the initiator hands the connected stream to
its transport, keyed by the address it knows the peer by (the peer's relayed address), so that every later
request to that address goes over the direct connection instead of the relay. When the adopted connection
closes (idle, reset), the next request dials ``address`` again as usual.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
from anyio.abc import ByteStream

from butter.errors import PeerUnreachable
from butter.peers import PeerAddress

from ._connection import OutgoingConnection

if TYPE_CHECKING:
    from ._transport import TcpTransport

__all__ = ["adopt_outgoing"]


def adopt_outgoing(transport: TcpTransport, address: PeerAddress, stream: ByteStream) -> None:
    """Make ``stream`` (already connected) ``transport``'s outgoing connection to ``address``, replacing any
    existing one; its reader runs in the transport's task group. Raises
    :class:`~butter.errors.PeerUnreachable` when the transport is not serving or has no room."""
    tg = transport._tg
    if tg is None:
        raise PeerUnreachable("the tcp transport is not serving")
    transport._make_room(address)
    transport._open += 1
    transport.stats.connections_opened += 1

    def on_closed(closed: OutgoingConnection) -> None:
        if transport._outgoing.get(address) is closed:
            del transport._outgoing[address]
        transport._release(closed)

    connection = OutgoingConnection(
        stream,
        peer=str(address),
        max_frame=transport.max_frame,
        read_chunk=transport.read_chunk,
        stats=transport.stats,
        on_closed=on_closed,
    )
    stale = transport._outgoing.pop(address, None)
    transport._outgoing[address] = connection
    tg.start_soon(connection.run)
    if stale is not None:
        tg.start_soon(_retire, transport, address, stale)


async def _retire(transport: TcpTransport, address: PeerAddress, stale: OutgoingConnection) -> None:
    """Close a replaced connection once the requests in flight on it are answered (at most 30 s)."""
    with anyio.move_on_after(30):
        while stale.pending and not stale.closed:  # noqa: ASYNC110 (replies arrive without an event to wait on)
            await anyio.sleep(0.05)
    transport._discard(address, stale, "replaced by an adopted connection")
