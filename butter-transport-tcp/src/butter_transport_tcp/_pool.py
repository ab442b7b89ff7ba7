"""The pool of outgoing connections: one per peer address, opened on first use and reused.

* Concurrent first requests to a peer share one connect attempt, which runs in the transport's task group
  (a caller that gives up does not abort the attempt others wait on, and the connection's reader outlives
  the request that opened it).
* The kernel drops a connection whose sent data stays unacknowledged for ``UNACKNOWLEDGED_TIMEOUT`` seconds
  (Linux), so a request after a partition dials afresh.
* A new connection counts toward ``max_connections`` from the start of its connect; at the cap, the least
  recently used idle outgoing connection is evicted first, and :class:`~butter.errors.TransportBusy` is
  raised when every one is busy.
* A stream connected elsewhere (a hole punch) is secured like a dialled one and replaces the pooled
  connection; a replaced connection still answering requests is retired once they are answered.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import socket
from collections import OrderedDict

import anyio
from anyio.abc import ByteStream, SocketAttribute, SocketStream, TaskGroup

from butter.errors import (
    CONNECT_ERRORS,
    PeerGone,
    PeerUnreachable,
    RequestTimeout,
    TransportBusy,
    TransportError,
    describe_network_error,
)
from butter.peers import PeerAddress

from ._connection import OutgoingConnection
from ._identities import Identities
from ._limits import ConnectionCount, RateLimitedLog
from ._options import TcpOptions
from ._stats import TcpStats

__all__ = ["OutgoingPool"]

log = logging.getLogger("butter.transport.tcp")

RETIRE_TIMEOUT = 30.0  # seconds a replaced outgoing connection may take to finish its requests in flight
UNACKNOWLEDGED_TIMEOUT = 10.0  # seconds sent data may stay unacknowledged before the kernel drops the connection


def limit_unacknowledged(stream: SocketStream) -> None:
    """Have the kernel drop the connection once data it sent stays unacknowledged for
    ``UNACKNOWLEDGED_TIMEOUT`` seconds (Linux ``TCP_USER_TIMEOUT``; elsewhere nothing changes): the peer is
    gone or cut off. Requests then dial a new connection instead of queueing behind TCP's retransmission
    backoff, which after a long partition keeps a healed link silent for tens of seconds."""
    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    raw = stream.extra(SocketAttribute.raw_socket, None)
    if option is not None and raw is not None:
        with contextlib.suppress(OSError):
            raw.setsockopt(socket.IPPROTO_TCP, option, int(UNACKNOWLEDGED_TIMEOUT * 1000))


class _Dial:
    """A connect attempt that concurrent first requests to one peer wait on together."""

    __slots__ = ("connection", "done", "error")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.connection: OutgoingConnection | None = None
        self.error: TransportError | None = None


class OutgoingPool:
    """Outgoing connections by peer address, least recently used first.

    ``max_frame`` (bytes) and ``connect_timeout`` (seconds) are the node's settings; ``count`` is shared
    with admission; ``identities`` secures each new connection. Works only between :meth:`start` (given the
    transport's task group) and :meth:`stop`.
    """

    def __init__(
        self,
        options: TcpOptions,
        count: ConnectionCount,
        identities: Identities,
        *,
        max_frame: int,
        connect_timeout: float,
        stats: TcpStats,
        limits: RateLimitedLog,
    ) -> None:
        self.options = options
        self.count = count
        self.identities = identities
        self.max_frame = max_frame
        self.connect_timeout = connect_timeout
        self.stats = stats
        self.limits = limits
        self.connections: OrderedDict[PeerAddress, OutgoingConnection] = OrderedDict()
        self._dialing: dict[PeerAddress, _Dial] = {}
        self._tg: TaskGroup | None = None

    def start(self, tg: TaskGroup) -> None:
        self._tg = tg

    def stop(self) -> None:
        """Fail the connects that never got to run (cancelled before starting)."""
        self._tg = None
        for dial in self._dialing.values():
            dial.error = dial.error or PeerUnreachable("the transport stopped")
            dial.done.set()
        self._dialing.clear()

    def ready(self, address: PeerAddress) -> OutgoingConnection | None:
        """The open connection to ``address`` (marked most recently used), or ``None``: :meth:`get` connects."""
        connection = self.connections.get(address)
        if connection is None or connection.closed:
            return None
        self.connections.move_to_end(address)
        return connection

    async def get(self, address: PeerAddress) -> OutgoingConnection:
        """The open connection to ``address``, connecting first if there is none.

        Raises :class:`~butter.errors.PeerUnreachable` (refused, handshake failed, not serving),
        :class:`~butter.errors.PeerIdentityMismatch`, :class:`~butter.errors.TransportBusy` or
        :class:`~butter.errors.RequestTimeout` (no connection within ``connect_timeout``).
        """
        connection = self.ready(address)
        if connection is not None:
            return connection
        dial = self._dialing.get(address)
        if dial is None:
            if self._tg is None:
                raise PeerUnreachable("the tcp transport is not serving")
            dial = self._dialing[address] = _Dial()
            self._tg.start_soon(self._dial_and_read, address, dial)
        await dial.done.wait()
        if dial.connection is None:
            error = dial.error or PeerUnreachable(f"cannot connect to {address}")
            raise copy.copy(error)  # a fresh exception per waiter (attributes such as ``expected`` kept)
        return dial.connection

    async def _dial_and_read(self, address: PeerAddress, dial: _Dial) -> None:
        """Connect to ``address`` for every waiter of ``dial``, then be the connection's reader task."""
        try:
            connection = await self._open(address)
            dial.connection = connection
        except TransportError as exc:
            # Kept without its traceback and context: they hold this frame, which holds ``dial``, a cycle
            # that kept every failed dial's exceptions and frames alive until a full (generation 2) collection.
            exc.__context__ = None
            dial.error = exc.with_traceback(None)
            return
        finally:
            if self._dialing.get(address) is dial:
                del self._dialing[address]
            if dial.connection is None and dial.error is None:
                dial.error = PeerUnreachable("the transport stopped while connecting")
            dial.done.set()
        await connection.run()

    async def _open(self, address: PeerAddress) -> OutgoingConnection:
        self._make_room(address)
        self.count.open += 1
        try:
            try:
                with anyio.fail_after(self.connect_timeout):
                    stream = await anyio.connect_tcp(address.host, address.port)
                limit_unacknowledged(stream)
            except TimeoutError:
                raise RequestTimeout(f"connecting to {address} timed out after {self.connect_timeout} s") from None
            except ConnectionRefusedError:
                raise PeerGone(f"cannot connect to {address}: connection refused (nothing listens there)") from None
            except CONNECT_ERRORS as exc:
                raise PeerUnreachable(f"cannot connect to {address}: {describe_network_error(exc)}") from None
            secured, node_id = await self.identities.secure_outgoing(stream, address)
        except BaseException:
            self.count.open -= 1
            raise
        return self._register(address, secured, node_id)

    async def adopt(self, address: PeerAddress, stream: ByteStream) -> None:
        """Secure ``stream`` (connected elsewhere) as the client and make it the connection to ``address``.

        Raises :class:`~butter.errors.PeerUnreachable` (not serving, handshake failed),
        :class:`~butter.errors.PeerIdentityMismatch` or :class:`~butter.errors.TransportBusy` (no room);
        ``stream`` is closed then.
        """
        try:
            if self._tg is None:
                raise PeerUnreachable("the tcp transport is not serving")
            self._make_room(address)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await anyio.aclose_forcefully(stream)
            raise
        self.count.open += 1
        try:
            secured, node_id = await self.identities.secure_outgoing(stream, address)
        except BaseException:
            self.count.open -= 1
            raise
        self._tg.start_soon(self._register(address, secured, node_id).run)

    def _register(self, address: PeerAddress, stream: ByteStream, node_id: str | None) -> OutgoingConnection:
        """Pool a secured ``stream`` as the connection to ``address`` (replacing any other one). The caller
        counted it in (``_make_room``, then ``count.open += 1``) and must run the returned connection's reader
        (``await connection.run()``) in the transport's task group."""
        self.stats.connections_opened += 1

        def on_closed(closed: OutgoingConnection) -> None:
            if self.connections.get(address) is closed:
                del self.connections[address]
            self._release(closed)

        connection = OutgoingConnection(
            stream,
            peer=str(address),
            max_frame=self.max_frame,
            read_chunk=self.options.read_chunk,
            stats=self.stats,
            on_closed=on_closed,
            node_id=node_id,
        )
        stale = self.connections.pop(address, None)
        self.connections[address] = connection
        if stale is not None:
            if stale.pending and not stale.closed and self._tg is not None:
                self._tg.start_soon(self._retire, address, stale)
            else:
                self.discard(address, stale, "replaced")
        return connection

    async def _retire(self, address: PeerAddress, stale: OutgoingConnection) -> None:
        """Close a replaced connection (a hole punch replacing a relayed one) once the requests in flight on it
        are answered, at most ``RETIRE_TIMEOUT`` seconds later: failing them would make callers report a live
        peer dead."""
        with anyio.move_on_after(RETIRE_TIMEOUT):
            while stale.pending and not stale.closed:  # noqa: ASYNC110 (no event fires when the last reply lands)
                await anyio.sleep(0.05)
        self.discard(address, stale, "replaced")

    def _make_room(self, address: PeerAddress) -> None:
        """Evict the least recently used idle outgoing connection if the cap is reached.

        Raises :class:`~butter.errors.TransportBusy` when every connection is busy.
        """
        if not self.count.full:
            return
        for victim_address, victim in self.connections.items():
            if not victim.pending:
                self.discard(victim_address, victim, "evicted to stay under max_connections")
                self.stats.connections_evicted += 1
                return
        self.stats.requests_busy += 1
        self.limits.warning("busy", "cannot open a connection: %d open (max_connections), none idle", self.count.open)
        raise TransportBusy(
            f"cannot connect to {address}: {self.count.limit} connections open (max_connections) and none is idle"
        )

    def _release(self, connection: OutgoingConnection) -> None:
        if not connection.released:
            connection.released = True
            self.count.open -= 1

    def discard(self, address: PeerAddress, connection: OutgoingConnection, reason: str) -> None:
        """Close an outgoing connection now and stop counting it (its reader finishes the cleanup)."""
        if self.connections.get(address) is connection:
            del self.connections[address]
        connection.close(reason)
        self._release(connection)

    def sweep(self, now: float) -> None:
        """Close the connections with no request in flight for ``idle_timeout`` seconds (``now`` on the
        event loop's clock)."""
        for address, connection in list(self.connections.items()):
            if not connection.pending and now - connection.last_active >= self.options.idle_timeout:
                self.discard(address, connection, "idle")
                self.stats.connections_idle_closed += 1
