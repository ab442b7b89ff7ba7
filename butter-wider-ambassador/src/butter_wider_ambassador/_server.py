"""The ambassador role: a publicly reachable node that introduces peers across subnetworks, tells nodes how
they look from outside, relays for the unreachable ones and coordinates hole punches (the original's design, redone).

It sets the ``ambassador`` flag of the node's host-quality record, registers route ``ambassador`` (reply
``{"service": port}``: where its service port is) and serves the :mod:`._messages` protocol there:

* ``hello``: the connection's remote address is the node's **observed address** (libp2p identify); it is
  sent back at once with up to k peers of other subnetworks (``welcome``). The ambassador then **dials
  back** the node's public address (observed host, the port the node says is open) on the ordinary
  transport and asks for its host-quality record; only an answer carrying the same node id counts
  (AutoNAT, with the identity check that keeps a node behind the same NAT from passing for another). A
  reachable node enters the :class:`~._index.PeerIndex` under its subnetwork key and is offered to the
  ambassador's own host management; the result is sent as ``dialed``.
* ``reserve``: a relay reservation (limits in :class:`~._limits.RelayLimits`). The ambassador listens on a
  relay port for the node and files ``public_host:relay_port`` in the index as the node's relayed address.
  A peer that dials it is held while the ambassador sends ``open`` on the control connection; the node
  answers with a new connection starting with ``accept``, and the two are spliced, byte for byte, so the
  end-to-end transport (and any security it has) is untouched. The circuit is closed the moment it exceeds
  its duration or byte budget (logged and counted). The reservation ends with its control connection, or
  when no keepalive arrives for three keepalive periods.
* ``punch``: the initiator's observed address comes from this connection; the target is asked (``punch-call``)
  to open a connection of its own, whose observed address is sent to the initiator and vice versa
  (``punch-go``); both then connect to each other from those ports at once (DCUtR's role, over TCP).
"""

from __future__ import annotations

import itertools
import logging
import random
import secrets
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import ByteStream, Listener, SocketListener, SocketStream, TaskGroup, TaskStatus
from anyio.streams.stapled import MultiListener

from butter.errors import NETWORK_ERRORS, ButterConfigError, ButterError, map_exceptions
from butter.net import accept
from butter.peers import PeerAddress, PeerInfo
from butter.wire import decode_payload

from ._index import PeerIndex, subnet_key
from ._io import WILDCARD, Channel, remote_address, splice
from ._limits import CircuitBudget, Refusal, RelayLedger, RelayLimits
from ._messages import (
    Accept,
    Dialed,
    Hello,
    Open,
    Ping,
    Punch,
    PunchCall,
    PunchGo,
    PunchReady,
    Refused,
    Reserve,
    Reserved,
    ServiceInfo,
    Welcome,
)

if TYPE_CHECKING:
    from butter import RouteRequest
    from butter.slots import NodeServices

    from ._plugin import AmbassadorOptions

__all__ = ["AmbassadorService", "parse_port_range"]

log = logging.getLogger("butter.discovery.ambassador")

MAX_SERVICE_CONNECTIONS = 1024  # service connections handled at once; more are closed at once (and counted)
SERVICE_ERRORS: tuple[type[Exception], ...] = (ButterError, *NETWORK_ERRORS)


def parse_port_range(text: str) -> list[int]:
    """``"7100-7163"`` → those ports; ``""`` → ``[0]`` (let the OS pick). Raises ``ValueError``."""
    if not text:
        return [0]
    low, _, high = text.partition("-")
    first, last = int(low), int(high or low)
    if not 1 <= first <= last <= 65535:
        raise ValueError(f"relay_ports must look like 7100-7163, got {text!r}")
    return list(range(first, last + 1))


@dataclass(eq=False)
class _Circuit:
    """A peer's connection to a relay port, waiting for the reservation holder's data connection."""

    id: int
    peer: ByteStream
    peer_name: str
    claimed: anyio.Event = field(default_factory=anyio.Event)
    done: anyio.Event = field(default_factory=anyio.Event)


