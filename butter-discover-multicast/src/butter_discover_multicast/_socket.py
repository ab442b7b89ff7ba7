"""The UDP side of the beacon: a :class:`BeaconLink` to one multicast group, and the real one over IPv4.

The link is the only I/O the discovery loop does besides the node's transport, and it is injected, so the
loop can be tested with an in-process fake LAN (see the package's tests) and never needs a real group.

The real link (:func:`open_multicast_link`) is one UDP socket that both sends to and receives from the
group:

* ``SO_REUSEADDR`` and ``SO_REUSEPORT`` before ``bind``, so several nodes on one host share the group port;
  every one of them receives each datagram (the kernel copies multicast to every matching socket).
* Bound to the group address where the OS allows it (Linux, BSD, macOS), so the socket does not also
  receive other groups' traffic to the same port; else to the wildcard address.
* ``IP_ADD_MEMBERSHIP`` on ``interface`` (``0.0.0.0``: the interface the routing table picks for the
  group), ``IP_MULTICAST_IF`` for sending, ``IP_MULTICAST_TTL`` = ``ttl`` (1: never routed off the LAN), and
  ``IP_MULTICAST_LOOP`` on, so nodes on the same host hear each other.
* On Linux, ``IP_MULTICAST_ALL`` off: the socket only receives the group on the interface it joined. By
  default Linux also hands it the group's datagrams arriving on any other interface where another socket
  joined, which would let a loopback-only node and a LAN node on one machine hear each other's pings.
"""

from __future__ import annotations

import socket
import struct
import sys
from ipaddress import IPv4Address
from typing import Protocol

import anyio
from anyio.abc import UDPSocket

from butter.errors import ButterError, TransportError

__all__ = ["ANY_INTERFACE", "LOOPBACK_INTERFACE", "BeaconLink", "MulticastLink", "open_multicast_link"]

ANY_INTERFACE = IPv4Address("0.0.0.0")
LOOPBACK_INTERFACE = IPv4Address("127.0.0.1")
IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49)  # Linux <linux/in.h>; Python exposes it from 3.12


class BeaconLink(Protocol):
    """A datagram link to one multicast group: what the discovery loop needs and nothing more.

    ``send`` raises :class:`~butter.errors.TransportError` when the datagram cannot be sent; ``receive``
    returns the next datagram from the group (this node's own included) and raises
    :class:`~butter.errors.TransportError` when the link fails.
    """

    async def send(self, datagram: bytes) -> None: ...

    async def receive(self) -> bytes: ...

    async def aclose(self) -> None: ...


class MulticastLink:
    """A :class:`BeaconLink` over a joined UDP socket. Build it with :func:`open_multicast_link`."""

    def __init__(self, sock: UDPSocket, group: IPv4Address, port: int, interface: IPv4Address) -> None:
        self._sock = sock
        self.group = group
        self.port = port
        self.interface = interface

    async def send(self, datagram: bytes) -> None:
        try:
            await self._sock.sendto(datagram, str(self.group), self.port)
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            raise TransportError(f"cannot send to {self.group}:{self.port}: {exc}") from exc

    async def receive(self) -> bytes:
        try:
            data, _source = await self._sock.receive()
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            raise TransportError(f"cannot receive from {self.group}:{self.port}: {exc}") from exc
        return data

    async def aclose(self) -> None:
        await self._sock.aclose()


async def open_multicast_link(group: IPv4Address, port: int, interface: IPv4Address, ttl: int) -> MulticastLink:
    """Open a UDP socket joined to ``group`` on ``interface`` and bound to ``port``, sending with ``ttl``.

    Raises :class:`~butter.errors.ButterError` naming the step that failed (for instance joining the group
    when no route covers it: "No such device"); the socket is closed then.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    step = "configure"
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        step = f"bind port {port}"
        try:
            sock.bind((str(group), port))
        except OSError:  # Windows cannot bind to a group address
            sock.bind(("", port))
        step = f"join {group} on interface {interface}"
        membership = struct.pack("4s4s", group.packed, interface.packed)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
        step = "set multicast options"
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, interface.packed)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        if sys.platform.startswith("linux"):
            sock.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
        sock.setblocking(False)
        wrapped = await UDPSocket.from_socket(sock)
    except OSError as exc:
        sock.close()
        raise ButterError(f"multicast discovery cannot {step}: {exc.strerror or exc}") from exc
    except BaseException:
        sock.close()
        raise
    return MulticastLink(wrapped, group, port, interface)
