"""Which incoming connection to give up when there is no room: netgroups and the inbound-eviction rule.

A **netgroup** is the /24 of an IPv4 address or the /48 of an IPv6 one (an IPv4-mapped IPv6 address is its
IPv4 address): one operator usually holds many addresses of one netgroup, few of many.

:func:`choose_eviction` follows Bitcoin Core's ``AttemptToEvictConnection`` (net.cpp): among the working
incoming connections not from known hosts, protect

1. ``PROTECT_NETGROUPS`` connections of distinct netgroups, picked by a keyed hash of the netgroup (an
   attacker cannot tell which netgroups are protected, nor make its own ones be),
2. ``PROTECT_FASTEST`` with the lowest latency (the handshake's duration),
3. ``PROTECT_USEFUL`` with the most recent activity (a request served),
4. half of those left, the longest connected,

then evict the youngest connection of the netgroup holding most of the rest. An attacker must therefore
beat honest peers on diversity, speed, usefulness and age at once to take their places.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections import defaultdict
from dataclasses import dataclass, field

__all__ = ["PROTECT_FASTEST", "PROTECT_NETGROUPS", "PROTECT_USEFUL", "Candidate", "choose_eviction", "netgroup"]

PROTECT_NETGROUPS = 4
PROTECT_FASTEST = 8
PROTECT_USEFUL = 4


def netgroup(ip: str) -> str:
    """The /24 (IPv4) or /48 (IPv6) holding ``ip``, as a network in text; ``ip`` itself when it is no IP."""
    try:
        address = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = 24 if isinstance(address, ipaddress.IPv4Address) else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


@dataclass(eq=False)
class Candidate:
    """One working incoming connection as the eviction rule sees it: its ``netgroup``, when it was
    ``connected`` and when it was last ``active`` (a request answered; 0: never) in seconds on the event
    loop's clock, its ``latency`` (seconds) and whether it comes from a ``known`` host (never evicted)."""

    netgroup: str
    connected: float
    latency: float
    known: bool = False
    active: float = field(default=0.0)


def choose_eviction(candidates: list[Candidate], key: bytes) -> Candidate | None:
    """The connection to close to make room for a new one, or ``None`` when every one is protected.
    ``key`` (bytes, secret to this node) orders netgroups for the diversity protection."""
    left = [c for c in candidates if not c.known]

    def keyed(c: Candidate) -> bytes:
        return hashlib.blake2b(c.netgroup.encode(), key=key[:64], digest_size=8).digest()

    protected: set[str] = set()
    for c in sorted(left, key=keyed):  # 1. distinct netgroups, in an order the peers cannot predict
        if len(protected) >= PROTECT_NETGROUPS:
            break
        if c.netgroup not in protected:
            protected.add(c.netgroup)
            left.remove(c)
    left = sorted(left, key=lambda c: c.latency)[PROTECT_FASTEST:]  # 2. the fastest
    left = sorted(left, key=lambda c: -c.active)[PROTECT_USEFUL:]  # 3. the most recently useful
    left = sorted(left, key=lambda c: c.connected)  # 4. the longest connected half
    left = left[len(left) // 2 :]
    if not left:
        return None
    groups: defaultdict[str, list[Candidate]] = defaultdict(list)
    for c in left:
        groups[c.netgroup].append(c)
    largest = max(groups.values(), key=lambda g: (len(g), max(c.connected for c in g)))
    return max(largest, key=lambda c: c.connected)  # its youngest
