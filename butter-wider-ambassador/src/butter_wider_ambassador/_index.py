"""The ambassador's index of reachable peers, per subnetwork: bounded and expiring, sans-IO.

Rules it keeps:

* An entry is one node (by node id): the address to dial (its own public address, or a relayed address on
  this ambassador), its subnetwork key and when it expires. Publishing again replaces the entry and
  renews it; an entry not renewed within ``expiry`` seconds is gone.
* At most ``capacity`` entries in all and ``per_subnet`` per subnetwork: a new entry past either bound
  evicts the entry that expires first (of that subnetwork, or of all).
* :meth:`PeerIndex.pick` gives up to ``k`` entries of subnetworks other than the caller's, at most
  ``per_pick_subnet`` from any one subnetwork (so one big LAN does not crowd out the others), entries with
  a direct address before relayed ones, randomly within each kind.

Time is passed in (seconds on any monotonic clock), so the index is tested without sleeping.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass

from butter.peers import PeerAddress

from ._messages import Introduction

__all__ = ["IndexEntry", "PeerIndex", "subnet_key"]


def subnet_key(observed_host: str, local_host: str, public_prefix: int = 24) -> str:
    """Which subnetwork a node belongs to, from the address a connection from it came from (``observed_host``)
    and the address it says it listens on (``local_host``).

    A node whose traffic comes from another address than its own is behind NAT: every node behind that
    NAT shares the public address, which names the subnetwork (``"nat:198.51.100.7"``). A node seen at its
    own address has a public address: its ``/public_prefix`` network names the subnetwork
    (``"net:203.0.113.0/24"``; IPv6 uses at least ``/64``).
    """
    try:
        observed = ipaddress.ip_address(observed_host)
    except ValueError:
        return f"host:{observed_host}"
    if observed_host != local_host:
        return f"nat:{observed}"
    prefix = public_prefix if observed.version == 4 else max(64, public_prefix)
    return f"net:{ipaddress.ip_network(f'{observed}/{prefix}', strict=False)}"


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """A peer the ambassador can introduce: ``node_id``, ``address`` to dial, ``subnet`` key, whether the
    address is ``relayed``, and ``expires`` (seconds, the index's clock)."""

    node_id: str
    address: PeerAddress
    subnet: str
    relayed: bool
    expires: float

    def introduction(self) -> Introduction:
        return Introduction(self.node_id, self.address, self.relayed)


class PeerIndex:
    """Bounded, expiring index of reachable peers (see the module rules).

    ``capacity`` (default 1,024) and ``per_subnet`` (default 32) bound the entries; ``expiry`` (seconds,
    default 300) is how long an entry lives without being published again. Raises ``ValueError`` for a
    bound below 1 or an ``expiry`` that is not positive.
    """

    def __init__(self, capacity: int = 1024, per_subnet: int = 32, expiry: float = 300.0, per_pick_subnet: int = 4):
        if capacity < 1 or per_subnet < 1 or per_pick_subnet < 1 or not expiry > 0:
            raise ValueError("capacity, per_subnet and per_pick_subnet must be at least 1 and expiry positive")
        self.capacity = capacity
        self.per_subnet = per_subnet
        self.expiry = expiry
        self.per_pick_subnet = per_pick_subnet
        self._entries: dict[str, IndexEntry] = {}
        self.evicted = 0
        self.expired = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._entries

    def entries(self, now: float) -> list[IndexEntry]:
        self.expire(now)
        return list(self._entries.values())

    def get(self, node_id: str) -> IndexEntry | None:
        return self._entries.get(node_id)

    def add(self, node_id: str, address: PeerAddress, subnet: str, *, relayed: bool, now: float) -> IndexEntry:
        """Add or renew ``node_id``; returns the entry. Evicts as the bounds require."""
        self.expire(now)
        self._entries.pop(node_id, None)
        same = [e for e in self._entries.values() if e.subnet == subnet]
        if len(same) >= self.per_subnet:
            self._evict(min(same, key=lambda e: e.expires))
        if len(self._entries) >= self.capacity:
            self._evict(min(self._entries.values(), key=lambda e: e.expires))
        entry = IndexEntry(node_id, address, subnet, relayed, now + self.expiry)
        self._entries[node_id] = entry
        return entry

    def _evict(self, entry: IndexEntry) -> None:
        del self._entries[entry.node_id]
        self.evicted += 1

    def remove(self, node_id: str, address: PeerAddress | None = None) -> None:
        """Forget ``node_id`` (only if its address is ``address``, when given)."""
        entry = self._entries.get(node_id)
        if entry is not None and (address is None or entry.address == address):
            del self._entries[node_id]

    def expire(self, now: float) -> int:
        """Drop entries whose time is up; returns how many."""
        stale = [node_id for node_id, e in self._entries.items() if e.expires <= now]
        for node_id in stale:
            del self._entries[node_id]
        self.expired += len(stale)
        return len(stale)

    def pick(
        self, k: int, *, exclude_subnet: str, now: float, rng: random.Random, exclude_id: str = ""
    ) -> list[IndexEntry]:
        """Up to ``k`` entries of other subnetworks than ``exclude_subnet`` (and not ``exclude_id``)."""
        candidates = [
            e for e in self.entries(now) if e.subnet != exclude_subnet and e.node_id != exclude_id
        ]
        rng.shuffle(candidates)
        candidates.sort(key=lambda e: e.relayed)  # stable: direct first, random within each kind
        chosen: list[IndexEntry] = []
        per: dict[str, int] = {}
        for entry in candidates:
            if len(chosen) >= k:
                break
            if per.get(entry.subnet, 0) < self.per_pick_subnet:
                per[entry.subnet] = per.get(entry.subnet, 0) + 1
                chosen.append(entry)
        return chosen
