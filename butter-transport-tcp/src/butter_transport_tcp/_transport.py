""":class:`TcpTransport`: Butter's wire (:mod:`butter.wire`) over TCP, with a pooled, multiplexed client.

Model:

* ``serve`` binds a listener, then owns one task group holding every task of the transport: the accept
  loops, per incoming connection a reader, a writer and one task per request being answered, per outgoing
  connection a reader and a writer, and a sweeper that closes idle connections. Cancelling ``serve``
  closes every socket.
* ``request`` uses one outgoing connection per peer address, opened on first use and reused; requests to
  that peer share it, multiplexed by id. Concurrent first requests to a peer share one connect attempt.
* ``max_connections`` caps incoming plus outgoing connections. An incoming connection over the cap is
  closed at once (and counted); a new outgoing one first evicts the least recently used idle outgoing
  connection, and fails with :class:`~butter.errors.TransportBusy` when every one is busy.
* Every connection, in either role, is secured by one step (:class:`~butter_transport_tcp.SecureChannel`:
  TLS 1.3, mutual Ed25519 authentication) before any frame moves, unless ``secure=False``. The building
  blocks :meth:`TcpTransport._secure_outgoing` + :meth:`TcpTransport._register_outgoing` (outgoing) and
  :meth:`TcpTransport._admit` + :meth:`TcpTransport._serve_inbound` (incoming) take any connected stream,
  so a stream obtained another way (a TCP hole punch, :meth:`TcpTransport.adopt_outgoing`) is secured and
  served exactly like a dialled or accepted one.
* Each incoming request reaches the dispatcher with a :class:`~butter.wire.Caller`: the node id its
  connection authenticated (``None`` in plaintext) and the connection's remote address.
* Incoming connections are capped in total (``max_inbound``) and per IP address (``max_inbound_per_ip``)
  before any work is done for them; the handshake is bounded (``handshake_timeout``), and so is a frame
  once it has begun (``frame_timeout``). Hitting a limit is counted in :attr:`TcpTransport.stats` and
  logged (rate-limited), never fatal.
"""

from __future__ import annotations

import copy
import itertools
import logging
import socket
from collections import OrderedDict, defaultdict

import anyio
from anyio.abc import ByteStream, SocketAttribute, SocketListener, SocketStream, TaskGroup, TaskStatus

from butter import Identity
from butter.errors import (
    CONNECT_ERRORS,
    ButterConfigError,
    PeerIdentityMismatch,
    PeerUnreachable,
    RemoteError,
    RequestTimeout,
    TransportBusy,
    TransportError,
    describe_network_error,
)
from butter.peers import PeerAddress
from butter.slots import Dispatcher
from butter.wire import DEFAULT_MAX_FRAME, Request, encode

from ._address import WILDCARD_HOSTS, advertised_address
from ._connection import Connection, InboundConnection, OutgoingConnection
from ._limits import RateLimitedLog
from ._secure import SecureChannel
from ._stats import TcpStats

__all__ = ["TcpTransport"]

log = logging.getLogger("butter.transport.tcp")

MIN_FRAME = 1024  # bytes; the same floor ButterSettings.max_frame enforces
ACCEPT_BACKOFF = 0.1  # seconds to wait after accept() fails (e.g. out of file descriptors)
RETIRE_TIMEOUT = 30.0  # seconds a replaced outgoing connection may take to finish its requests in flight
ACCEPT_BATCH = 64  # connections taken from the backlog per wake-up of the accept loop
IDENTITY_CAPACITY = 16384  # addresses whose expected node id is remembered (pinned or told by the node), LRU


class _Dial:
    """A connect attempt that concurrent first requests to one peer wait on together."""

    __slots__ = ("connection", "done", "error")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.connection: OutgoingConnection | None = None
        self.error: TransportError | None = None


def _remote(stream: ByteStream) -> tuple[str, int] | None:
    try:
        remote = stream.extra(SocketAttribute.remote_address)
    except (OSError, anyio.TypedAttributeLookupError):
        return None
    if not isinstance(remote, tuple) or not remote[0]:
        return None
    return str(remote[0]), int(remote[1])


