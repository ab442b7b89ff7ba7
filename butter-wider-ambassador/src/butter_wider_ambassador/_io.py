"""Thin anyio adapters: connecting from a chosen local port, message channels, and byte splicing.

* :func:`connect` opens a TCP connection, optionally from a given local ``(host, port)`` with
  ``SO_REUSEADDR`` and ``SO_REUSEPORT`` set, which the hole punch needs (a second socket on the port of a
  connection that is still open, for a TCP simultaneous open).
* :class:`Channel` sends and receives :mod:`._messages` frames on a stream, framed on the way in by the one
  generic framer, :class:`butter.wire.FrameDecoder`.
* :func:`splice` copies bytes both ways between two streams until both ends are done, optionally under a
  :class:`~._limits.CircuitBudget`, and reports why it ended.

Every network failure is translated at this boundary into :class:`~butter.errors.PeerUnreachable` or
:class:`~butter.errors.RequestTimeout` (STYLE: no ``OSError`` or ``anyio.*`` escapes).
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
from anyio.abc import ByteStream, SocketAttribute, SocketStream

from butter.errors import (
    CONNECT_ERRORS,
    NETWORK_ERRORS,
    PeerUnreachable,
    ProtocolError,
    RequestTimeout,
    describe_network_error,
)
from butter.peers import PeerAddress
from butter.wire import FrameDecoder, FrameRejected

from ._limits import CircuitBudget, LimitExceeded
from ._messages import MAX_MESSAGE, Message, Refused, decode_message, encode_message

__all__ = ["WILDCARD", "Channel", "connect", "local_address", "remote_address", "splice"]

READ_CHUNK = 64 * 1024
WILDCARD = frozenset({"", "0.0.0.0", "::"})  # hosts that mean "every interface"
M = TypeVar("M", bound=Message)


async def connect(
    remote: PeerAddress, *, timeout: float, local: tuple[str, int] | None = None, reuse: bool = False
) -> SocketStream:
    """A TCP connection to ``remote`` within ``timeout`` seconds, from ``local`` when given.

    ``reuse`` sets ``SO_REUSEADDR`` and ``SO_REUSEPORT`` before binding, so that several sockets can share
    a local port (each connected to a different peer). Raises :class:`PeerUnreachable` (refused, reset,
    no route) or :class:`RequestTimeout`.
    """
    family = socket.AF_INET6 if ":" in remote.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if reuse:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if hasattr(socket, "SO_REUSEPORT"):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if local is not None:
            sock.bind(local)
        sock.setblocking(False)
        with anyio.fail_after(timeout):
            code = sock.connect_ex((remote.host, remote.port))
            if code in (errno.EINPROGRESS, errno.EAGAIN, errno.EALREADY):
                await anyio.wait_writable(sock)
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code not in (0, errno.EISCONN):
                raise OSError(code, errno.errorcode.get(code, str(code)))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return await SocketStream.from_socket(sock)
    except TimeoutError:
        sock.close()
        raise RequestTimeout(f"connecting to {remote} timed out after {timeout} s") from None
    except CONNECT_ERRORS as exc:
        sock.close()
        raise PeerUnreachable(f"cannot connect to {remote}: {describe_network_error(exc)}") from None
    except BaseException:
        sock.close()
        raise


def _address_of(stream: ByteStream, attribute: Any) -> PeerAddress:
    value = stream.extra(attribute)
    return PeerAddress(str(value[0]), int(value[1]))


def remote_address(stream: ByteStream) -> PeerAddress:
    """The address the other end of ``stream`` connects from (as this host sees it, after any NAT)."""
    return _address_of(stream, SocketAttribute.remote_address)


def local_address(stream: ByteStream) -> PeerAddress:
    return _address_of(stream, SocketAttribute.local_address)


class Channel:
    """Messages over a byte stream. :meth:`receive` raises :class:`PeerUnreachable` when the stream ends or
    breaks, :class:`ProtocolError` on a malformed message (and on every call after one: the connection
    should be closed), and :class:`RequestTimeout` after ``timeout``. ``decoder.rest()`` hands over the bytes
    read beyond the last message (a data connection's first raw bytes)."""

    def __init__(self, stream: ByteStream) -> None:
        self.stream = stream
        self.decoder: FrameDecoder[Message] = FrameDecoder(MAX_MESSAGE, parse=decode_message)
        self._malformed: ProtocolError | None = None
        self._lock = anyio.Lock()

    async def send(self, message: Message) -> None:
        """Send one message whole (concurrent senders are serialised)."""
        async with self._lock:
            try:
                await self.stream.send(encode_message(message))
            except NETWORK_ERRORS as exc:
                raise PeerUnreachable(f"cannot send {message.KIND}: {describe_network_error(exc)}") from None

    async def receive(self, timeout: float | None = None) -> Message:
        try:
            with anyio.fail_after(timeout):
                while True:
                    if self._malformed is not None:
                        raise self._malformed
                    event = self.decoder.next_event()
                    if isinstance(event, FrameRejected):
                        self._malformed = event.error
                        self.decoder.rest()  # nothing after a malformed message is read
                        continue
                    if event is not None:
                        return event
                    self.decoder.feed(await self.stream.receive(READ_CHUNK))
        except TimeoutError:
            raise RequestTimeout(f"no message within {timeout} s") from None
        except NETWORK_ERRORS as exc:
            raise PeerUnreachable(f"connection lost: {describe_network_error(exc)}") from None

    async def expect(self, kind: type[M], timeout: float) -> M:
        """Receive one message; raise :class:`ProtocolError` if it is not a ``kind`` (a ``refused`` message
        raises :class:`PeerUnreachable` naming its code)."""
        message = await self.receive(timeout)
        if isinstance(message, Refused):
            raise PeerUnreachable(f"refused: {message.code}: {message.message}")
        if not isinstance(message, kind):
            raise ProtocolError(f"expected {kind.KIND}, got {message.KIND}")
        return message

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            await anyio.aclose_forcefully(self.stream)


async def splice(
    a: ByteStream,
    b: ByteStream,
    *,
    budget: CircuitBudget | None = None,
    first_a: bytes = b"",
    first_b: bytes = b"",
    clock: Callable[[], float] = anyio.current_time,
) -> tuple[int, str | None]:
    """Copy bytes ``a`` → ``b`` and ``b`` → ``a`` until both directions are done; then close both.

    ``first_a`` / ``first_b``: bytes already read from ``a`` / ``b`` (left over by a decoder), forwarded first.
    With a ``budget`` the splice stops the moment it is exceeded (before the offending chunk is forwarded)
    or its deadline passes. Returns ``(bytes forwarded, limit)`` where ``limit`` is ``"bytes"``,
    ``"duration"`` or ``None`` (the ends closed).
    """
    moved = 0
    limit: str | None = None

    async def pump(src: ByteStream, dst: ByteStream, first: bytes, scope: anyio.CancelScope) -> None:
        nonlocal moved, limit
        try:
            data = first
            while True:
                if data:
                    if budget is not None:
                        budget.consume(len(data), clock())
                    await dst.send(data)
                    moved += len(data)
                data = await src.receive(READ_CHUNK)
        except LimitExceeded as exc:
            limit = exc.limit
            scope.cancel()
        except anyio.EndOfStream:
            try:
                await dst.send_eof()
            except NETWORK_ERRORS:
                scope.cancel()
        except NETWORK_ERRORS:
            scope.cancel()

    try:
        async with anyio.create_task_group() as tg:
            if budget is not None:
                tg.cancel_scope.deadline = budget.deadline
            tg.start_soon(pump, a, b, first_a, tg.cancel_scope)
            tg.start_soon(pump, b, a, first_b, tg.cancel_scope)
        if budget is not None and limit is None and tg.cancel_scope.cancelled_caught and clock() >= budget.deadline:
            limit = "duration"
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.aclose_forcefully(a)
            await anyio.aclose_forcefully(b)
    return moved, limit
