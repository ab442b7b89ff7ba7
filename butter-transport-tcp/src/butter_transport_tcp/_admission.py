"""Admission of incoming connections: the budgets, the accept loop, the inbound handshake and eviction.

Built so that nobody can lock new peers out by holding connections open:

* A connection is first **in its handshake** (TCP accepted, secure channel and network check not done: the
  peer is unauthenticated). Those have a budget of their own, ``max_handshakes`` in total and
  ``max_handshakes_per_subnet`` per netgroup (/24 for IPv4, /48 for IPv6), outside the working caps. When
  the total budget is full, a newcomer whose netgroup already holds the most handshakes (and that is not a
  known host) is refused: a flood spread over many netgroups then costs the node one ``accept`` and one
  ``close`` per re-dial rather than an eviction and a new handshake each. Any other newcomer is not
  refused: an older handshake (of the newcomer's own netgroup, when that one is full) is closed instead: a
  silent one (it never sent a byte, while an honest client speaks at once), else one that spoke but has had
  ``HANDSHAKE_GRACE`` seconds; among those not from a known host first, then of the netgroup holding the
  most handshakes, then the **oldest**. Only when every handshake is young and talking (a burst of honest
  ones) is the newcomer closed instead. An honest newcomer from a netgroup the flood does not crowd thus
  always gets in, and its handshake (a few milliseconds, talking from its first byte) completes long
  before its turn to be evicted comes.
* Every incoming connection, in its handshake or working, counts toward ``max_inbound_per_ip`` (per
  address) and ``max_inbound_per_subnet`` (per netgroup); over either it is closed at once.
* Once its handshake has passed, a connection becomes **working**: it counts toward ``max_inbound`` and,
  with outgoing ones, ``max_connections``. ``reserved_inbound`` of the ``max_inbound`` places are kept for
  known hosts (addresses the node expects an identity at: its known hosts, peers it dialled). When there is
  no room, a working connection is evicted by the rule of :mod:`._eviction` (diverse, fast, useful and
  long-lived peers are protected); only when all are protected is the newcomer closed.
* The accept loop drains the listen backlog without waiting (up to ``ACCEPT_BATCH`` per wake-up): an event
  loop under load runs a waiting ``accept`` once per iteration, so a flood would otherwise queue ahead of
  honest new connections, and a refused connection costs one ``accept`` and one ``close``.

Every refusal and eviction is counted in :class:`~butter_transport_tcp.TcpStats` and logged (rate-limited).
"""

from __future__ import annotations

import logging
import os
import socket
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio
from anyio.abc import ByteStream, SocketAttribute, SocketListener, TaskGroup

from butter.errors import PeerUnreachable, describe_network_error
from butter.peers import PeerAddress

from ._eviction import Candidate, choose_eviction, netgroup
from ._limits import ConnectionCount, RateLimitedLog
from ._native import open_stream
from ._network import Network, NetworkRefused
from ._options import TcpOptions
from ._secure import SecureChannel
from ._stats import TcpStats

if TYPE_CHECKING:
    from ._connection import InboundConnection

__all__ = ["Admission", "Serve", "Slot"]

log = logging.getLogger("butter.transport.tcp")

ACCEPT_BACKOFF = 0.1  # seconds to wait after accept() fails (e.g. out of file descriptors)
ACCEPT_BATCH = 64  # connections taken from the backlog per wake-up of the accept loop
HANDSHAKE_GRACE = 1.0  # seconds a handshake whose peer has spoken is safe from eviction


