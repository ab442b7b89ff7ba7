"""One Peer Content Group as a member sees it, sans-IO.

Rules this class keeps:

* A view maps node id -> (address, last heard), self included; time is the caller's clock in seconds.
* A member not heard for ``timeout`` seconds is dropped (the report's localGroupView); a member
  that cannot be reached, or says it is not a member, is dropped at once.
* Members learn of each other through heartbeats: a heartbeat lists the sender's view with the age of each
  entry, and a receiver adopts entries younger than ``timeout`` (so views converge and dead members are not
  resurrected by stale gossip). A member dropped for a reason (unreachable, left, shed, not a member) leaves
  a tombstone: gossip about it older than its departure is ignored until it is heard from directly.
* State is cold (n < target), goldilocks (n = target) or hot (n > target).
* The leader is the member with the highest node id in the view. Several members
  may briefly think they lead while views differ; recruiting and shedding are idempotent, so that only
  costs messages. A member that has just joined does not act as leader until it has had two heartbeat rounds
  to hear from the others (``settled_at``): otherwise every fresh recruit, seeing only part of the group,
  would recruit again.
* The target is ``replicas`` plus one per ``popularity_hits`` hits in the current window over all members,
  capped at ``max_replicas``; it decays as the window slides.
* Back to target: a hot group's leader, after ``hot_ticks`` rounds in a row hot, asks the ``count - target``
  lowest-id members other than itself to leave (:meth:`GroupView.shed_candidates`). The leader and the
  candidates are functions of the view alone, so once the members' views agree (a round or two of gossip
  after two groups of the same item merge, or after the target falls as popularity fades) the group is back
  at its target within ``hot_ticks`` + 1 rounds, whatever caused the excess.
* ``partners`` (optional): a tally, shared by all the views of one node, of the groups each node id is a
  member of (:meth:`GroupView.attach` counts this view's members in it, every change to the view updates it,
  :meth:`GroupView.detach` takes them out again), so that recruiting can rank candidates by the groups they
  share with the node without a scan over every group (`prefer_partners`).
* ``missing``: blocks of the item this member lacks (found corrupted or gone from its store); it repairs
  them from the other members and does not recruit meanwhile (a recruit could not fetch them from it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from butter.capabilities import GroupState
from butter.peers import PeerAddress

__all__ = ["GroupView", "Member"]


@dataclass(slots=True)
class Member:
    address: PeerAddress
    last_heard: float
    hits: int = 0  # this member's recent retrieval hits, as it last reported


@dataclass
class GroupView:
    """``content_id`` (hex), ``size`` (bytes of the item, manifest included) and the member view."""

    content_id: str
    size: int
    self_id: str
    self_address: PeerAddress
    replicas: int
    members: dict[str, Member] = field(default_factory=dict)
    hot_ticks: int = 0  # consecutive checks in the hot state
    departed: dict[str, float] = field(default_factory=dict)  # node id -> when it was dropped
    settled_at: float = float("-inf")  # before this time the member does not act as leader
    missing: set[str] = field(default_factory=set)  # block ids of the item this member lacks, to repair
    partners: dict[str, int] | None = None  # node id -> groups it is a member of, over the node's views (attach)

    def __post_init__(self) -> None:
        self.members.setdefault(self.self_id, Member(self.self_address, float("inf")))

    def attach(self, partners: dict[str, int]) -> None:
        """Count this view's members in ``partners`` (node id -> groups it is a member of) and keep them counted
        there as the view changes, until :meth:`detach`."""
        self.detach()
        self.partners = partners
        for node_id in self.members:
            partners[node_id] = partners.get(node_id, 0) + 1

    def detach(self) -> None:
        """Take this view's members out of its ``partners`` tally (a node id counted nowhere leaves it)."""
        partners, self.partners = self.partners, None
        if partners is not None:
            for node_id in self.members:
                self._uncount(partners, node_id)

    @staticmethod
    def _uncount(partners: dict[str, int], node_id: str) -> None:
        left = partners[node_id] - 1
        if left:
            partners[node_id] = left
        else:
            del partners[node_id]

    def _add(self, node_id: str, member: Member) -> None:
        self.members[node_id] = member
        if self.partners is not None:
            self.partners[node_id] = self.partners.get(node_id, 0) + 1

    def _remove(self, node_id: str) -> bool:
        if self.members.pop(node_id, None) is None:
            return False
        if self.partners is not None:
            self._uncount(self.partners, node_id)
        return True

    @property
    def count(self) -> int:
        return len(self.members)

    def others(self) -> dict[str, Member]:
        return {node_id: m for node_id, m in self.members.items() if node_id != self.self_id}

    def heard(self, node_id: str, address: PeerAddress, now: float, hits: int | None = None) -> bool:
        """Record a heartbeat from ``node_id``; returns whether it was new to the view."""
        self.departed.pop(node_id, None)
        member = self.members.get(node_id)
        if member is None:
            self._add(node_id, Member(address, now, hits or 0))
            return True
        member.address, member.last_heard = address, max(member.last_heard, now)
        if hits is not None:
            member.hits = hits
        return False

    def merge(self, entries: Iterable[tuple[str, PeerAddress, float]], now: float, timeout: float) -> list[str]:
        """Adopt ``(node_id, address, age seconds)`` entries younger than ``timeout``; returns the new ids."""
        added = []
        for node_id, address, age in entries:
            if node_id == self.self_id or age >= timeout:
                continue
            heard_at = now - max(age, 0.0)
            if heard_at <= self.departed.get(node_id, float("-inf")):
                continue
            member = self.members.get(node_id)
            if member is None:
                self._add(node_id, Member(address, heard_at))
                added.append(node_id)
            elif heard_at > member.last_heard:
                member.last_heard = heard_at
        return added

    def drop(self, node_id: str, now: float) -> bool:
        """Remove ``node_id`` and leave a tombstone at ``now``; returns whether it was a member."""
        if node_id == self.self_id:
            return False
        self.departed[node_id] = now
        return self._remove(node_id)

    def expire(self, now: float, timeout: float) -> dict[str, PeerAddress]:
        """Drop members not heard for ``timeout`` seconds; returns their ids and addresses."""
        gone = {i: m.address for i, m in self.members.items() if now - m.last_heard > timeout and i != self.self_id}
        for node_id in gone:
            self._remove(node_id)
        if self.departed:
            self.departed = {i: t for i, t in self.departed.items() if now - t <= timeout}
        return gone

    def entries(self, now: float) -> list[tuple[str, PeerAddress, float]]:
        """This view as ``(node_id, address, age seconds)``, self with age 0."""
        return [(i, m.address, 0.0 if i == self.self_id else max(now - m.last_heard, 0.0))
                for i, m in self.members.items()]

    def target(self, own_hits: int, popularity_hits: int, max_replicas: int) -> int:
        hits = own_hits + sum(m.hits for i, m in self.members.items() if i != self.self_id)
        return min(max_replicas, self.replicas + hits // popularity_hits) if popularity_hits else self.replicas

    def state(self, target: int) -> GroupState:
        """``"cold"``, ``"goldilocks"`` or ``"hot"`` (:data:`butter.capabilities.GroupState`) for ``target``."""
        if self.count < target:
            return "cold"
        return "hot" if self.count > target else "goldilocks"

    @property
    def leader(self) -> str:
        return max(self.members)

    @property
    def is_leader(self) -> bool:
        return self.leader == self.self_id

    def shed_candidates(self, target: int) -> list[str]:
        """Members the leader asks to leave so the group returns to ``target``: the lowest ids, never self."""
        excess = self.count - target
        return sorted(self.others())[:excess] if excess > 0 else []
