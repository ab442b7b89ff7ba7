"""The address a transport advertises to peers (``serve``'s ``task_status.started`` value).

Rules, in order:

1. ``advertise_host`` when set (a node behind NAT or in a container knows better than we do);
2. else the host the listener is bound to;
3. but a wildcard bind (``0.0.0.0``, ``::``, or an empty host) is not dialable, so the machine's outbound
   IPv4 address is used instead, found with :func:`outbound_ipv4`.

The port is always the listener's actual port, so ``port=0`` reports the port the OS picked.
"""

from __future__ import annotations

import socket

from butter.peers import PeerAddress

__all__ = ["WILDCARD_HOSTS", "advertised_address", "outbound_ipv4"]

WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})
LOOPBACK = "127.0.0.1"
# A public address, so the kernel picks the default route (a documentation prefix such as 192.0.2.0/24 may be
# blackholed by bogon routes). Connecting a UDP socket only selects a route and a source address: no packet
# is sent, nothing is resolved.
_PROBE = ("8.8.8.8", 53)


def outbound_ipv4(probe: tuple[str, int] = _PROBE) -> str:
    """This machine's IPv4 address on its default route, or ``"127.0.0.1"`` when there is none.

    Uses the UDP-connect trick: ``connect()`` on a UDP socket picks the route and source address without
    sending anything. Never raises.
    """
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(probe)
            host = str(sock.getsockname()[0])
    except OSError:
        return LOOPBACK
    return host if host not in WILDCARD_HOSTS else LOOPBACK


def advertised_address(bound_host: str, bound_port: int, advertise_host: str = "") -> PeerAddress:
    """The :class:`PeerAddress` peers should dial for a listener bound to ``bound_host:bound_port``."""
    if advertise_host:
        return PeerAddress(advertise_host, bound_port)
    if bound_host in WILDCARD_HOSTS:
        return PeerAddress(outbound_ipv4(), bound_port)
    return PeerAddress(bound_host, bound_port)
