"""The client side (entry point ``butter.discovery:ambassador``): reach the wider network through ambassadors.

Every ``interval`` seconds (sooner while no ambassador answers):

1. **Find ambassadors**: the configured ``ambassadors`` (the one entry point the design admits; they are
   also offered to host management, so the LAN learns them through the ordinary known-host exchange) and
   every known host whose quality record carries the ``ambassador`` flag.
2. **Publish** (``hello``) to up to ``max_ambassadors`` of them, on their service port (route
   ``ambassador`` says where it is). The answer tells this node its observed address and whether the
   ambassador could dial it back on its public address (port forwarding, UPnP): it is then in the
   ambassador's index and introduced to other subnetworks.
3. **Not reachable**: if enabled, try a UPnP mapping once (logged, never fatal), and hold a **relay
   reservation** with the ambassador: peers of other subnetworks reach this node through the relayed
   address; each circuit is spliced to this node's own listener, so the transport is untouched.
4. **Introductions**: the peers of other subnetworks the ambassador returns are offered to host management
   (``node.introduce``). For a relayed peer, a **hole punch** is tried once (coordinated by the ambassador);
   on success the direct connection becomes the transport's connection for that peer's relayed address
   (``transport.adopt_outgoing``), so traffic no longer goes through the relay. Failure keeps the relay.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import anyio
from anyio.abc import SocketStream, TaskGroup, TaskStatus

from butter.capabilities import OutgoingAdoption
from butter.errors import ButterError, PeerUnreachable
from butter.peers import PeerAddress, PeerInfo
from butter.wire import decode_payload

from ._io import WILDCARD, Channel, connect, local_address, splice
from ._messages import (
    Accept,
    Dialed,
    Hello,
    Introduction,
    Open,
    Ping,
    Punch,
    PunchCall,
    PunchGo,
    PunchReady,
    Reserve,
    Reserved,
    ServiceInfo,
    Welcome,
)
from ._punch import simultaneous_open
from ._upnp import PortMapping, map_port

if TYPE_CHECKING:
    from butter.slots import NodeServices

    from ._plugin import AmbassadorOptions

__all__ = ["AmbassadorClient", "ClientStats"]

log = logging.getLogger("butter.discovery.ambassador")

RETRY = 2.0  # seconds between rounds while no ambassador answers (at most ``interval``)


@dataclass(slots=True)
class ClientStats:
    """Counters: rounds, welcomes, introductions offered, circuits served, punches tried and succeeded."""

    rounds: int = 0
    welcomes: int = 0
    introductions: int = 0
    circuits: int = 0
    punches: int = 0
    punches_ok: int = 0


class AmbassadorClient:
    """Publishes ``node`` to ambassadors and admits their introductions (see the module docstring).

    Hole punching needs the transport's :class:`~butter.capabilities.OutgoingAdoption` capability (the
    ``tcp`` transport has it), found at start; without it, relayed peers stay on the relay and the start
    says so once in the log.
    """

    def __init__(self, node: NodeServices, options: AmbassadorOptions) -> None:
        self.node = node
        self.options = options
        self.configured = [PeerAddress.parse(text) for text in options.ambassadors]
        self.stats = ClientStats()
        self.observed: PeerAddress | None = None
        self.reachable: PeerAddress | None = None
        self.relayed: dict[PeerAddress, PeerAddress] = {}  # ambassador -> this node's relayed address there
        self.mapping: PortMapping | None = None
        self._services: dict[PeerAddress, PeerAddress] = {}  # ambassador node address -> its service address
        self._relay_of: dict[PeerAddress, tuple[PeerAddress, Introduction]] = {}  # relayed peer -> its service
        self._reserving: dict[PeerAddress, anyio.CancelScope] = {}  # ambassador -> its reservation task's scope
        self._introduced: set[PeerAddress] = set()  # addresses already logged as introduced
        self._punched: dict[PeerAddress, float] = {}  # target -> when a punch was last tried
        self._upnp_tried = False
        self._punch_limiter = anyio.CapacityLimiter(2)
        self._adoption: OutgoingAdoption | None = None  # found at start (run)
        self._tg: TaskGroup | None = None

    # -- addresses ----------------------------------------------------------------------------------------

    @property
    def local_listener(self) -> PeerAddress:
        """Where this node's own transport listens, dialled to hand it a relayed or punched connection."""
        host = self.node.settings.host
        if host in WILDCARD:
            host = "::1" if host == "::" else "127.0.0.1"
        return PeerAddress(host, self.node.address.port)

    @property
    def bind_host(self) -> str:
        """The local address connections to ambassadors leave from (the punch reuses their ports)."""
        host = self.options.source_host or self.node.address.host
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return "0.0.0.0"
        return host

    def ambassadors(self) -> list[PeerAddress]:
        """Configured ambassadors first, then known hosts flagged as ambassadors; never this node."""
        found = dict.fromkeys(self.configured)
        for peer in self.node.hosts.peers():
            if peer.quality.ambassador:
                found.setdefault(peer.address)
        return [a for a in found if a != self.node.address]

    # -- the loop -----------------------------------------------------------------------------------------

    def counters(self) -> Mapping[str, int]:
        """A snapshot of :class:`ClientStats` (:class:`~butter.capabilities.Counters`)."""
        return asdict(self.stats)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self._adoption = self.node.capability(OutgoingAdoption)
        if self.options.punch and self._adoption is None:
            log.info("ambassador client: hole punching is off: the transport offers no OutgoingAdoption (it cannot "
                     "take a punched connection as its own); relayed peers stay on the relay")
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                task_status.started()
                while True:
                    answered = await self.round()
                    await anyio.sleep(self.options.interval if answered else min(RETRY, self.options.interval))
        finally:
            self._tg = None
            if self.mapping is not None:
                with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                    await self.mapping.remove()

    async def round(self) -> bool:
        """One publish-and-introduce round; returns whether any ambassador answered."""
        self.stats.rounds += 1
        if self.configured:
            self.node.introduce(self.configured)  # so they enter known hosts, and spread from there
        answered = False
        for ambassador in self.ambassadors()[: self.options.max_ambassadors]:
            try:
                await self._hello(ambassador)
            except ButterError as exc:
                log.info("ambassador %s did not answer: %s", ambassador, exc)
                self._services.pop(ambassador, None)
                continue
            answered = True
        return answered

    async def _service(self, ambassador: PeerAddress) -> PeerAddress:
        service = self._services.get(ambassador)
        if service is None:
            reply = await self.node.request(ambassador, "ambassador", b"", timeout=self.options.exchange_timeout)
            service = self._services[ambassador] = PeerAddress(ambassador.host, ServiceInfo.decode(reply).port)
        return service

    async def _hello(self, ambassador: PeerAddress) -> None:
        """Publish to ``ambassador``: admit its introductions as soon as they come, then learn from the
        dial-back whether this node is reachable, and act on it."""
        service = await self._service(ambassador)
        port = self.options.public_port or (self.mapping.external_port if self.mapping else self.node.address.port)
        hello = Hello(self.node.node_id, self.node.address, port, self.options.introductions)
        channel = Channel(await connect(service, timeout=self.options.exchange_timeout, local=(self.bind_host, 0)))
        try:
            await channel.send(hello)
            welcome = await channel.expect(Welcome, self.options.exchange_timeout)
            self._introduce(ambassador, welcome)
            if welcome.observed.host != self.node.address.host and self.reachable is None:
                self._reserve(ambassador)  # behind NAT: reserve now rather than after the dial-back timeout
            dialed = await channel.expect(Dialed, self.options.exchange_timeout * 2)  # the dial-back may take a timeout
        finally:
            await channel.aclose()
        self._reachability(ambassador, welcome, dialed.reachable)

    def _reachability(self, ambassador: PeerAddress, welcome: Welcome, reachable: PeerAddress | None) -> None:
        self.stats.welcomes += 1
        if (welcome.observed.host, reachable) != (self.observed and self.observed.host, self.reachable):
            log.info(
                "ambassador %s sees this node at %s (subnet %s): %s", ambassador, welcome.observed.host,
                welcome.subnet, f"reachable at {reachable}" if reachable else "not reachable from outside",
            )
        self.observed, self.reachable = welcome.observed, reachable
        assert self._tg is not None
        if reachable is None:
            if self.options.upnp and not self._upnp_tried and not _is_loopback(self.node.address.host):
                self._upnp_tried = True
                self._tg.start_soon(self._map_port)
            self._reserve(ambassador)
        elif ambassador in self._reserving:
            log.info("reachable from outside: releasing the relay reservation at %s", ambassador)
            self._reserving[ambassador].cancel()

    def _reserve(self, ambassador: PeerAddress) -> None:
        """Start holding a reservation at ``ambassador`` unless relaying is off or one is held already."""
        if self.options.relay and ambassador not in self._reserving and self._tg is not None:
            self._reserving[ambassador] = anyio.CancelScope()
            self._tg.start_soon(self._hold_reservation, ambassador)

    def _introduce(self, ambassador: PeerAddress, welcome: Welcome) -> None:
        assert self._tg is not None
        mine = set(self.relayed.values())
        fresh = [p for p in welcome.peers if p.address not in mine and p.node_id != self.node.node_id]
        new = [p for p in fresh if p.address not in self._introduced]
        if new:
            log.info("ambassador %s introduced %d new peers: %s", ambassador, len(new),
                     ", ".join(f"{p.address}{' (relayed)' if p.relayed else ''}" for p in new))
        self._introduced.update(p.address for p in new)
        self.stats.introductions += len(fresh)
        direct = []
        for peer in fresh:
            if peer.relayed:
                self._relay_of[peer.address] = (self._services[ambassador], peer)
            if peer.relayed and self._should_punch(peer.address):
                self._tg.start_soon(self._punch_then_introduce, peer.address)
            else:
                direct.append(peer.address)
        self.node.introduce(direct)

    async def _punch_then_introduce(self, target: PeerAddress) -> None:
        """Punch first, so that host management's first contact already uses the direct connection."""
        try:
            await self.punch(target)
        finally:
            self.node.introduce([target])

    async def _map_port(self) -> None:
        self.mapping = await map_port(self.node.address.port)

    # -- relay reservation (this node is not reachable) ---------------------------------------------------

    async def _hold_reservation(self, ambassador: PeerAddress) -> None:
        """Keep a reservation at ``ambassador`` until it fails or is released; the next round makes a new
        one if this node is still not reachable."""
        try:
            with self._reserving[ambassador]:
                await self._reservation(ambassador)
        finally:
            self.relayed.pop(ambassador, None)
            self._reserving.pop(ambassador, None)

    async def _reservation(self, ambassador: PeerAddress) -> None:
        try:
            service = await self._service(ambassador)
            channel = Channel(await connect(service, timeout=self.options.exchange_timeout, local=(self.bind_host, 0)))
        except ButterError as exc:
            log.info("no relay reservation at %s: %s", ambassador, exc)
            return
        try:
            await channel.send(Reserve(self.node.node_id, self.node.address))
            reserved = await channel.expect(Reserved, self.options.exchange_timeout)
            self.relayed[ambassador] = reserved.relayed
            log.info(
                "relay reservation at ambassador %s: relayed address %s (circuits limited to %.0f s and %d bytes)",
                ambassador, reserved.relayed, reserved.duration, reserved.data,
            )
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._keepalive, channel, tg.cancel_scope)
                reason = await self._control_loop(channel, service, reserved, tg)
                tg.cancel_scope.cancel()
            log.info("relay reservation at %s ended: %s", ambassador, reason)
        except ButterError as exc:
            log.info("relay reservation at %s ended: %s", ambassador, exc)
        finally:
            await channel.aclose()

    async def _control_loop(self, channel: Channel, service: PeerAddress, reserved: Reserved, tg: TaskGroup) -> str:
        """Answer the ambassador's ``open`` and ``punch-call``; returns why the control connection ended."""
        try:
            while True:
                message = await channel.receive()
                if isinstance(message, Open):
                    tg.start_soon(self._serve_circuit, service, reserved.token, message.circuit)
                elif isinstance(message, PunchCall) and self._tg is not None:
                    # in the client's own task group: a punched connection outlives the reservation
                    self._tg.start_soon(self._answer_punch, service, reserved.token, message.punch)
        except ButterError as exc:
            return str(exc)

    async def _keepalive(self, channel: Channel, scope: anyio.CancelScope) -> None:
        try:
            while True:
                await anyio.sleep(self.options.keepalive_interval)
                await channel.send(Ping())
        except ButterError:
            scope.cancel()

    async def _serve_circuit(self, service: PeerAddress, token: bytes, circuit: int) -> None:
        """Answer ``open``: a data connection to the ambassador, spliced to this node's own listener."""
        try:
            data = await connect(service, timeout=self.options.exchange_timeout)
            channel = Channel(data)
            await channel.send(Accept(circuit, token))
            local = await connect(self.local_listener, timeout=self.options.exchange_timeout)
        except ButterError as exc:
            log.info("relay circuit %d not served: %s", circuit, exc)
            return
        self.stats.circuits += 1
        moved, _ = await splice(data, local)
        log.debug("relay circuit %d done after %d bytes", circuit, moved)

    # -- hole punching ------------------------------------------------------------------------------------

    def _should_punch(self, target: PeerAddress) -> bool:
        if not self.options.punch or self._adoption is None:
            return False
        last = self._punched.get(target)
        return last is None or anyio.current_time() - last >= self.options.punch_retry_interval

    async def punch(self, target: PeerAddress) -> bool:
        """Try a direct connection to the relayed peer ``target``; on success the transport adopts it for
        ``target``. Returns whether it worked; failures are logged (the relay stays in use)."""
        service, intro = self._relay_of[target]
        adoption = self._adoption
        if adoption is None:
            return False
        self._punched[target] = anyio.current_time()
        self.stats.punches += 1
        started = anyio.current_time()
        async with self._punch_limiter:
            try:
                direct, peer, port = await self._punch_via(service, Punch(self.node.node_id, target))
                adoption.expect_identity(target, intro.node_id)  # the TLS handshake checks who answers
                await adoption.adopt_outgoing(target, direct)
                reply = await self.node.request(target, "host-quality", b"", timeout=self.options.exchange_timeout)
                node_id = PeerInfo.from_wire(decode_payload(reply, self.node.settings.max_frame)).node_id
                if node_id != intro.node_id:
                    raise PeerUnreachable(f"the punched connection reached {node_id[:8]}, not {intro.node_id[:8]}")
            except (ButterError, ValueError) as exc:
                log.info("hole punch to %s failed: %s; using the relay", target, exc)
                return False
        self.stats.punches_ok += 1
        log.info(
            "hole punch to %s succeeded in %.0f ms: direct connection from port %d to %s",
            target, (anyio.current_time() - started) * 1000, port, peer,
        )
        return True

    async def _punch_via(
        self, service: PeerAddress, first: Punch | PunchReady
    ) -> tuple[SocketStream, PeerAddress, int]:
        """Send ``first`` from a fresh port (reusable), wait for ``punch-go``, then connect from that port to
        the peer it names. Returns the direct stream, the peer's address and our local port."""
        timeout = self.options.exchange_timeout
        channel = Channel(await connect(service, timeout=timeout, local=(self.bind_host, 0), reuse=True))
        try:
            await channel.send(first)
            go = await channel.expect(PunchGo, timeout * 2)
            port = local_address(channel.stream).port
            direct = await simultaneous_open((self.bind_host, port), go.peer, timeout=self.options.punch_timeout)
        finally:
            await channel.aclose()
        return direct, go.peer, port

    async def _answer_punch(self, service: PeerAddress, token: bytes, punch: int) -> None:
        """The target's side: report a fresh port, then connect from it; serve the result as inbound."""
        try:
            direct, peer, _ = await self._punch_via(service, PunchReady(punch, token))
            local = await connect(self.local_listener, timeout=self.options.exchange_timeout)
        except ButterError as exc:
            log.info("hole punch %d (as target) failed: %s", punch, exc)
            return
        log.info("hole punch %d (as target): direct connection from %s", punch, peer)
        await splice(direct, local)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