@dataclass(eq=False)
class _Reservation:
    node_id: str
    channel: Channel
    token: bytes
    relayed: PeerAddress
    listener: SocketListener
    subnet: str
    last_heard: float
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    circuits: dict[int, _Circuit] = field(default_factory=dict)


@dataclass(eq=False)
class _PunchSlot:
    target: _Reservation
    ready: anyio.Event = field(default_factory=anyio.Event)
    sent: anyio.Event = field(default_factory=anyio.Event)
    target_observed: PeerAddress | None = None
    target_channel: Channel | None = None


class AmbassadorService:
    """The ambassador side for ``node`` (see the module docstring). ``stats`` and ``index`` are public for
    tests and benchmarks; ``service`` is the service port's address once running."""

    def __init__(self, node: NodeServices, options: AmbassadorOptions) -> None:
        self.node = node
        self.options = options
        self.limits = RelayLimits(
            max_reservations=options.max_reservations,
            max_reservations_per_ip=options.max_reservations_per_ip,
            max_circuits=options.max_circuits,
            max_circuits_per_reservation=options.max_circuits_per_reservation,
            circuit_expiry=options.circuit_expiry,
            circuit_bytes=options.circuit_bytes,
        )
        self.ledger = RelayLedger(self.limits)
        self.stats = self.ledger.stats
        self.index = PeerIndex(options.index_capacity, options.index_per_subnet, options.index_expiry)
        self.service: PeerAddress | None = None
        self._relay_ports = parse_port_range(options.relay_ports)
        self._reservations: dict[str, _Reservation] = {}
        self._punches: dict[int, _PunchSlot] = {}
        self._ids = itertools.count(1)
        self._rng = random.Random()
        self._tg: TaskGroup | None = None
        self._handling = 0
        self.refused_connections = 0

    # -- lifecycle ----------------------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        host = self.options.service_host or self.node.settings.host
        listening = f"ambassador cannot listen on {host}:{self.options.service_port}"
        with map_exceptions({OSError: ButterConfigError}, listening):
            listener = await anyio.create_tcp_listener(
                local_host=None if host in WILDCARD else host, local_port=self.options.service_port, reuse_port=False
            )
        port = int(listener.extra(anyio.abc.SocketAttribute.local_port))
        self.service = PeerAddress(self.public_host, port)
        self.node.ambassador = True
        self.node.route("ambassador", self._serve_info)
        log.info(
            "ambassador serving on port %d (relayed addresses on %s, ports %s; circuits %.0f s / %d bytes)",
            port,
            self.public_host,
            self.options.relay_ports or "any",
            self.limits.circuit_expiry,
            self.limits.circuit_bytes,
        )
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(self._accept_loop, listener, self._handle, tg)
                task_status.started()
        finally:
            self._tg = None
            with anyio.CancelScope(shield=True):
                await listener.aclose()
                s = self.stats
                log.info(
                    "ambassador stopped: reservations=%d refused=%d circuits=%d refused=%d closed_bytes=%d "
                    "closed_duration=%d relayed_bytes=%d",
                    s.reservations, s.reservations_refused, s.circuits_opened, s.circuits_refused,
                    s.circuits_closed_bytes, s.circuits_closed_duration, s.bytes_relayed,
                )

    def counters(self) -> Mapping[str, int]:
        """A snapshot of :class:`RelayStats` plus ``refused_connections`` (service connections refused at the
        cap) (:class:`~butter.capabilities.Counters`)."""
        return {**asdict(self.stats), "refused_connections": self.refused_connections}

    @property
    def public_host(self) -> str:
        return self.options.public_host or self.node.address.host

    async def _serve_info(self, request: RouteRequest) -> bytes:
        """Route ``ambassador``: where this ambassador's service port is (``{"service": port}``)."""
        assert self.service is not None
        return ServiceInfo(self.service.port).encode()

    # -- one service connection ---------------------------------------------------------------------------

    async def _handle(self, stream: ByteStream) -> None:
        channel = Channel(stream)
        if self._handling >= MAX_SERVICE_CONNECTIONS:
            self.refused_connections += 1
            await channel.aclose()
            return
        self._handling += 1
        try:
            observed = remote_address(stream)
            message = await channel.receive(self.options.exchange_timeout)
            if isinstance(message, Hello):
                await self._hello(channel, observed, message)
            elif isinstance(message, Reserve):
                await self._reserve(channel, observed, message)
            elif isinstance(message, Accept):
                await self._accept(channel, message)
                return  # the splice closed the stream
            elif isinstance(message, Punch):
                await self._punch(channel, observed, message)
            elif isinstance(message, PunchReady):
                await self._punch_ready(channel, observed, message)
            else:
                await channel.send(Refused("unexpected", f"{message.KIND} cannot open a conversation"))
        except SERVICE_ERRORS as exc:
            log.debug("service connection ended: %s", exc)
        finally:
            self._handling -= 1
            await channel.aclose()

    async def _hello(self, channel: Channel, observed: PeerAddress, hello: Hello) -> None:
        subnet = subnet_key(observed.host, hello.local.host, self.options.public_prefix)
        now = anyio.current_time()
        peers = self.index.pick(hello.k, exclude_subnet=subnet, now=now, rng=self._rng, exclude_id=hello.node_id)
        await channel.send(Welcome(observed, subnet, tuple(e.introduction() for e in peers)))
        natted = observed.host != hello.local.host
        candidate = PeerAddress(observed.host, hello.port if natted else hello.local.port)
        reachable = candidate if await self._dial_back(candidate, hello.node_id) else None
        now = anyio.current_time()
        if reachable is not None:
            self.index.add(hello.node_id, reachable, subnet, relayed=False, now=now)
            self.node.introduce([reachable])
        else:
            reservation = self._reservations.get(hello.node_id)
            if reservation is not None:  # renew the relayed entry
                self.index.add(hello.node_id, reservation.relayed, subnet, relayed=True, now=now)
        log.info(
            "hello from %s: observed %s, %s, subnet %s; %d introductions",
            hello.node_id[:8], observed, f"reachable at {reachable}" if reachable else "not reachable", subnet,
            len(peers),
        )
        await channel.send(Dialed(reachable))

    async def _dial_back(self, address: PeerAddress, node_id: str) -> bool:
        """Whether ``address`` answers host-quality with ``node_id`` (AutoNAT-style dial-back)."""
        try:
            reply = await self.node.request(address, "host-quality", b"", timeout=self.options.exchange_timeout)
            return PeerInfo.from_wire(decode_payload(reply, self.node.settings.max_frame)).node_id == node_id
        except (ButterError, ValueError) as exc:
            log.debug("dial-back to %s failed: %s", address, exc)
            return False

    # -- relay --------------------------------------------------------------------------------------------

    async def _reserve(self, channel: Channel, observed: PeerAddress, reserve: Reserve) -> None:
        old = self._reservations.get(reserve.node_id)
        if old is not None:  # the node reconnected: its old control connection is stale
            old.scope.cancel()
            await self._end_reservation(old)
        try:
            self.ledger.reserve(reserve.node_id, observed.host)
        except Refusal as exc:
            log.warning("refused a reservation for %s from %s: %s", reserve.node_id[:8], observed, exc.message)
            await channel.send(Refused(exc.code, exc.message))
            return
        try:
            listener = await self._relay_listener()
        except Refusal as exc:
            self.ledger.release(reserve.node_id)
            await channel.send(Refused(exc.code, exc.message))
            return
        port = int(listener.extra(anyio.abc.SocketAttribute.local_port))
        subnet = subnet_key(observed.host, reserve.local.host, self.options.public_prefix)
        reservation = _Reservation(
            reserve.node_id, channel, secrets.token_bytes(16), PeerAddress(self.public_host, port), listener, subnet,
            anyio.current_time(),
        )
        self._reservations[reserve.node_id] = reservation
        self.index.add(reserve.node_id, reservation.relayed, subnet, relayed=True, now=anyio.current_time())
        log.info("relay reservation for %s (observed %s): relayed address %s", reserve.node_id[:8], observed,
                 reservation.relayed)
        try:
            await channel.send(Reserved(reservation.relayed, reservation.token, self.limits.circuit_expiry,
                                        self.limits.circuit_bytes))
            with reservation.scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._accept_loop, reservation.listener, partial(self._circuit, reservation), tg)
                    tg.start_soon(self._watchdog, reservation)
                    reason = await self._control_loop(reservation)
                    tg.cancel_scope.cancel()
            log.info("relay reservation for %s ended: %s", reserve.node_id[:8], reason)
        except SERVICE_ERRORS as exc:
            log.info("relay reservation for %s ended: %s", reserve.node_id[:8], exc)
        finally:
            with anyio.CancelScope(shield=True):
                await self._end_reservation(reservation)

    async def _control_loop(self, reservation: _Reservation) -> str:
        """Read keepalives from the reservation holder; returns why the control connection ended."""
        try:
            while True:
                message = await reservation.channel.receive()
                reservation.last_heard = anyio.current_time()
                if not isinstance(message, Ping):
                    return f"unexpected {message.KIND} on a control connection"
        except SERVICE_ERRORS as exc:
            return str(exc)

    async def _end_reservation(self, reservation: _Reservation) -> None:
        if self._reservations.get(reservation.node_id) is reservation:
            del self._reservations[reservation.node_id]
            self.ledger.release(reservation.node_id)
            self.index.remove(reservation.node_id, reservation.relayed)
        await anyio.aclose_forcefully(reservation.listener)
        for circuit in list(reservation.circuits.values()):
            await anyio.aclose_forcefully(circuit.peer)

    async def _relay_listener(self) -> SocketListener:
        host = self.options.service_host or self.node.settings.host
        ports = self._relay_ports[:]
        self._rng.shuffle(ports)
        for port in ports:
            try:
                multi = await anyio.create_tcp_listener(local_host=None if host in WILDCARD else host, local_port=port)
            except OSError:
                continue
            return multi.listeners[0]  # type: ignore[return-value]
        raise Refusal("no-relay-port", f"every relay port in {self.options.relay_ports or 'the OS range'} is taken")

    async def _watchdog(self, reservation: _Reservation) -> None:
        period = self.options.keepalive_interval
        while True:
            await anyio.sleep(period)
            if anyio.current_time() - reservation.last_heard > 3 * period:
                log.info("relay reservation for %s: no keepalive for %.0f s", reservation.node_id[:8], 3 * period)
                reservation.scope.cancel()
                return

    async def _accept_loop(
        self,
        listener: Listener[SocketStream],
        handle: Callable[[SocketStream], Coroutine[Any, Any, None]],
        tg: TaskGroup,
    ) -> None:
        """Hand each connection on ``listener`` to ``handle`` in a task of ``tg`` until the listener closes
        (:func:`butter.net.accept`: no connection is lost to a cancelled accept). A listener on every
        interface is several sockets (IPv4 and IPv6): each gets its own loop."""
        if isinstance(listener, MultiListener):
            for one in listener.listeners:
                tg.start_soon(self._accept_loop, one, handle, tg)
            return
        if not isinstance(listener, SocketListener):
            raise TypeError(f"not a socket listener: {listener!r}")
        while True:
            try:
                stream = await accept(listener)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return
            except OSError as exc:
                log.warning("accept failed: %s", exc)
                await anyio.sleep(0.1)
                continue
            tg.start_soon(handle, stream)

    async def _circuit(self, reservation: _Reservation, peer: ByteStream) -> None:
        """Hold a peer's connection to a relay port until the reservation holder claims it (or time out)."""
        try:
            peer_name = str(remote_address(peer))
        except NETWORK_ERRORS:
            peer_name = "?"
        try:
            self.ledger.open_circuit(reservation.node_id)
        except Refusal as exc:
            log.warning("relay: refused a circuit from %s to %s: %s", peer_name, reservation.node_id[:8], exc.message)
            await anyio.aclose_forcefully(peer)
            return
        circuit = _Circuit(next(self._ids), peer, peer_name)
        reservation.circuits[circuit.id] = circuit
        claimed = False
        try:
            await reservation.channel.send(Open(circuit.id))
            with anyio.move_on_after(self.options.exchange_timeout):
                await circuit.claimed.wait()
                claimed = True
            if claimed:
                await circuit.done.wait()
            else:
                log.info("relay: %s did not take circuit %d from %s", reservation.node_id[:8], circuit.id, peer_name)
        except ButterError as exc:
            log.info("relay: cannot open circuit %d to %s: %s", circuit.id, reservation.node_id[:8], exc)
        finally:
            reservation.circuits.pop(circuit.id, None)
            if not claimed:
                self.ledger.close_circuit(reservation.node_id, relayed=0, limit=None)
                with anyio.CancelScope(shield=True):
                    await anyio.aclose_forcefully(peer)

    async def _accept(self, channel: Channel, accept: Accept) -> None:
        """A reservation holder's data connection for circuit ``accept.circuit``: splice it to the peer."""
        found = next(
            (r for r in self._reservations.values() if accept.circuit in r.circuits and r.token == accept.token),
            None,
        )
        if found is None:
            await channel.send(Refused("no-circuit", f"no circuit {accept.circuit} waiting for this token"))
            return
        reservation = found
        circuit = reservation.circuits.pop(accept.circuit)
        circuit.claimed.set()
        budget = CircuitBudget.start(self.limits, anyio.current_time())
        try:
            moved, limit = await splice(circuit.peer, channel.stream, budget=budget, first_b=channel.decoder.rest())
        finally:
            circuit.done.set()
        self.ledger.close_circuit(reservation.node_id, relayed=moved, limit=limit)
        if limit is not None:
            log.warning(
                "relay circuit %d %s -> %s closed: %s limit exceeded (%d bytes relayed, limits %d bytes / %.0f s)",
                circuit.id, circuit.peer_name, reservation.node_id[:8], limit, moved, self.limits.circuit_bytes,
                self.limits.circuit_expiry,
            )
        else:
            log.info("relay circuit %d %s -> %s closed after %d bytes", circuit.id, circuit.peer_name,
                     reservation.node_id[:8], moved)

    # -- hole punching ------------------------------------------------------------------------------------

    async def _punch(self, channel: Channel, observed: PeerAddress, punch: Punch) -> None:
        target = next((r for r in self._reservations.values() if r.relayed == punch.target), None)
        if target is None:
            await channel.send(Refused("no-reservation", f"nobody holds a reservation at {punch.target}"))
            return
        slot = _PunchSlot(target)
        punch_id = next(self._ids)
        self._punches[punch_id] = slot
        try:
            await target.channel.send(PunchCall(punch_id))
            with anyio.move_on_after(self.options.exchange_timeout):
                await slot.ready.wait()
            if slot.target_observed is None or slot.target_channel is None:
                await channel.send(Refused("punch-timeout", "the target did not answer the punch call"))
                return
            log.info("hole punch %d: %s (%s) <-> %s (%s)", punch_id, punch.node_id[:8], observed,
                     target.node_id[:8], slot.target_observed)
            # both sides get their peer's address at the same moment, so their connects cross
            await slot.target_channel.send(PunchGo(observed))
            await channel.send(PunchGo(slot.target_observed))
        finally:
            self._punches.pop(punch_id, None)
            slot.sent.set()

    async def _punch_ready(self, channel: Channel, observed: PeerAddress, ready: PunchReady) -> None:
        slot = self._punches.get(ready.punch)
        if slot is None or slot.target.token != ready.token or slot.target_channel is not None:
            await channel.send(Refused("no-punch", f"no hole punch {ready.punch} for this token"))
            return
        slot.target_observed, slot.target_channel = observed, channel
        slot.ready.set()  # the initiator's task sends punch-go on this channel too
        with anyio.move_on_after(self.options.exchange_timeout):
            await slot.sent.wait()
