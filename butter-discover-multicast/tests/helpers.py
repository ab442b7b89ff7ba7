"""Test helpers: a fake LAN that joins beacons or discovery services without any socket.

Nothing here opens a socket: the multicast group is an in-process fan-out, so these tests can never send
multicast on a real interface (the real socket is exercised in netns only, ``tests/netns`` at the repo root).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from butter.peers import PeerAddress
from butter_discover_multicast import Beacon, Dropped, Ignored, PeerFound

NODE_IDS = [f"{i:032x}" for i in range(1, 100)]


@dataclass
class Room:
    """Beacons on one simulated LAN, driven by hand with an explicit clock (seconds).

    ``lonely[i]`` says whether beacon ``i`` knows nobody; :meth:`step` ticks every beacon at ``now`` and
    delivers each ping to every beacon (the sender's own echo included), returning what they made of it.
    """

    beacons: list[Beacon]
    lonely: list[bool] = field(default_factory=list)
    now: float = 0.0

    def __post_init__(self) -> None:
        self.lonely = self.lonely or [True] * len(self.beacons)

    def step(self, now: float) -> list[tuple[int, int, PeerFound | Ignored | Dropped]]:
        """Returns ``(sender, receiver, event)`` for every delivery at ``now``."""
        self.now = now
        out = []
        for i, beacon in enumerate(self.beacons):
            tick = beacon.tick(now, lonely=self.lonely[i])
            if tick.datagram is not None:
                out.extend((i, j, other.receive(tick.datagram, now)) for j, other in enumerate(self.beacons))
        return out


def room(n: int, **kwargs: object) -> Room:
    import random

    return Room(
        [
            Beacon(NODE_IDS[i], PeerAddress("10.0.0.1", 7000 + i), rng=random.Random(i), **kwargs)  # type: ignore[arg-type]
            for i in range(n)
        ]
    )


class FakeLink:
    """One member's :class:`~butter_discover_multicast.BeaconLink` on a :class:`FakeLan`."""

    def __init__(self, lan: FakeLan, interface: IPv4Address) -> None:
        self.lan = lan
        self.interface = interface
        self.closed = False
        self._send: MemoryObjectSendStream[bytes]
        self._receive: MemoryObjectReceiveStream[bytes]
        self._send, self._receive = anyio.create_memory_object_stream[bytes](64)

    async def send(self, datagram: bytes) -> None:
        self.lan.sent.append(datagram)
        self.lan.deliver(datagram)

    async def receive(self) -> bytes:
        return await self._receive.receive()

    async def aclose(self) -> None:
        self.closed = True
        self.lan.links.remove(self)
        self._send.close()
        self._receive.close()


class FakeLan:
    """An in-process multicast group: a datagram sent by one member reaches every member, itself included.

    ``sent`` records every datagram sent; :meth:`deliver` injects one as if a stranger had sent it.
    ``fail_interfaces`` makes joining on those interfaces fail, like a machine without a multicast route.
    """

    def __init__(self, *, fail_interfaces: tuple[IPv4Address, ...] = ()) -> None:
        self.links: list[FakeLink] = []
        self.sent: list[bytes] = []
        self.fail_interfaces = fail_interfaces

    async def join(self, interface: IPv4Address) -> FakeLink:
        from butter.errors import ButterError

        if interface in self.fail_interfaces:
            raise ButterError(f"multicast discovery cannot join on interface {interface}: No such device")
        link = FakeLink(self, interface)
        self.links.append(link)
        return link

    def deliver(self, datagram: bytes) -> None:
        for link in list(self.links):
            try:
                link._send.send_nowait(datagram)
            except (anyio.WouldBlock, anyio.ClosedResourceError):
                pass  # a full socket buffer drops datagrams, as UDP does
