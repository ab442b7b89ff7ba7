""":class:`TcpTransport`: Butter's wire (DESIGN "Wire", SPEC §2) over TCP, with a pooled, multiplexed client.

Model:

* ``serve`` binds a listener, then owns one task group holding every task of the transport: the accept
  loops, per incoming connection a reader, a writer and one task per request being answered, per outgoing
  connection a reader and a writer, and a sweeper that closes idle connections. Cancelling ``serve``
  closes every socket.
* ``request`` uses one outgoing connection per peer address, opened on first use and reused; requests to
  that peer share it, multiplexed by id. Concurrent first requests to a peer share one connect attempt.
* ``max_connections`` caps incoming plus outgoing connections. An incoming connection over the cap is
  closed at once (and counted); a new outgoing one first evicts the least recently used idle outgoing
  connection.
"""

from __future__ import annotations

import itertools
import logging
from collections import OrderedDict

import anyio
from anyio.abc import ByteStream, SocketAttribute, SocketListener, TaskGroup, TaskStatus

from butter.errors import ButterConfigError, PeerUnreachable, RemoteError, RequestTimeout
from butter.peers import PeerAddress
from butter.slots import Dispatcher
from butter.wire import DEFAULT_MAX_FRAME, Request, encode

from ._address import WILDCARD_HOSTS, advertised_address
from ._adopt import adopt_outgoing
from ._connection import Connection, InboundConnection, OutgoingConnection
from ._errors import NETWORK_ERRORS, describe
from ._stats import TcpStats

__all__ = ["TcpTransport"]

log = logging.getLogger("butter.transport.tcp")

MIN_FRAME = 1024  # bytes; the same floor ButterSettings.max_frame enforces
ACCEPT_BACKOFF = 0.1  # seconds to wait after accept() fails (e.g. out of file descriptors)


class _Dial:
    """A connect attempt that concurrent first requests to one peer wait on together."""

    __slots__ = ("connection", "done", "error")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.connection: OutgoingConnection | None = None
        self.error: PeerUnreachable | RequestTimeout | None = None


def _peer_name(stream: ByteStream) -> str:
    try:
        remote = stream.extra(SocketAttribute.remote_address)
    except (OSError, anyio.TypedAttributeLookupError):
        return "?"
    if not isinstance(remote, tuple) or not remote[0]:
        return "?"
    return str(PeerAddress(str(remote[0]), int(remote[1])))


