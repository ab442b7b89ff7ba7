"""Admission of incoming connections: the caps, the accept loop and the inbound handshake.

* Incoming connections are capped before any work is done for them: in total with outgoing ones
  (``max_connections``), on their own (``max_inbound``) and per IP address (``max_inbound_per_ip``). A
  connection over a cap is closed at once, counted in :class:`~butter_transport_tcp.TcpStats` and logged
  (rate-limited).
* The accept loop drains the listen backlog without waiting (up to ``ACCEPT_BATCH`` per wake-up): an event
  loop under load runs a waiting ``accept`` once per iteration, so a flood would otherwise queue ahead of
  honest new connections, and a refused connection costs one ``accept`` and one ``close``.
* The secure-channel handshake of an admitted connection must end within ``handshake_timeout`` seconds.
"""

from __future__ import annotations

import logging
import socket
from collections import defaultdict
from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import ByteStream, SocketAttribute, SocketListener, SocketStream, TaskGroup

from butter.errors import PeerUnreachable, describe_network_error
from butter.peers import PeerAddress

from ._limits import ConnectionCount, RateLimitedLog
from ._options import TcpOptions
from ._secure import SecureChannel
from ._stats import TcpStats

__all__ = ["Admission", "Serve"]

log = logging.getLogger("butter.transport.tcp")

ACCEPT_BACKOFF = 0.1  # seconds to wait after accept() fails (e.g. out of file descriptors)
ACCEPT_BATCH = 64  # connections taken from the backlog per wake-up of the accept loop

Serve = Callable[[ByteStream, str | None, PeerAddress | None], Awaitable[None]]
"""Serves one admitted, secured stream until it ends: ``serve(stream, node_id, remote)``, where ``node_id``
is the authenticated peer (``None`` in plaintext) and ``remote`` the socket's remote address."""


def remote_of(stream: ByteStream) -> PeerAddress | None:
    """The remote address of a socket stream, or ``None`` when it has none (or it already left)."""
    try:
        remote = stream.extra(SocketAttribute.remote_address)
    except (OSError, anyio.TypedAttributeLookupError):
        return None
    if not isinstance(remote, tuple) or not remote[0]:
        return None
    return PeerAddress(str(remote[0]), int(remote[1]))


class Admission:
    """The caps on incoming connections (``options``), the accept loop and the inbound handshake.

    ``count`` is shared with the outgoing pool (``max_connections``); ``channel`` is the transport's secure
    channel (``None``: plaintext, no handshake).
    """

    def __init__(
        self,
        options: TcpOptions,
        count: ConnectionCount,
        channel: SecureChannel | None,
        *,
        stats: TcpStats,
        limits: RateLimitedLog,
    ) -> None:
        self.options = options
        self.count = count
        self.channel = channel
        self.stats = stats
        self.limits = limits
        self.inbound_open = 0  # incoming connections, handshakes included (max_inbound)
        self._per_ip: defaultdict[str, int] = defaultdict(int)  # incoming connections per IP address

    async def accept_loop(self, listener: SocketListener, tg: TaskGroup, serve: Serve) -> None:
        """Accept connections on ``listener`` until it closes; after each one, drain the backlog without
        waiting. Each admitted connection is secured and served by ``serve`` in a task of ``tg``."""
        raw = listener.extra(SocketAttribute.raw_socket)
        batch = 0 if raw.getblocking() else ACCEPT_BATCH  # never block the event loop in accept()
        while True:
            try:
                stream = await listener.accept()
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return
            except OSError as exc:  # EMFILE, ENOBUFS, ECONNABORTED...: keep serving the connections we have
                self.limits.warning(
                    "accept", "accept() failed: %s; retrying in %s s", describe_network_error(exc), ACCEPT_BACKOFF
                )
                await anyio.sleep(ACCEPT_BACKOFF)
                continue
            remote = remote_of(stream)
            ip = remote.host if remote is not None else "?"
            if self.admit(ip):
                tg.start_soon(self._secure_and_serve, stream, ip, serve)
            else:
                with anyio.CancelScope(shield=True):
                    await anyio.aclose_forcefully(stream)
            for _ in range(batch):
                try:
                    sock, address = raw.accept()
                except OSError:  # BlockingIOError: the backlog is empty (or a transient accept error)
                    break
                ip = str(address[0]) if isinstance(address, tuple) else "?"
                if self.admit(ip):
                    tg.start_soon(self._serve_socket, sock, ip, serve)
                else:
                    sock.close()

    def admit(self, ip: str) -> bool:
        """Apply the caps to a new connection from ``ip``. Admitted: it is counted in (:meth:`release`
        counts it out) and ``True`` is returned. Refused: counted, logged (rate-limited), ``False``; the
        caller closes the connection."""
        if self.count.full:
            self.stats.connections_refused += 1
            kind, count = "max_connections", self.count.open
        elif self.inbound_open >= self.options.max_inbound:
            self.stats.connections_refused_inbound += 1
            kind, count = "max_inbound", self.inbound_open
        elif self._per_ip.get(ip, 0) >= self.options.max_inbound_per_ip:
            self.stats.connections_refused_per_ip += 1
            kind, count = "max_inbound_per_ip", self._per_ip[ip]
        else:
            self.count.open += 1
            self.inbound_open += 1
            self._per_ip[ip] += 1
            self.stats.connections_accepted += 1
            return True
        self.limits.warning(kind, "refused a connection from %s: %d already open (%s)", ip, count, kind)
        return False

    def release(self, ip: str) -> None:
        """Count out a connection :meth:`admit` let in from ``ip``."""
        self.count.open -= 1
        self.inbound_open -= 1
        self._per_ip[ip] -= 1
        if self._per_ip[ip] <= 0:
            del self._per_ip[ip]

    async def _serve_socket(self, sock: socket.socket, ip: str, serve: Serve) -> None:
        """:meth:`_secure_and_serve` for a socket taken from the backlog directly (admitted already)."""
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            stream = await SocketStream.from_socket(sock)
        except (OSError, ValueError) as exc:  # the peer already left
            sock.close()
            self.release(ip)
            log.debug("dropped an accepted connection from %s: %s", ip, exc)
            return
        except BaseException:
            sock.close()
            self.release(ip)
            raise
        await self._secure_and_serve(stream, ip, serve)

    async def _secure_and_serve(self, stream: ByteStream, ip: str, serve: Serve) -> None:
        """Secure an admitted connection (unless plaintext) within ``handshake_timeout``, serve it until it
        ends, then count it out. Never raises an ``Exception`` for a failed handshake."""
        remote = remote_of(stream)
        try:
            node_id: str | None = None
            if self.channel is not None:
                try:
                    with anyio.fail_after(self.options.handshake_timeout):
                        stream, node_id = await self.channel.secure_server(stream)
                except (TimeoutError, PeerUnreachable) as exc:
                    self.stats.handshakes_failed += 1
                    timeout = self.options.handshake_timeout
                    why = f"no handshake within {timeout} s" if isinstance(exc, TimeoutError) else exc
                    self.limits.warning("handshake", "secure handshake with %s failed: %s", remote or "?", why)
                    with anyio.CancelScope(shield=True):
                        await anyio.aclose_forcefully(stream)
                    return
            await serve(stream, node_id, remote)
        finally:
            self.release(ip)
