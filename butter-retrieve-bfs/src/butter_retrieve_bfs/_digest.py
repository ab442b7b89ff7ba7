"""Digests of what peers hold: this node's own (served on ``bfs-digest``) and the ones it pulled from its known
hosts, used to name likely holders in searches (the report's proposed "digest of the information a
peer hosts", for informed search). Pure bookkeeping, no I/O."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from butter.peers import PeerAddress, kept_tag

from ._bloom import BloomFilter
from ._messages import MAX_DIGEST_BYTES, DigestReply

__all__ = ["DigestBook", "LocalDigest"]


@dataclass(frozen=True, slots=True)
class LocalDigest:
    """This node's digest: a Bloom filter of the ``count`` content ids it holds, versioned by ``tag``
    (:func:`butter.peers.kept_tag` of the ids, as bytes: the first 8 bytes of the SHA-256 of the sorted ids,
    so equal sets give equal tags, and the tag a host advertises in its host-quality record); ``ids`` are those
    content ids (what a push compares with the set it pushed last)."""

    tag: bytes
    count: int
    bloom: BloomFilter
    ids: frozenset[str] = frozenset()

    @classmethod
    def build(cls, content_ids: Iterable[str], fp_rate: float) -> LocalDigest:
        ids = sorted(set(content_ids))
        tag = bytes.fromhex(kept_tag(ids))
        return cls(tag, len(ids), BloomFilter.build(ids, fp_rate, max_bytes=MAX_DIGEST_BYTES), frozenset(ids))

    def reply(self, have: bytes | None) -> DigestReply:
        if have == self.tag:
            return DigestReply(same=True)
        return DigestReply(self.tag, self.bloom.hashes, self.count, self.bloom.bits)


@dataclass(slots=True)
class _Entry:
    tag: bytes
    bloom: BloomFilter
    fetched_at: float
    interval: float  # seconds until the next pull is due
    node_id: str | None  # the host's node id, as its record names it (None when not given)
    pushed: bool = False  # the host has pushed its digest here: this node is subscribed to it


class DigestBook:
    """The digests of known hosts, at most ``max_bytes`` bytes of filters in all (further ones are not kept).

    Pulls back off: a host whose digest came back unchanged is next due after twice the previous interval,
    from ``interval`` up to ``max_interval`` seconds; a changed digest resets it to ``interval``. Digests
    change only when a host gains or loses an item, so in a steady network the pulls fade to one per host per
    ``max_interval``, and a digest is never staler than that.

    A host that advertises the tag of what it keeps (``kept`` in its host-quality record, passed to
    :meth:`due` as ``advertised``) is pulled only when a record newer than the digest kept for it names
    another tag (and ``interval`` has passed since the last pull): a digest whose tag matches is current,
    whatever its age. So in a steady network such hosts are not pulled at all, and a digest is as fresh as
    the host's last record.

    A host that has **pushed** its digest here (a subscription: it pushes each change) is pulled on an
    advertised change only once ``max_interval`` has passed since its digest last arrived: its pushes keep the
    digest current, and a pull would only race the next push (the host coalesces its pushes, and skips a
    subscriber that is a member of every group that changed). The pull that late is the safety net for a
    subscription the host dropped without saying so (its list of subscribers was full).

    Digests are found by address, and by the node id that the host's record named when it was pulled
    (:meth:`address_of`, one dictionary look-up: how a push finds its sender).
    """

    def __init__(self, max_bytes: int, *, interval: float = 10.0, max_interval: float = 160.0) -> None:
        self.max_bytes = max_bytes
        self.interval = interval
        self.max_interval = max(interval, max_interval)
        self._entries: dict[PeerAddress, _Entry] = {}
        self._addresses: dict[str, PeerAddress] = {}  # node id -> address, for the entries that name one
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        """Bytes of filters kept."""
        return self._bytes

    def tag(self, address: PeerAddress) -> bytes | None:
        entry = self._entries.get(address)
        return entry.tag if entry else None

    def address_of(self, node_id: str) -> PeerAddress | None:
        """The address of the host with node id ``node_id`` whose digest is kept, or ``None``."""
        return self._addresses.get(node_id)

    def due(self, address: PeerAddress, now: float, advertised: bytes | None = None,
            seen_at: float = float("inf")) -> bool:
        """Whether the host's digest should be pulled now: never pulled; or, given the tag it ``advertised``
        in a record of time ``seen_at``, that tag is another than the kept digest's, the record is newer than
        the digest, and ``interval`` (``max_interval`` for a host that pushes) has passed; or else (no tag) its
        backoff interval (``max_interval`` for a host that pushes) has passed."""
        entry = self._entries.get(address)
        if entry is None:
            return True
        if advertised is not None:
            wait = self.max_interval if entry.pushed else self.interval
            return advertised != entry.tag and seen_at > entry.fetched_at and now - entry.fetched_at >= 0.9 * wait
        return now - entry.fetched_at >= 0.9 * (self.max_interval if entry.pushed else entry.interval)

    def update(self, address: PeerAddress, reply: DigestReply, now: float, *, node_id: str | None = None,
               pushed: bool = False) -> bool:
        """Record ``reply`` from ``address`` (``node_id``: the node id its record names; ``pushed``: the host
        sent it unasked); returns whether a digest for it is now kept."""
        entry = self._entries.get(address)
        if reply.same or (entry is not None and reply.tag == entry.tag):
            if entry is not None:
                entry.fetched_at = now
                entry.interval = min(self.max_interval, 2 * entry.interval)
                entry.pushed = entry.pushed or pushed
            return entry is not None
        size = len(reply.bits)
        old = entry.bloom.nbits // 8 if entry else 0
        if self._bytes - old + size > self.max_bytes:
            self.forget(address)
            return False
        if entry is not None:
            node_id, pushed = node_id or entry.node_id, pushed or entry.pushed
            if entry.node_id is not None and entry.node_id != node_id:
                self._addresses.pop(entry.node_id, None)
        self._entries[address] = _Entry(reply.tag, BloomFilter(reply.bits, reply.hashes), now, self.interval,
                                        node_id, pushed)
        if node_id is not None:
            self._addresses[node_id] = address
        self._bytes += size - old
        return True

    def forget(self, address: PeerAddress) -> None:
        entry = self._entries.pop(address, None)
        if entry is not None:
            self._bytes -= entry.bloom.nbits // 8
            if entry.node_id is not None and self._addresses.get(entry.node_id) == address:
                del self._addresses[entry.node_id]

    def prune(self, keep: set[PeerAddress]) -> None:
        """Drop the digests of hosts no longer known."""
        for address in [a for a in self._entries if a not in keep]:
            self.forget(address)

    def matching(self, content_id: str, among: Iterable[PeerAddress]) -> list[PeerAddress]:
        """The addresses in ``among`` whose digest says they may hold ``content_id``."""
        out = []
        for address in among:
            entry = self._entries.get(address)
            if entry is not None and content_id in entry.bloom:
                out.append(address)
        return out