@dataclass(eq=False)
class Slot:
    """One admitted incoming connection: from ``ip`` (in ``netgroup``), a ``known`` host or not, accepted at
    ``started`` (event-loop clock); ``heard`` once the peer has sent a byte. ``latency`` (seconds) is its
    handshake's duration; ``connection`` is set by the server while it is working, so eviction can read its
    activity and close it."""

    ip: str
    netgroup: str
    known: bool
    started: float
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    working: bool = False
    released: bool = False
    heard: bool = False  # the peer has sent a byte
    sock: socket.socket | None = None  # the socket, to peek at (its fileno() is -1 once it was closed)
    latency: float = 0.0
    connection: InboundConnection | None = None

    def spoke(self) -> bool:
        """Whether the peer has sent a byte: read by the handshake already, or waiting in the socket."""
        fd = self.sock.fileno() if self.sock is not None and not self.heard else -1
        if fd >= 0:
            try:
                peek = socket.socket(fileno=fd)  # not ours: detached below, never closed here
            except OSError:
                return False
            try:
                self.heard = bool(peek.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
            except OSError:  # nothing yet (EAGAIN), or the socket is gone
                pass
            finally:
                peek.detach()
        return self.heard

    def candidate(self) -> Candidate:
        active = self.connection.last_served if self.connection is not None else 0.0
        return Candidate(self.netgroup, self.started, self.latency, self.known, active)

    def hear(self) -> None:
        """The peer has sent its first bytes."""
        self.heard = True

    def close(self, reason: str) -> None:
        if self.connection is not None:
            self.connection.close(reason)
        self.scope.cancel()


Serve = Callable[[ByteStream, str | None, PeerAddress | None, Slot], Awaitable[None]]
"""Serves one admitted, secured stream until it ends: ``serve(stream, node_id, remote, slot)``, where
``node_id`` is the authenticated peer (``None`` in plaintext), ``remote`` the socket's remote address and
``slot`` its admission record (the server sets ``slot.connection``)."""


class Admission:
    """The budgets of incoming connections (``options``), the accept loop, the inbound handshake and eviction.

    ``count`` is shared with the outgoing pool (``max_connections``); ``channel`` is the transport's secure
    channel (``None``: plaintext, no TLS); ``network`` checks each peer's network hello; ``known(ip)`` tells
    whether an address belongs to a host the node knows.
    """

    def __init__(
        self,
        options: TcpOptions,
        count: ConnectionCount,
        channel: SecureChannel | None,
        network: Network,
        *,
        known: Callable[[str], bool],
        stats: TcpStats,
        limits: RateLimitedLog,
    ) -> None:
        self.options = options
        self.count = count
        self.channel = channel
        self.network = network
        self.known = known
        self.stats = stats
        self.limits = limits
        self._handshakes: dict[Slot, None] = {}  # oldest first
        self._working: set[Slot] = set()
        self._per_ip: Counter[str] = Counter()  # handshakes and working
        self._per_group: Counter[str] = Counter()  # handshakes and working
        self._handshakes_per_group: Counter[str] = Counter()
        self._key = os.urandom(32)  # orders netgroups for the eviction rule; secret to this node

    @property
    def inbound_open(self) -> int:
        """Working incoming connections (``max_inbound``)."""
        return len(self._working)

    @property
    def handshakes_open(self) -> int:
        """Incoming connections still in their handshake (``max_handshakes``)."""
        return len(self._handshakes)

    async def accept_loop(self, listener: SocketListener, tg: TaskGroup, serve: Serve) -> None:
        """Accept connections on ``listener`` until it closes: wait until it is readable, then take up to
        ``ACCEPT_BATCH`` connections from the backlog without waiting (accepting without blocking has no
        race with a cancelled accept: no connection is lost when the node closes). Each admitted connection
        is secured and served by ``serve`` in a task of ``tg``."""
        raw: socket.socket = listener.extra(SocketAttribute.raw_socket)
        batch = 1 if raw.getblocking() else ACCEPT_BATCH  # never block the event loop in accept()
        while True:
            if raw.fileno() < 0:
                return
            try:
                await anyio.wait_readable(raw)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return
            for _ in range(batch):
                try:
                    sock, address = raw.accept()
                except BlockingIOError:  # the backlog is empty
                    break
                except OSError as exc:  # EMFILE, ENOBUFS, ECONNABORTED...: keep serving the connections we have
                    self.limits.warning(
                        "accept", "accept() failed: %s; retrying in %s s", describe_network_error(exc),
                        ACCEPT_BACKOFF,
                    )
                    await anyio.sleep(ACCEPT_BACKOFF)
                    break
                slot = self.admit(str(address[0]) if isinstance(address, tuple) else "?", sock)
                if slot is not None:
                    tg.start_soon(self._secure_and_serve, sock, slot, serve)
                else:
                    sock.close()

    def admit(self, ip: str, sock: socket.socket | None = None) -> Slot | None:
        """Take a new connection from ``ip`` (its socket ``sock``, if known) into its handshake: its
        :class:`Slot` (counted in until
        :meth:`release`), or ``None`` (refused: counted, logged, rate-limited; the caller closes it). A full
        handshake budget evicts an older handshake rather than refusing the newcomer."""
        group = netgroup(ip)
        if self._per_ip[ip] >= self.options.max_inbound_per_ip:
            self.stats.connections_refused_per_ip += 1
            self._refuse(ip, "max_inbound_per_ip", self._per_ip[ip])
            return None
        if self._per_group[group] >= self.options.max_inbound_per_subnet:
            self.stats.connections_refused_per_subnet += 1
            self._refuse(ip, "max_inbound_per_subnet", self._per_group[group])
            return None
        known = self.known(ip)
        if self._handshakes_per_group[group] >= self.options.max_handshakes_per_subnet:
            if not self._evict_handshake(group):
                self.stats.handshakes_refused += 1
                self._refuse(ip, "max_handshakes_per_subnet", self._handshakes_per_group[group])
                return None
        if len(self._handshakes) >= self.options.max_handshakes:
            if not known and self._busiest(group):  # a flood mostly refuses itself, at the cost of one close
                self.stats.handshakes_refused += 1
                self._refuse(ip, "max_handshakes", len(self._handshakes))
                return None
            if not self._evict_handshake(None):
                self.stats.handshakes_refused += 1
                self._refuse(ip, "max_handshakes", len(self._handshakes))
                return None
        slot = Slot(ip, group, known, anyio.current_time(), sock=sock)
        self._handshakes[slot] = None
        self._handshakes_per_group[group] += 1
        self._per_ip[ip] += 1
        self._per_group[group] += 1
        self.stats.connections_accepted += 1
        return slot

    def release(self, slot: Slot) -> None:
        """Count out a connection :meth:`admit` let in (once; later calls do nothing)."""
        if slot.released:
            return
        slot.released = True
        if slot.working:
            self._working.discard(slot)
            self.count.open -= 1
        else:
            del self._handshakes[slot]
            _decrement(self._handshakes_per_group, slot.netgroup)
        _decrement(self._per_ip, slot.ip)
        _decrement(self._per_group, slot.netgroup)

    def _busiest(self, group: str) -> bool:
        """Whether ``group`` holds as many handshakes as any other netgroup (and at least one)."""
        held = self._handshakes_per_group[group]
        return held > 0 and held >= max(self._handshakes_per_group.values())

    def _refuse(self, ip: str, kind: str, count: int) -> None:
        self.limits.warning(kind, "refused a connection from %s: %d already open (%s)", ip, count, kind)

    def _evict_handshake(self, group: str | None) -> bool:
        """Close one handshake of ``group`` (any group when ``None``) to make room: a silent one (it never
        sent a byte; an honest client speaks first, at once), else one that spoke but has had
        ``HANDSHAKE_GRACE`` seconds; among those, not a known host's before a known host's, one of the
        busiest netgroup first, then the oldest. ``False`` when there is none (a burst of honest
        handshakes, all young and talking: the newcomer is refused instead)."""
        scope = [slot for slot in self._handshakes if group is None or slot.netgroup == group]
        count = self._handshakes_per_group
        scope.sort(key=lambda slot: (slot.known, -count[slot.netgroup], slot.started))
        victim = next((slot for slot in scope if not slot.spoke()), None)  # usually the first is silent
        if victim is None:  # all spoke: only one that has had HANDSHAKE_GRACE seconds to finish
            grace = anyio.current_time() - HANDSHAKE_GRACE
            victim = next((slot for slot in scope if slot.started <= grace), None)
        if victim is None:
            return False
        self.release(victim)
        victim.close("evicted during its handshake")
        self.stats.handshakes_evicted += 1
        self.limits.warning(
            "handshake_evicted", "closed a connection from %s still in its handshake to make room "
            "(max_handshakes / max_handshakes_per_subnet)", victim.ip,
        )
        return True

    def _start_working(self, slot: Slot) -> bool:
        """Move ``slot`` from its handshake to the working connections, evicting one if there is no room;
        ``False`` (and counted out) when every working connection is protected."""
        reserve = min(self.options.reserved_inbound, self.options.max_inbound // 2)
        limit = self.options.max_inbound - (0 if slot.known else reserve)
        while len(self._working) >= limit or self.count.full:
            if not self._evict_working():
                self.release(slot)
                if self.count.full:
                    self.stats.connections_refused += 1
                    self._refuse(slot.ip, "max_connections", self.count.open)
                else:
                    self.stats.connections_refused_inbound += 1
                    self._refuse(slot.ip, "max_inbound", len(self._working))
                return False
        del self._handshakes[slot]
        _decrement(self._handshakes_per_group, slot.netgroup)
        slot.working = True
        slot.latency = anyio.current_time() - slot.started
        self._working.add(slot)
        self.count.open += 1
        return True

    def _evict_working(self) -> bool:
        by_candidate = {slot.candidate(): slot for slot in self._working}
        chosen = choose_eviction(list(by_candidate), self._key)
        if chosen is None:
            return False
        victim = by_candidate[chosen]
        self.release(victim)
        victim.close("evicted to make room for a new peer")
        self.stats.inbound_evicted += 1
        self.limits.warning("inbound_evicted", "closed the connection from %s to make room (max_inbound)", victim.ip)
        return True

    async def _secure_and_serve(self, sock: socket.socket, slot: Slot, serve: Serve) -> None:
        """Wait for an admitted connection's first bytes, secure it (unless plaintext) and check its network
        within ``handshake_timeout``, serve it until it ends, then count it out and close it (whatever ended
        it: a failed handshake, an eviction, the node closing mid-handshake). Never raises an ``Exception``
        for a failed handshake."""
        stream: ByteStream | None = None
        try:
            node_id: str | None = None
            with slot.scope:
                try:
                    with anyio.fail_after(self.options.handshake_timeout):
                        sock.setblocking(False)
                        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                        remote = _peer_name(sock)
                        await anyio.wait_readable(sock)  # an honest client speaks at once
                        slot.hear()
                        if self.channel is not None:
                            stream, node_id = await self.channel.secure_server(sock)
                        else:  # the event loop's cheaper stream (_native on asyncio, _trio on trio)
                            stream = await open_stream(sock, None, server_side=True)
                        await self.network.exchange(stream, server=True)
                except (TimeoutError, PeerUnreachable) as exc:
                    if isinstance(exc, NetworkRefused):
                        self.stats.networks_refused += 1
                        self.limits.warning("network", "refused peer %s: %s", remote or slot.ip, exc)
                    else:
                        self.stats.handshakes_failed += 1
                        timeout = self.options.handshake_timeout
                        why = f"no handshake within {timeout} s" if isinstance(exc, TimeoutError) else exc
                        self.limits.warning("handshake", "secure handshake with %s failed: %s", remote or "?", why)
                    return
                except (OSError, ValueError) as exc:  # the peer left before its handshake began
                    log.debug("dropped an accepted connection from %s: %s", slot.ip, exc)
                    return
                if not self._start_working(slot):
                    return
                await serve(stream, node_id, remote, slot)
        finally:
            self.release(slot)
            if stream is not None:
                await _close(stream)
            else:
                sock.close()  # never wrapped, or secure_server closed it already (closing twice is harmless)


def _peer_name(sock: socket.socket) -> PeerAddress | None:
    """The remote address of a connected socket, or ``None`` when it has none (or it already left)."""
    try:
        remote = sock.getpeername()
    except OSError:
        return None
    if not isinstance(remote, tuple) or not remote[0]:
        return None
    return PeerAddress(str(remote[0]), int(remote[1]))


def _decrement(counter: Counter[str], key: str) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]


async def _close(stream: ByteStream) -> None:
    with anyio.CancelScope(shield=True):
        await anyio.aclose_forcefully(stream)
