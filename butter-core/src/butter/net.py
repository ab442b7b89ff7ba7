"""Socket helpers for plugins that do their own network I/O (the tcp transport, the ambassador).

:func:`accept` replaces ``await listener.accept()`` on an anyio TCP listener. On asyncio (CPython 3.11)
``accept`` goes through ``loop.sock_accept``, whose callback sets the result of a future that may already be
cancelled: a connection arriving just as the accepting task is cancelled (a node closing) raises
``InvalidStateError`` inside the event loop, and that connection is lost. Waiting for the listening socket to
be readable and accepting without blocking has no such race, on asyncio and trio alike.
"""

from __future__ import annotations

import socket

import anyio
from anyio.abc import SocketAttribute, SocketListener, SocketStream

__all__ = ["accept"]


async def accept(listener: SocketListener) -> SocketStream:
    """The next connection on ``listener`` (an anyio TCP or UNIX listener), as a :class:`SocketStream`, with
    ``TCP_NODELAY`` set on TCP. Raises :class:`anyio.ClosedResourceError` once the listener is closed, and
    ``OSError`` for accept failures (``EMFILE``, ``ECONNABORTED``, ...), as ``listener.accept()`` does."""
    raw: socket.socket = listener.extra(SocketAttribute.raw_socket)
    while True:
        if raw.fileno() < 0:
            raise anyio.ClosedResourceError
        await anyio.wait_readable(raw)
        try:
            sock, _ = raw.accept()
        except BlockingIOError:  # another task took it, or a spurious wake-up
            continue
        sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return await SocketStream.from_socket(sock)
