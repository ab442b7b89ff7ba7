""":class:`TcpTransport`: Butter's wire (:mod:`butter.wire`) over TCP, with a pooled, multiplexed client.

Model:

* ``serve`` binds a listener, then owns one task group holding every task of the transport: the accept
  loops, per incoming connection a reader, a writer and the tasks answering its requests, per outgoing
  connection a reader and a writer, and a sweeper that closes idle connections. Cancelling ``serve``
  closes every socket.
* The transport is a facade over four parts: the connections themselves (:mod:`._connection`, each driving a
  sans-IO :mod:`butter.channel` channel), the pool of outgoing connections (:mod:`._pool`), the admission of
  incoming ones (:mod:`._admission`: caps, accept loop, handshake) and the expected identities
  (:mod:`._identities`).
* Every connection, in either role, is secured by one step (:class:`~butter_transport_tcp.SecureChannel`:
  TLS 1.3, mutual Ed25519 authentication) before any frame moves, unless ``secure`` is off; a stream obtained
  another way (a TCP hole punch, :meth:`TcpTransport.adopt_outgoing`) is secured and served exactly like a
  dialled one.
* Each incoming request reaches the dispatcher with a :class:`~butter.wire.Caller`: the node id its
  connection authenticated (``None`` in plaintext) and the connection's remote address.
* Hitting a limit is counted in :attr:`TcpTransport.stats` and logged (rate-limited), never fatal.
"""

from __future__ import annotations

import logging
from dataclasses import asdict

import anyio
from anyio.abc import ByteStream, SocketAttribute, SocketListener, TaskStatus

from butter import Identity
from butter.errors import ButterConfigError, PeerUnreachable, RemoteError, RequestTimeout
from butter.peers import PeerAddress
from butter.settings import ButterSettings
from butter.slots import Dispatcher
from butter.wire import Caller, Request, encode

from ._address import WILDCARD_HOSTS, advertised_address
from ._admission import Admission, Slot
from ._connection import InboundConnection
from ._identities import Identities
from ._limits import ConnectionCount, RateLimitedLog
from ._network import Network
from ._options import TcpOptions
from ._pool import OutgoingPool
from ._secure import SecureChannel
from ._stats import TcpStats

__all__ = ["TcpTransport"]

log = logging.getLogger("butter.transport.tcp")

ENVELOPE_ROOM = 64  # bytes: more than a request envelope adds to its body and route (UTF-8: at most 4 per character)


