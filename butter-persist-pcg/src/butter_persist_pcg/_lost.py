"""Members this node lost, to probe again, sans-IO: how split groups find each other after a partition heals
or a member restarts.

A member dropped because it could not be reached or fell silent (not one that left, was shed or said it does
not hold the group) is remembered with its address and the groups it was in. The service heartbeats it again
for those groups on a backoff schedule (:class:`butter.hosts.Backoff`: first after ``interval`` seconds, then
doubling up to ``4 × interval``, for ``expiry`` seconds), and at once when host management finds the node
again. A member that answers is added back to every group it still holds, and gossip merges the two views.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from butter.hosts import Backoff
from butter.peers import PeerAddress

__all__ = ["LostMember", "LostMembers"]

CAPACITY = 1024  # lost members remembered; more forget the oldest
MAX_INTERVAL_ROUNDS = 4  # the longest wait between two probes, in heartbeat intervals


@dataclass(slots=True)
class LostMember:
    """A lost member: its ``address`` and the content ids of the groups it was in."""

    address: PeerAddress
    groups: set[str] = field(default_factory=set)


class LostMembers:
    """The lost members and their probe schedule (module docstring); times in seconds, caller's clock."""

    def __init__(self, interval: float, expiry: float, rng: random.Random) -> None:
        self._schedule: Backoff[str] = Backoff(interval, MAX_INTERVAL_ROUNDS * interval, expiry, CAPACITY, rng)
        self._members: dict[str, LostMember] = {}

    def __len__(self) -> int:
        return len(self._members)

    def lost(self, node_id: str, address: PeerAddress, content_id: str, now: float) -> None:
        """``node_id`` (at ``address``) was dropped from group ``content_id`` as unreachable or silent."""
        member = self._members.get(node_id)
        if member is None or node_id not in self._schedule:
            member = self._members[node_id] = LostMember(address)
        member.address = address
        member.groups.add(content_id)
        self._schedule.add(node_id, now)

    def found(self, node_id: str) -> None:
        """Stop probing ``node_id``: it answered (or holds none of the groups any more)."""
        self._members.pop(node_id, None)
        self._schedule.discard(node_id)

    def get(self, node_id: str) -> LostMember | None:
        """The lost member ``node_id``, if it is one (to probe it at once: host management found it again)."""
        return self._members.get(node_id) if node_id in self._schedule else None

    def due(self, now: float) -> dict[str, LostMember]:
        """The members to probe now (each rescheduled); expired ones are forgotten."""
        ready = self._schedule.due(now)
        self._members = {i: m for i, m in self._members.items() if i in self._schedule}
        return {node_id: self._members[node_id] for node_id in ready}