class TcpTransport:
    """A :class:`~butter.slots.Transport` speaking length-prefixed msgpack frames over TCP.

    * ``host``, ``port``: where to listen. ``port=0`` lets the OS pick; ``0.0.0.0`` (or ``::``) listens
      on every interface.
    * ``advertise_host``: the host peers should dial, when it differs from ``host`` (NAT, containers);
      empty: the bound host, or for a wildcard bind this machine's outbound IPv4 address.
    * ``max_frame``: the largest frame sent or accepted, bytes (default 4 MiB, at least 1 KiB).
    * ``connect_timeout``: seconds allowed to establish an outgoing connection (default 5).
    * ``max_connections``: incoming plus outgoing connections open at once (default 1024).
    * ``idle_timeout``: seconds after which an outgoing connection with no request in flight is closed
      (default 60); an incoming connection is closed after twice that without traffic, so the dialling side
      normally closes first.
    * ``read_chunk``: bytes read from a socket at once (default 256 KiB, asyncio's own read size, so chunks
      are not split and copied). Memory per connection is about ``max_frame + read_chunk`` in, twice
      (1 MiB + ``max_frame``) out, plus the requests being handled.
    * ``max_concurrent_requests``: requests one incoming connection may have being handled at once
      (default 256); further ones are answered with error code ``overloaded``.

    Raises :class:`~butter.errors.ButterConfigError` for an invalid setting. :attr:`stats` counts
    connections and requests (:class:`~butter_transport_tcp.TcpStats`).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        advertise_host: str = "",
        max_frame: int = DEFAULT_MAX_FRAME,
        connect_timeout: float = 5.0,
        max_connections: int = 1024,
        idle_timeout: float = 60.0,
        read_chunk: int = 256 * 1024,
        max_concurrent_requests: int = 256,
    ) -> None:
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ButterConfigError(f"port must be an integer from 0 to 65535, got {port!r}")
        if max_frame < MIN_FRAME:
            raise ButterConfigError(f"max_frame must be at least {MIN_FRAME} bytes, got {max_frame}")
        if connect_timeout <= 0 or idle_timeout <= 0:
            raise ButterConfigError("connect_timeout and idle_timeout must be positive (seconds)")
        if max_connections < 1 or read_chunk < 1 or max_concurrent_requests < 1:
            raise ButterConfigError("max_connections, read_chunk and max_concurrent_requests must be at least 1")
        self.host = host
        self.port = port
        self.advertise_host = advertise_host
        self.max_frame = int(max_frame)
        self.connect_timeout = connect_timeout
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.read_chunk = read_chunk
        self.max_concurrent_requests = max_concurrent_requests
        self.stats = TcpStats()
        self.address: PeerAddress | None = None  # set while serving: what serve() reported
        self._ids = itertools.count(1)  # request ids; 0 is reserved for connection-level errors
        self._tg: TaskGroup | None = None
        self._outgoing: OrderedDict[PeerAddress, OutgoingConnection] = OrderedDict()  # least recently used first
        self._dialing: dict[PeerAddress, _Dial] = {}
        self._inbound: set[InboundConnection] = set()
        self._open = 0  # connections counted toward max_connections, including connects in progress

    @property
    def open_connections(self) -> int:
        """Connections currently counted toward ``max_connections`` (incoming, outgoing and connecting)."""
        return self._open

    # -- serving ------------------------------------------------------------------------------------------

    async def serve(self, dispatch: Dispatcher, *, task_status: TaskStatus[PeerAddress]) -> None:
        """Listen, report the address peers should dial via ``task_status.started``, then serve until cancelled.

        Raises :class:`~butter.errors.ButterConfigError` naming ``host:port`` when the listener cannot be
        bound (port in use, address not on this machine), before ``task_status.started``, so it reaches
        whoever awaited ``task_group.start(transport.serve, ...)``.
        """
        if self._tg is not None:
            raise ButterConfigError("this transport is already serving")
        listeners = await self._bind()
        try:
            local = listeners[0].extra(SocketAttribute.local_address)
            bound_host, bound_port = (str(local[0]), int(local[1])) if isinstance(local, tuple) else ("", self.port)
            address = advertised_address(
                "" if self.host in WILDCARD_HOSTS else bound_host, bound_port, self.advertise_host
            )
            async with anyio.create_task_group() as tg:
                self._tg = tg
                for listener in listeners:
                    tg.start_soon(self._accept_loop, listener, dispatch, tg)
                tg.start_soon(self._sweep)
                self.address = address
                log.info("tcp transport listening on %s:%s, advertised as %s", self.host, bound_port, address)
                task_status.started(address)
        finally:
            self._tg = None
            self.address = None
            for dial in self._dialing.values():  # connects that never got to run (cancelled before starting)
                dial.error = dial.error or PeerUnreachable("the transport stopped")
                dial.done.set()
            self._dialing.clear()
            with anyio.CancelScope(shield=True):
                for listener in listeners:
                    await anyio.aclose_forcefully(listener)

    async def _bind(self) -> list[SocketListener]:
        host = self.host or None  # empty: every interface, IPv4 and IPv6
        try:
            multi = await anyio.create_tcp_listener(local_host=host, local_port=self.port)
        except (OSError, OverflowError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            where = str(PeerAddress(self.host or "0.0.0.0", self.port))
            raise ButterConfigError(f"cannot listen on {where}: {reason}") from None
        return list(multi.listeners)  # type: ignore[arg-type]  # TCP listeners are SocketListeners

    async def _accept_loop(self, listener: SocketListener, dispatch: Dispatcher, tg: TaskGroup) -> None:
        while True:
            try:
                stream = await listener.accept()
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return
            except OSError as exc:  # EMFILE, ENOBUFS, ECONNABORTED...: keep serving the connections we have
                log.warning("accept() failed: %s; retrying in %s s", describe(exc), ACCEPT_BACKOFF)
                await anyio.sleep(ACCEPT_BACKOFF)
                continue
            if self._open >= self.max_connections:
                self.stats.connections_refused += 1
                log.warning(
                    "refused a connection from %s: %d connections open (max_connections)",
                    _peer_name(stream),
                    self._open,
                )
                with anyio.CancelScope(shield=True):
                    await anyio.aclose_forcefully(stream)
                continue
            self._open += 1
            self.stats.connections_accepted += 1
            connection = InboundConnection(
                stream,
                peer=_peer_name(stream),
                max_frame=self.max_frame,
                read_chunk=self.read_chunk,
                stats=self.stats,
                dispatch=dispatch,
                max_concurrent=self.max_concurrent_requests,
            )
            self._inbound.add(connection)
            tg.start_soon(self._run_inbound, connection)

    async def _run_inbound(self, connection: InboundConnection) -> None:
        try:
            await connection.run()
        finally:
            self._inbound.discard(connection)
            self._release(connection)

    async def _sweep(self) -> None:
        """Close connections idle longer than ``idle_timeout`` (outgoing) or twice that (incoming)."""
        interval = min(max(self.idle_timeout / 4, 0.01), 5.0)
        while True:
            await anyio.sleep(interval)
            now = anyio.current_time()
            for address, connection in list(self._outgoing.items()):
                if not connection.pending and now - connection.last_active >= self.idle_timeout:
                    self._discard(address, connection, "idle")
                    self.stats.connections_idle_closed += 1
            for inbound in list(self._inbound):
                if not inbound.active and now - inbound.last_active >= 2 * self.idle_timeout:
                    inbound.close("idle")
                    self.stats.connections_idle_closed += 1

    def _release(self, connection: Connection) -> None:
        if not connection.released:
            connection.released = True
            self._open -= 1

    def _discard(self, address: PeerAddress, connection: OutgoingConnection, reason: str) -> None:
        """Close an outgoing connection now and stop counting it (its reader finishes the cleanup)."""
        if self._outgoing.get(address) is connection:
            del self._outgoing[address]
        connection.close(reason)
        self._release(connection)

    # -- requesting ---------------------------------------------------------------------------------------

    async def request(self, address: PeerAddress, route: str, body: bytes, *, timeout: float) -> bytes:
        """Send ``body`` (bytes) to ``route`` at ``address`` and return the reply body.

        ``timeout`` (seconds) bounds the whole exchange, connecting included; connecting alone is also
        bounded by ``connect_timeout``. Raises:

        * :class:`~butter.errors.FrameTooLarge`: the request exceeds ``max_frame``; nothing was sent.
        * :class:`~butter.errors.PeerUnreachable`: the transport is not serving, the connection was refused,
          reset or closed before the reply (at once, not after the timeout), or ``max_connections`` is reached
          with every outgoing connection busy.
        * :class:`~butter.errors.RequestTimeout`: no reply within ``timeout``, or no connection within
          ``connect_timeout``.
        * :class:`~butter.errors.RemoteError`: the peer answered with an error reply (``code``, ``message``).
        """
        if self._tg is None:
            raise PeerUnreachable("the tcp transport is not serving (the node is not started or has stopped)")
        request_id = next(self._ids)
        frame = encode(Request(request_id, route, body), self.max_frame)  # FrameTooLarge before any I/O
        try:
            with anyio.fail_after(timeout):
                connection = self._outgoing.get(address)
                if connection is None or connection.closed:
                    connection = await self._connect(address)
                else:
                    self._outgoing.move_to_end(address)
                reply = await connection.call(request_id, frame)
        except TimeoutError:
            raise RequestTimeout(f"no reply from {address} to {route!r} within {timeout} s") from None
        if reply.error is not None:
            raise RemoteError(reply.error.code, reply.error.message)
        return reply.body

    async def _connect(self, address: PeerAddress) -> OutgoingConnection:
        dial = self._dialing.get(address)
        if dial is None:
            if self._tg is None:
                raise PeerUnreachable("the tcp transport is not serving")
            dial = _Dial()
            self._dialing[address] = dial
            # The connect runs in the transport's task group, not the caller's: a caller that gives up does
            # not abort the attempt others wait on, and the connection's reader outlives this request.
            self._tg.start_soon(self._dial_and_read, address, dial)
        await dial.done.wait()
        if dial.connection is None:
            error = dial.error or PeerUnreachable(f"cannot connect to {address}")
            raise type(error)(str(error))  # a fresh exception per waiter
        return dial.connection

    async def _dial_and_read(self, address: PeerAddress, dial: _Dial) -> None:
        """Connect to ``address`` for every waiter of ``dial``, then be the connection's reader task."""
        try:
            connection = await self._open_outgoing(address)
            dial.connection = connection
        except (PeerUnreachable, RequestTimeout) as exc:
            dial.error = exc
            return
        finally:
            if self._dialing.get(address) is dial:
                del self._dialing[address]
            if dial.connection is None and dial.error is None:
                dial.error = PeerUnreachable("the transport stopped while connecting")
            dial.done.set()
        await connection.run()

    async def _open_outgoing(self, address: PeerAddress) -> OutgoingConnection:
        self._make_room(address)
        self._open += 1
        try:
            with anyio.fail_after(self.connect_timeout):
                stream = await anyio.connect_tcp(address.host, address.port)
        except TimeoutError:
            self._open -= 1
            raise RequestTimeout(f"connecting to {address} timed out after {self.connect_timeout} s") from None
        except NETWORK_ERRORS as exc:
            self._open -= 1
            raise PeerUnreachable(f"cannot connect to {address}: {describe(exc)}") from None
        except BaseException:
            self._open -= 1
            raise
        self.stats.connections_opened += 1

        def on_closed(closed: OutgoingConnection) -> None:
            if self._outgoing.get(address) is closed:
                del self._outgoing[address]
            self._release(closed)

        connection = OutgoingConnection(
            stream,
            peer=str(address),
            max_frame=self.max_frame,
            read_chunk=self.read_chunk,
            stats=self.stats,
            on_closed=on_closed,
        )
        stale = self._outgoing.pop(address, None)
        if stale is not None:
            self._discard(address, stale, "replaced")
        self._outgoing[address] = connection
        return connection

    def _make_room(self, address: PeerAddress) -> None:
        """Evict the least recently used idle outgoing connection if the cap is reached.

        Raises :class:`PeerUnreachable` when every connection is busy.
        """
        if self._open < self.max_connections:
            return
        for victim_address, victim in self._outgoing.items():
            if not victim.pending:
                self._discard(victim_address, victim, "evicted to stay under max_connections")
                self.stats.connections_evicted += 1
                return
        raise PeerUnreachable(
            f"cannot connect to {address}: {self.max_connections} connections open (max_connections) "
            "and none is idle"
        )

    def adopt_outgoing(self, address: PeerAddress, stream: ByteStream) -> None:
        """Use ``stream``, connected elsewhere (a hole punch), as the outgoing connection to ``address``
        (see :mod:`._adopt`). Raises :class:`~butter.errors.PeerUnreachable` when not serving or full."""
        adopt_outgoing(self, address, stream)
