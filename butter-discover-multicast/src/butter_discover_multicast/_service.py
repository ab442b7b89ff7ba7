"""The discovery loop: drives a :class:`~._protocol.Beacon` with a :class:`~._socket.BeaconLink` and the node.

Three tasks in one task group, all ended (and the link closed) when :meth:`MulticastDiscovery.run` is
cancelled, which the node does when it closes:

* **ping**: asks host management whether the node is lonely (``not node.hosts.peers()``), ticks the beacon
  and multicasts the pings it hands out;
* **listen**: feeds every datagram from the group to the beacon;
* **answers**: for each :class:`~._protocol.PeerFound`, introduces the pinger to host management and sends
  it this node's record and a sample of its known hosts on route ``known-hosts`` (the pinger's built-in
  route introduces them in turn). The pinger's reply, a sample of what it knows, is introduced too.

Which interface: the configured one; by default (``0.0.0.0``) the routing table's choice, except that a node
whose transport address is a loopback address pings on loopback only (it cannot be reached from elsewhere,
so nothing leaves the machine), and that a node on a machine with no multicast route falls back to loopback
with a warning rather than failing to start. A node whose transport address is not an IP address (the
``memory`` transport) has nothing to announce on a LAN: discovery then stays idle.
"""

from __future__ import annotations

import ipaddress
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from ipaddress import IPv4Address
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from butter.errors import ButterConfigError, ButterError
from butter.peers import PeerAddress, PeerInfo
from butter.wire import decode_payload, encode_payload

from ._protocol import Beacon, BeaconStats, PeerFound
from ._socket import ANY_INTERFACE, LOOPBACK_INTERFACE, BeaconLink, open_multicast_link

if TYPE_CHECKING:
    from butter.slots import NodeServices

    from ._plugin import MulticastOptions

__all__ = ["LinkOpener", "MulticastDiscovery"]

log = logging.getLogger("butter.discovery.multicast")

EXCHANGE_SAMPLE = 16  # known hosts sent with an answer, as the node's own known-hosts exchange does
MAX_ANSWERS_IN_FLIGHT = 64  # answers being sent at once; more PeerFound events are shed (and counted)
ANSWER_QUEUE = 64

LinkOpener = Callable[[IPv4Address], Awaitable[BeaconLink]]
"""Opens the link on an interface address; the default joins the configured group (injected in tests)."""