class TcpTransport:
    """A :class:`~butter.slots.Transport` speaking length-prefixed msgpack frames over TCP.

    * ``host``, ``port``: where to listen. ``port=0`` lets the OS pick; ``0.0.0.0`` (or ``::``) listens
      on every interface.
    * ``advertise_host``: the host peers should dial, when it differs from ``host`` (NAT, containers);
      empty: the bound host, or for a wildcard bind this machine's outbound IPv4 address.
    * ``max_frame``: the largest frame sent or accepted, bytes (default 4 MiB, at least 1 KiB).
    * ``connect_timeout``: seconds allowed to establish an outgoing TCP connection (default 5).
    * ``max_connections``: incoming plus outgoing connections open at once (default 1024).
    * ``idle_timeout``: seconds after which an outgoing connection with no request in flight is closed
      (default 60); an incoming connection is closed after twice that without traffic, so the dialling side
      normally closes first.
    * ``read_chunk``: bytes read from a socket at once (default 256 KiB, asyncio's own read size, so chunks
      are not split and copied). Memory per connection is about ``max_frame + read_chunk`` in, twice
      (1 MiB + ``max_frame``) out, plus the requests being handled.
    * ``max_concurrent_requests``: requests one incoming connection may have being handled at once
      (default 256); further ones are answered with error code ``overloaded``.
    * ``identity``: this node's :class:`~butter.Identity` (Ed25519), presented to every peer;
      default a fresh one.
    * ``secure``: secure every connection with TLS 1.3, mutually authenticated with the nodes' identities
      (default ``True``). ``False`` speaks plaintext, for debugging only: nothing is encrypted or
      authenticated, peers must be plaintext too, and ``serve`` logs a warning saying so.
    * ``max_inbound``: incoming connections open at once, handshakes included (default 768); more are closed
      at once, so that outgoing connections keep room under ``max_connections``.
    * ``max_inbound_per_ip``: incoming connections open at once from one IP address (default 64).
    * ``handshake_timeout``: seconds a secure-channel handshake may take, in either role (default 5).
    * ``frame_timeout``: seconds an incoming frame may take to arrive once it has begun (default 30); a
      slower peer is cut off.
    * ``pin_identities``: remember the node id first authenticated at each address and refuse another
      one there later (trust on first use; default ``True``). :meth:`expect_identity` (the node's known
      hosts) and :meth:`forget` (a host left) override it.

    Raises :class:`~butter.errors.ButterConfigError` for an invalid setting. :attr:`stats` counts
    connections, requests and limits hit (:class:`~butter_transport_tcp.TcpStats`).
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
        identity: Identity | None = None,
        secure: bool = True,
        max_inbound: int = 768,
        max_inbound_per_ip: int = 64,
        handshake_timeout: float = 5.0,
        frame_timeout: float = 30.0,
        pin_identities: bool = True,
    ) -> None:
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ButterConfigError(f"port must be an integer from 0 to 65535, got {port!r}")
        if max_frame < MIN_FRAME:
            raise ButterConfigError(f"max_frame must be at least {MIN_FRAME} bytes, got {max_frame}")
        if connect_timeout <= 0 or idle_timeout <= 0 or handshake_timeout <= 0 or frame_timeout <= 0:
            raise ButterConfigError(
                "connect_timeout, idle_timeout, handshake_timeout and frame_timeout must be positive (seconds)"
            )
        if min(max_connections, read_chunk, max_concurrent_requests, max_inbound, max_inbound_per_ip) < 1:
            raise ButterConfigError(
                "max_connections, read_chunk, max_concurrent_requests, max_inbound and max_inbound_per_ip "
                "must be at least 1"
            )
        self.host = host
        self.port = port
        self.advertise_host = advertise_host
        self.max_frame = int(max_frame)
        self.connect_timeout = connect_timeout
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.read_chunk = read_chunk
        self.max_concurrent_requests = max_concurrent_requests
        self.identity = identity if identity is not None else Identity.generate()
        self.max_inbound = max_inbound
        self.max_inbound_per_ip = max_inbound_per_ip
        self.handshake_timeout = handshake_timeout
        self.frame_timeout = frame_timeout
        self.pin_identities = pin_identities
        self.channel: SecureChannel | None = SecureChannel(self.identity) if secure else None
        self.stats = TcpStats()
        self.address: PeerAddress | None = None  # set while serving: what serve() reported
        self._ids = itertools.count(1)  # request ids; 0 is reserved for connection-level errors
        self._tg: TaskGroup | None = None
        self._dispatch: Dispatcher | None = None  # set while serving
        self._outgoing: OrderedDict[PeerAddress, OutgoingConnection] = OrderedDict()  # least recently used first
        self._dialing: dict[PeerAddress, _Dial] = {}
        self._inbound: set[InboundConnection] = set()
        self._open = 0  # connections counted toward max_connections, including connects in progress
        self._inbound_open = 0  # incoming connections, handshakes included (max_inbound)
        self._per_ip: defaultdict[str, int] = defaultdict(int)  # incoming connections per IP address
        self._identities: OrderedDict[PeerAddress, str] = OrderedDict()  # address -> expected node id, LRU
        self._limits = RateLimitedLog(log)

    @property
    def secure(self) -> bool:
        """Whether connections are secured (TLS 1.3, mutual Ed25519 authentication)."""
        return self.channel is not None

    @property
    def node_id(self) -> str:
        """This transport's node id (hex): what peers authenticate it as."""
        return self.identity.node_id

    @property
    def open_connections(self) -> int:
        """Connections currently counted toward ``max_connections`` (incoming, outgoing and connecting)."""
        return self._open

    # -- identities ---------------------------------------------------------------------------------------

    def expected_node_id(self, address: PeerAddress) -> str | None:
        """The node id expected at ``address``: the one first authenticated there (pinned) or the one the node
        said to expect; ``None`` when nothing is known, or in plaintext."""
        return self._identities.get(address) if self.channel is not None else None

    def expect_identity(self, address: PeerAddress, node_id: str) -> None:
        """From now on, refuse any peer at ``address`` that is not node ``node_id`` (hex).

        The ``tcp`` plugin calls this for each host entering the node's known hosts. An open outgoing
        connection to ``address`` authenticated as another node is closed at once (counted in
        ``stats.identity_mismatches``); its requests fail with ``PeerUnreachable``.
        """
        if self.channel is None:
            return
        self._remember(address, node_id)
        connection = self._outgoing.get(address)
        if connection is not None and connection.node_id is not None and connection.node_id != node_id:
            self.stats.identity_mismatches += 1
            self._limits.warning(
                "identity", "closing the connection to %s: it authenticated as node %s, but %s is expected there",
                address, connection.node_id, node_id,
            )
            self._discard(address, connection, "the peer is not the node expected at this address")

    def forget(self, address: PeerAddress) -> None:
        """Expect no particular node at ``address`` any more (it left; another node may take the address)."""
        self._identities.pop(address, None)

    def _remember(self, address: PeerAddress, node_id: str) -> None:
        self._identities[address] = node_id
        self._identities.move_to_end(address)
        while len(self._identities) > IDENTITY_CAPACITY:
            self._identities.popitem(last=False)

    # -- serving ------------------------------------------------------------------------------------------

    async def serve(self, dispatch: Dispatcher, *, task_status: TaskStatus[PeerAddress]) -> None:
        """Listen, report the address peers should dial via ``task_status.started``, then serve until cancelled.

        Raises :class:`~butter.errors.ButterConfigError` naming ``host:port`` when the listener cannot be
        bound (port in use, address not on this machine), before ``task_status.started``, so it reaches
        whoever awaited ``task_group.start(transport.serve, ...)``.
        """
        if self._tg is not None:
            raise ButterConfigError("this transport is already serving")
        if self.channel is None:
            log.warning(
                "PLAINTEXT TRANSPORT (transport.options.secure = false): connections are neither encrypted nor "
                "authenticated, and any peer can pose as any other. Use it for debugging only."
            )
        listeners = await self._bind()
        try:
            local = listeners[0].extra(SocketAttribute.local_address)
            bound_host, bound_port = (str(local[0]), int(local[1])) if isinstance(local, tuple) else ("", self.port)
            address = advertised_address(
                "" if self.host in WILDCARD_HOSTS else bound_host, bound_port, self.advertise_host
            )
            async with anyio.create_task_group() as tg:
                self._tg = tg
                self._dispatch = dispatch
                for listener in listeners:
                    tg.start_soon(self._accept_loop, listener, dispatch)
                tg.start_soon(self._sweep)
                self.address = address
                log.info(
                    "tcp transport listening on %s:%s, advertised as %s; node %s, %s", self.host, bound_port,
                    address, self.node_id[:8], "TLS 1.3 with Ed25519 identities" if self.channel else "PLAINTEXT",
                )
                task_status.started(address)
        finally:
            self._tg = None
            self._dispatch = None
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

    async def _accept_loop(self, listener: SocketListener, dispatch: Dispatcher) -> None:
        """Accept connections; after each one, drain the backlog without waiting (up to ``ACCEPT_BATCH``).

        An event loop under load runs a waiting ``accept`` once per iteration, so a flood arriving faster
        than that would queue ahead of honest new connections; draining the backlog and refusing over-cap
        connections before any await keeps the cost of a refused connection to one ``accept`` and ``close``.
        """
        assert self._tg is not None
        raw = listener.extra(SocketAttribute.raw_socket)
        batch = 0 if raw.getblocking() else ACCEPT_BATCH  # never block the event loop in accept()
        while True:
            try:
                stream = await listener.accept()
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return
            except OSError as exc:  # EMFILE, ENOBUFS, ECONNABORTED...: keep serving the connections we have
                self._limits.warning(
                    "accept", "accept() failed: %s; retrying in %s s", describe_network_error(exc), ACCEPT_BACKOFF
                )
                await anyio.sleep(ACCEPT_BACKOFF)
                continue
            if self._admit(stream):
                self._tg.start_soon(self._serve_inbound, stream, dispatch)
            else:
                with anyio.CancelScope(shield=True):
                    await anyio.aclose_forcefully(stream)
            for _ in range(batch):
                try:
                    sock, remote = raw.accept()
                except OSError:  # BlockingIOError: the backlog is empty (or a transient accept error)
                    break
                ip = str(remote[0]) if isinstance(remote, tuple) else "?"
                if self._admit_ip(ip):
                    self._tg.start_soon(self._serve_accepted_socket, sock, ip, dispatch)
                else:
                    sock.close()

    def _admit(self, stream: ByteStream) -> bool:
        """Apply the caps on incoming connections to a connected ``stream``. Admitted: it is counted in
        (:meth:`_serve_inbound` counts it out) and ``True`` is returned. Refused: counted, logged
        (rate-limited), ``False``; the caller closes the stream."""
        remote = _remote(stream)
        return self._admit_ip(remote[0] if remote is not None else "?")

    def _admit_ip(self, ip: str) -> bool:
        if self._open >= self.max_connections:
            self.stats.connections_refused += 1
            kind, count = "max_connections", self._open
        elif self._inbound_open >= self.max_inbound:
            self.stats.connections_refused_inbound += 1
            kind, count = "max_inbound", self._inbound_open
        elif self._per_ip.get(ip, 0) >= self.max_inbound_per_ip:
            self.stats.connections_refused_per_ip += 1
            kind, count = "max_inbound_per_ip", self._per_ip[ip]
        else:
            self._open += 1
            self._inbound_open += 1
            self._per_ip[ip] += 1
            self.stats.connections_accepted += 1
            return True
        self._limits.warning(kind, "refused a connection from %s: %d already open (%s)", ip, count, kind)
        return False

    def _count_out(self, ip: str) -> None:
        self._open -= 1
        self._inbound_open -= 1
        self._per_ip[ip] -= 1
        if self._per_ip[ip] <= 0:
            del self._per_ip[ip]

    async def _serve_accepted_socket(self, sock: socket.socket, ip: str, dispatch: Dispatcher) -> None:
        """:meth:`_serve_inbound` for a socket taken from the backlog directly (admitted by ``_admit_ip``)."""
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            stream = await SocketStream.from_socket(sock)
        except (OSError, ValueError) as exc:  # the peer already left
            sock.close()
            self._count_out(ip)
            log.debug("dropped an accepted connection from %s: %s", ip, exc)
            return
        except BaseException:
            sock.close()
            self._count_out(ip)
            raise
        await self._serve_inbound(stream, dispatch, ip=ip)

    async def _serve_inbound(self, stream: ByteStream, dispatch: Dispatcher, *, ip: str | None = None) -> None:
        """Secure (unless plaintext) and serve one incoming connection that :meth:`_admit` let in, until it
        ends; then count it out (under ``ip``, default the stream's remote address, as ``_admit`` counted
        it). Never raises an ``Exception``."""
        remote = _remote(stream)
        remote_address = PeerAddress(*remote) if remote is not None else None
        peer = str(remote_address) if remote_address is not None else "?"
        if ip is None:
            ip = remote[0] if remote is not None else "?"
        connection: InboundConnection | None = None
        try:
            node_id: str | None = None
            if self.channel is not None:
                try:
                    with anyio.fail_after(self.handshake_timeout):
                        stream, node_id = await self.channel.secure_server(stream)
                except (TimeoutError, PeerUnreachable) as exc:
                    self.stats.handshakes_failed += 1
                    why = f"no handshake within {self.handshake_timeout} s" if isinstance(exc, TimeoutError) else exc
                    self._limits.warning("handshake", "secure handshake with %s failed: %s", peer, why)
                    with anyio.CancelScope(shield=True):
                        await anyio.aclose_forcefully(stream)
                    return
            connection = InboundConnection(
                stream,
                peer=peer,
                max_frame=self.max_frame,
                read_chunk=self.read_chunk,
                stats=self.stats,
                dispatch=dispatch,
                max_concurrent=self.max_concurrent_requests,
                frame_timeout=self.frame_timeout,
                on_slow=self._on_slow,
                node_id=node_id,
                remote=remote_address,
            )
            self._inbound.add(connection)
            await connection.run()
        finally:
            if connection is not None:
                self._inbound.discard(connection)
            self._count_out(ip)

    def _on_slow(self, connection: InboundConnection) -> None:
        self.stats.connections_slow_closed += 1
        self._limits.warning(
            "frame_timeout", "cut off %s: a frame took longer than %s s to arrive (frame_timeout)",
            connection.peer, self.frame_timeout,
        )

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
          reset or closed before the reply (at once, not after the timeout), or the secure handshake failed.
        * :class:`~butter.errors.PeerIdentityMismatch` (a ``PeerUnreachable``): the peer authenticated as
          another node than the one expected at ``address``; the connection was refused.
        * :class:`~butter.errors.TransportBusy`: ``max_connections`` is reached with every outgoing
          connection busy (a local limit; nothing was sent).
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
            raise copy.copy(error)  # a fresh exception per waiter (attributes such as ``expected`` kept)
        return dial.connection

    async def _dial_and_read(self, address: PeerAddress, dial: _Dial) -> None:
        """Connect to ``address`` for every waiter of ``dial``, then be the connection's reader task."""
        try:
            connection = await self._open_outgoing(address)
            dial.connection = connection
        except TransportError as exc:
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
            try:
                with anyio.fail_after(self.connect_timeout):
                    stream = await anyio.connect_tcp(address.host, address.port)
            except TimeoutError:
                raise RequestTimeout(f"connecting to {address} timed out after {self.connect_timeout} s") from None
            except CONNECT_ERRORS as exc:
                raise PeerUnreachable(f"cannot connect to {address}: {describe_network_error(exc)}") from None
            secured, node_id = await self._secure_outgoing(stream, address)
        except BaseException:
            self._open -= 1
            raise
        return self._register_outgoing(address, secured, node_id)

    async def _secure_outgoing(self, stream: ByteStream, address: PeerAddress) -> tuple[ByteStream, str | None]:
        """Secure a connected ``stream`` to the peer at ``address`` as the client: the TLS stream and the
        peer's authenticated node id (``stream`` and ``None`` in plaintext). The id must be the one expected
        at ``address`` (:meth:`expected_node_id`); the first one seen there is pinned when ``pin_identities`` is set.

        Raises :class:`~butter.errors.PeerIdentityMismatch` or :class:`~butter.errors.PeerUnreachable`
        (handshake failed or took longer than ``handshake_timeout``); ``stream`` is closed then.
        """
        if self.channel is None:
            return stream, None
        expected = self._identities.get(address)
        try:
            with anyio.fail_after(self.handshake_timeout):
                secured, node_id = await self.channel.secure_client(stream, expected)
        except TimeoutError:
            self.stats.handshakes_failed += 1
            with anyio.CancelScope(shield=True):
                await anyio.aclose_forcefully(stream)
            raise PeerUnreachable(f"no secure handshake with {address} within {self.handshake_timeout} s") from None
        except PeerIdentityMismatch as exc:
            self.stats.identity_mismatches += 1
            self._limits.warning(
                "identity", "refused %s: it authenticated as node %s, but %s is expected there", address,
                exc.actual, exc.expected,
            )
            raise PeerIdentityMismatch(
                f"refused {address}: it is node {exc.actual}, not the expected {exc.expected}",
                expected=exc.expected, actual=exc.actual,
            ) from None
        except PeerUnreachable as exc:
            self.stats.handshakes_failed += 1
            raise PeerUnreachable(f"cannot secure the connection to {address}: {exc}") from None
        if self.pin_identities and expected is None:
            self._remember(address, node_id)
        return secured, node_id

    def _register_outgoing(self, address: PeerAddress, stream: ByteStream, node_id: str | None) -> OutgoingConnection:
        """Pool a secured ``stream`` as the outgoing connection to ``address`` (replacing any other one). The
        caller counted it toward ``max_connections`` (``_make_room``, then ``_open += 1``) and must run the
        returned connection's reader (``await connection.run()``) in the transport's task group."""
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
            node_id=node_id,
        )
        stale = self._outgoing.pop(address, None)
        self._outgoing[address] = connection
        if stale is not None:
            if stale.pending and not stale.closed and self._tg is not None:
                self._tg.start_soon(self._retire, address, stale)
            else:
                self._discard(address, stale, "replaced")
        return connection

    async def _retire(self, address: PeerAddress, stale: OutgoingConnection) -> None:
        """Close a replaced connection (a hole punch replacing a relayed one) once the requests in flight on it
        are answered, at most ``RETIRE_TIMEOUT`` seconds later: failing them would make callers report a live
        peer dead."""
        with anyio.move_on_after(RETIRE_TIMEOUT):
            while stale.pending and not stale.closed:  # noqa: ASYNC110 (no event fires when the last reply lands)
                await anyio.sleep(0.05)
        self._discard(address, stale, "replaced")

    def _make_room(self, address: PeerAddress) -> None:
        """Evict the least recently used idle outgoing connection if the cap is reached.

        Raises :class:`~butter.errors.TransportBusy` when every connection is busy.
        """
        if self._open < self.max_connections:
            return
        for victim_address, victim in self._outgoing.items():
            if not victim.pending:
                self._discard(victim_address, victim, "evicted to stay under max_connections")
                self.stats.connections_evicted += 1
                return
        self.stats.requests_busy += 1
        self._limits.warning("busy", "cannot open a connection: %d open (max_connections), none idle", self._open)
        raise TransportBusy(
            f"cannot connect to {address}: {self.max_connections} connections open (max_connections) "
            "and none is idle"
        )

    async def adopt_outgoing(self, address: PeerAddress, stream: ByteStream) -> None:
        """Use ``stream``, connected elsewhere (a TCP hole punch: butter-wider-ambassador), as the outgoing
        connection to ``address``. It is secured as the client exactly like a dialled connection (the identity
        expected at ``address`` is checked) and replaces any other connection to ``address``.

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
        self._open += 1
        try:
            secured, node_id = await self._secure_outgoing(stream, address)
        except BaseException:
            self._open -= 1
            raise
        self._tg.start_soon(self._register_outgoing(address, secured, node_id).run)