class TcpTransport:
    """A :class:`~butter.slots.Transport` speaking length-prefixed msgpack frames over TCP.

    * ``settings``: the node's settings, of which the transport reads ``host`` and ``port`` (where to
      listen; ``port=0`` lets the OS pick, ``0.0.0.0`` or ``::`` listens on every interface),
      ``advertise_host`` (the host peers should dial when it differs from ``host``; empty: the bound host,
      or for a wildcard bind this machine's outbound IPv4 address), ``max_frame`` (bytes, the largest frame
      sent or accepted) and ``connect_timeout`` (seconds to establish an outgoing TCP connection).
    * ``options``: the driver's own :class:`~butter_transport_tcp.TcpOptions` (default: every default):
      the secure channel, connection caps, timeouts, read size, concurrency per connection, pinning.
    * ``identity``: this node's :class:`~butter.Identity` (Ed25519), presented to every peer;
      default a fresh one.

    Memory per connection is about ``max_frame + read_chunk`` in, twice (1 MiB + ``max_frame``) out, plus
    the requests being handled. ``options.secure = False`` speaks plaintext, for debugging only: nothing is
    encrypted or authenticated, peers must be plaintext too, and ``serve`` logs a warning saying so.
    :attr:`stats` counts connections, requests and limits hit (:class:`~butter_transport_tcp.TcpStats`).
    """

    def __init__(
        self, settings: ButterSettings, options: TcpOptions | None = None, identity: Identity | None = None
    ) -> None:
        self.options = options if options is not None else TcpOptions()
        self.host = settings.host
        self.port = settings.port
        self.advertise_host = settings.advertise_host
        self.max_frame = int(settings.max_frame)
        self.identity = identity if identity is not None else Identity.generate()
        self.channel: SecureChannel | None = SecureChannel(self.identity) if self.options.secure else None
        self.stats = TcpStats()
        self.address: PeerAddress | None = None  # set while serving: what serve() reported
        self._limits = RateLimitedLog(log)
        count = ConnectionCount(self.options.max_connections)
        self.network = Network(settings.network_id, settings.network_key.get_secret_value().encode())
        self._identities = Identities(
            self.channel, self.network, pin=self.options.pin_identities,
            handshake_timeout=self.options.handshake_timeout, stats=self.stats, limits=self._limits,
        )
        self._pool = OutgoingPool(
            self.options, count, self._identities, max_frame=self.max_frame,
            connect_timeout=settings.connect_timeout, stats=self.stats, limits=self._limits,
        )
        self._admission = Admission(
            self.options, count, self.channel, self.network, known=self._identities.knows_host, stats=self.stats,
            limits=self._limits,
        )
        self._count = count
        self._inbound: set[InboundConnection] = set()
        self._dispatch: Dispatcher | None = None  # set while serving

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
        """Connections open now: those counted toward ``max_connections`` (working incoming, outgoing and
        connecting) plus incoming ones still in their handshake (``max_handshakes``)."""
        return self._count.open + self._admission.handshakes_open

    def counters(self) -> dict[str, int]:
        """The :class:`~butter.capabilities.Counters` capability: every :class:`TcpStats` field (counts since
        creation), plus ``connections_open``, which is :attr:`open_connections` now (a level that goes up and
        down, not a count: butter-observe exports it as a gauge)."""
        return {**asdict(self.stats), "connections_open": self.open_connections}

    # -- identities ---------------------------------------------------------------------------------------

    def expected_node_id(self, address: PeerAddress) -> str | None:
        """The node id expected at ``address``: the one first authenticated there (pinned) or the one the node
        said to expect; ``None`` when nothing is known, or in plaintext."""
        return self._identities.expected(address)

    def expect_identity(self, address: PeerAddress, node_id: str) -> None:
        """From now on, refuse any peer at ``address`` that is not node ``node_id`` (hex).

        The ``tcp`` plugin calls this for each host entering the node's known hosts. An open outgoing
        connection to ``address`` authenticated as another node is closed at once (counted in
        ``stats.identity_mismatches``); its requests fail with ``PeerUnreachable``.
        """
        if not self._identities.expect(address, node_id):
            return
        connection = self._pool.connections.get(address)
        if connection is not None and connection.node_id is not None and connection.node_id != node_id:
            self.stats.identity_mismatches += 1
            self._limits.warning(
                "identity", "closing the connection to %s: it authenticated as node %s, but %s is expected there",
                address, connection.node_id, node_id,
            )
            self._pool.discard(address, connection, "the peer is not the node expected at this address")

    def forget(self, address: PeerAddress) -> None:
        """Expect no particular node at ``address`` any more (it left; another node may take the address)."""
        self._identities.forget(address)

    # -- serving ------------------------------------------------------------------------------------------

    async def serve(self, dispatch: Dispatcher, *, task_status: TaskStatus[PeerAddress]) -> None:
        """Listen, report the address peers should dial via ``task_status.started``, then serve until cancelled.

        Raises :class:`~butter.errors.ButterConfigError` naming ``host:port`` when the listener cannot be
        bound (port in use, address not on this machine), before ``task_status.started``, so it reaches
        whoever awaited ``task_group.start(transport.serve, ...)``.
        """
        if self._dispatch is not None:
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
                self._dispatch = dispatch
                self._pool.start(tg)
                for listener in listeners:
                    tg.start_soon(self._admission.accept_loop, listener, tg, self._serve_inbound)
                tg.start_soon(self._sweep)
                self.address = address
                log.info(
                    "tcp transport listening on %s:%s, advertised as %s; node %s, %s", self.host, bound_port,
                    address, self.node_id[:8], "TLS 1.3 with Ed25519 identities" if self.channel else "PLAINTEXT",
                )
                task_status.started(address)
        finally:
            self._dispatch = None
            self.address = None
            self._pool.stop()
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

    async def _serve_inbound(
        self, stream: ByteStream, node_id: str | None, remote: PeerAddress | None, slot: Slot
    ) -> None:
        """Serve one admitted, secured incoming connection until it ends (or admission evicts it)."""
        assert self._dispatch is not None
        connection = InboundConnection(
            stream,
            peer=str(remote) if remote is not None else "?",
            max_frame=self.max_frame,
            read_chunk=self.options.read_chunk,
            stats=self.stats,
            dispatch=self._dispatch,
            max_concurrent=self.options.max_concurrent_requests,
            frame_timeout=self.options.frame_timeout,
            on_slow=self._on_slow,
            caller=Caller(node_id, remote),
        )
        self._inbound.add(connection)
        slot.connection = connection
        try:
            await connection.run()
        finally:
            self._inbound.discard(connection)

    def _on_slow(self, connection: InboundConnection) -> None:
        self.stats.connections_slow_closed += 1
        self._limits.warning(
            "frame_timeout", "cut off %s: a frame took longer than %s s to arrive (frame_timeout)",
            connection.peer, self.options.frame_timeout,
        )

    async def _sweep(self) -> None:
        """Close connections idle longer than ``idle_timeout`` (outgoing) or twice that (incoming)."""
        idle_timeout = self.options.idle_timeout
        interval = min(max(idle_timeout / 4, 0.01), 5.0)
        while True:
            await anyio.sleep(interval)
            now = anyio.current_time()
            self._pool.sweep(now)
            for inbound in list(self._inbound):
                if not inbound.channel.active and now - inbound.last_active >= 2 * idle_timeout:
                    inbound.close("idle")
                    self.stats.connections_idle_closed += 1

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
        if self._dispatch is None:
            raise PeerUnreachable("the tcp transport is not serving (the node is not started or has stopped)")
        if len(body) + 4 * len(route) + ENVELOPE_ROOM > self.max_frame:  # near the limit: refuse before connecting
            encode(Request(1, route, body), self.max_frame)  # raises FrameTooLarge (the channel checks exactly)
        try:
            connection = self._pool.ready(address)
            if connection is not None and connection.timed:  # a timer (asyncio's, or the connection's on trio)
                reply = await connection.call(route, body, timeout)
            else:
                with anyio.fail_after(timeout):
                    connection = connection or await self._pool.get(address)
                    reply = await connection.call(route, body)
        except TimeoutError:
            raise RequestTimeout(f"no reply from {address} to {route!r} within {timeout} s") from None
        if reply.error is not None:
            raise RemoteError(reply.error.code, reply.error.message)
        return reply.body

    async def adopt_outgoing(self, address: PeerAddress, stream: ByteStream) -> None:
        """Use ``stream``, connected elsewhere (a TCP hole punch: butter-wider-ambassador), as the outgoing
        connection to ``address``. It is secured as the client exactly like a dialled connection (the identity
        expected at ``address`` is checked) and replaces any other connection to ``address``; a replaced
        connection still answering requests is closed once they are answered.

        Raises :class:`~butter.errors.PeerUnreachable` (not serving, handshake failed),
        :class:`~butter.errors.PeerIdentityMismatch` or :class:`~butter.errors.TransportBusy` (no room);
        ``stream`` is closed then.
        """
        await self._pool.adopt(address, stream)