class MulticastDiscovery:
    """A :class:`~butter.slots.Discovery` for one ``node`` with validated ``options``.

    ``open_link`` replaces the real UDP socket (tests use an in-process LAN); ``rng`` makes the ping jitter
    reproducible. ``stats`` counts pings, answers and dropped datagrams (:class:`~._protocol.BeaconStats`;
    ``counters()``, the :class:`~butter.capabilities.Counters` capability, is a snapshot of it);
    ``interface`` is the interface address actually used, once running.
    """

    def __init__(
        self,
        node: NodeServices,
        options: MulticastOptions,
        *,
        open_link: LinkOpener | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.node = node
        self.options = options
        self.stats = BeaconStats()
        self.beacon: Beacon | None = None
        self.interface: IPv4Address | None = None
        self._open_link = open_link or self._open_multicast
        self._link_injected = open_link is not None
        self._rng = rng

    def counters(self) -> Mapping[str, int]:
        """A snapshot of :attr:`stats`, ``dropped`` (their sum) included."""
        return self.stats.as_dict()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Join the group, report started, then ping and answer until cancelled.

        Raises :class:`~butter.errors.ButterError` at start when the group cannot be joined (for instance
        a configured interface that does not exist, or the port taken by a program that does not share it).
        """
        address = self.node.address
        if not address.is_ip and not self._link_injected:
            log.info("multicast discovery idle: transport address %s is not an IP address", address)
            task_status.started()
            return
        try:
            self.beacon = Beacon(
                self.node.node_id,
                address,
                interval=self.options.interval,
                jitter=self.options.jitter,
                answer_interval=self.options.answer_interval,
                answer_rate=self.options.answer_rate,
                max_datagram=self.options.max_datagram,
                rng=self._rng,
                stats=self.stats,
            )
        except ValueError as exc:
            raise ButterConfigError(f"butter.discovery:multicast: {exc}") from None
        link = await self._join(address)
        log.info(
            "multicast discovery on %s:%d via %s (ping every %.2g s ± %d%% while lonely)",
            self.options.group, self.options.port, self.interface, self.options.interval, 100 * self.options.jitter,
        )
        try:
            send, receive = anyio.create_memory_object_stream[PeerFound](ANSWER_QUEUE)
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._ping, link)
                tg.start_soon(self._listen, link, send)
                tg.start_soon(self._answer_all, receive)
                task_status.started()
        finally:
            with anyio.CancelScope(shield=True):
                await link.aclose()
            log.info("multicast discovery stopped: %s", " ".join(f"{k}={v}" for k, v in self.stats.as_dict().items()))

    async def _join(self, address: PeerAddress) -> BeaconLink:
        interface = self.options.interface
        if interface == ANY_INTERFACE and address.is_ip and ipaddress.ip_address(address.host).is_loopback:
            interface = LOOPBACK_INTERFACE
        try:
            link = await self._open_link(interface)
        except ButterError as exc:
            if interface != ANY_INTERFACE:
                raise
            log.warning("%s; falling back to loopback: only nodes on this machine can be found", exc)
            interface = LOOPBACK_INTERFACE
            link = await self._open_link(interface)
        self.interface = interface
        return link

    async def _open_multicast(self, interface: IPv4Address) -> BeaconLink:
        return await open_multicast_link(self.options.group, self.options.port, interface, self.options.ttl)

    # -- the three tasks ----------------------------------------------------------------------------------

    async def _ping(self, link: BeaconLink) -> None:
        assert self.beacon is not None
        while True:
            now = anyio.current_time()
            tick = self.beacon.tick(now, lonely=not self.node.hosts.peers())
            if tick.datagram is not None:
                log.debug("lonely: multicasting a ping (%d so far)", self.stats.pings_sent)
                try:
                    await link.send(tick.datagram)
                except ButterError as exc:
                    self.stats.send_errors += 1
                    log.warning("%s", exc)
            await anyio.sleep(max(0.0, tick.wake_at - anyio.current_time()))

    async def _listen(self, link: BeaconLink, found: MemoryObjectSendStream[PeerFound]) -> None:
        assert self.beacon is not None
        async with found:
            while True:
                try:
                    datagram = await link.receive()
                except ButterError as exc:
                    self.stats.receive_errors += 1
                    log.warning("%s", exc)
                    await anyio.sleep(self.options.interval)  # do not spin on a broken socket
                    continue
                event = self.beacon.receive(datagram, anyio.current_time())
                if isinstance(event, PeerFound):
                    try:
                        found.send_nowait(event)
                    except anyio.WouldBlock:
                        self.stats.answers_shed += 1
                else:
                    log.debug("datagram not answered: %s", event)

    async def _answer_all(self, found: MemoryObjectReceiveStream[PeerFound]) -> None:
        in_flight = anyio.Semaphore(MAX_ANSWERS_IN_FLIGHT)
        async with found, anyio.create_task_group() as tg:
            async for event in found:
                await in_flight.acquire()
                tg.start_soon(self._answer, event, in_flight)

    async def _answer(self, event: PeerFound, in_flight: anyio.Semaphore) -> None:
        """Tell the lonely pinger about this node and a sample of its known hosts (the original's ``pong/``)."""
        try:
            log.debug("answering the ping of %s (%s)", event.node_id[:8], event.address)
            self.node.introduce([event.address])
            body = encode_payload(
                {
                    "from": self.node.info().to_wire(),
                    "sample": [p.to_wire() for p in self.node.hosts.sample(EXCHANGE_SAMPLE)],
                }
            )
            try:
                reply = await self.node.request(
                    event.address, "known-hosts", body, timeout=self.options.answer_timeout
                )
                self.stats.answers_sent += 1
                self.node.introduce(_sample_addresses(decode_payload(reply, self.node.settings.max_frame)))
            except ButterError as exc:
                self.stats.answers_failed += 1
                log.debug("answer to %s failed: %s", event.address, exc)
        finally:
            in_flight.release()


def _sample_addresses(reply: object) -> list[PeerAddress]:
    """The addresses in a ``known-hosts`` reply ``{"sample": [PeerInfo]}``; malformed entries are skipped."""
    entries = reply.get("sample") if isinstance(reply, dict) else None
    addresses = []
    for entry in entries[:EXCHANGE_SAMPLE] if isinstance(entries, list) else []:
        try:
            addresses.append(PeerInfo.from_wire(entry).address)
        except ValueError:
            continue
    return addresses
