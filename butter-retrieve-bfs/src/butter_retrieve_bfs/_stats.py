"""Message accounting per retrieval (for the IR1 benchmark and the demo summary)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["QueryStats", "RetrievalTotals"]


@dataclass(slots=True)
class QueryStats:
    """One call to ``retrieve`` or ``stream``, as the querier saw it.

    * ``search_requests`` / ``search_replies``: ``bfs-query`` requests sent / answers received (error
      replies included; requests abandoned when the search stopped early have none).
    * ``fetch_requests`` / ``fetch_replies``: the same for ``fetch-block`` (the manifest and data blocks).
    * ``nodes_asked``: distinct nodes asked over all rings; ``rings``: rings run; ``max_depth``: the deepest
      hop asked; ``ttl``: the hop limit of the last ring (``None``: unlimited).
    * ``holders``: holders learnt; ``corrupted``: blocks that failed verification; ``dead_reported``: hosts
      reported dead to host management; ``duplicates``: ``seen`` answers; ``overloaded``: ``overloaded``
      answers (the peer was busy: asked again later, never counted as a failure).
    * ``local``: served from this node's own store (no messages); ``found``: the item was returned.
    * ``timed_out``: the retrieval's deadline ended it; ``seconds``: elapsed on the node's clock (virtual
      under a mock clock).
    """

    content_id: str
    search_requests: int = 0
    search_replies: int = 0
    fetch_requests: int = 0
    fetch_replies: int = 0
    nodes_asked: int = 0
    rings: int = 0
    max_depth: int = 0
    ttl: int | None = None
    holders: int = 0
    corrupted: int = 0
    dead_reported: int = 0
    duplicates: int = 0
    overloaded: int = 0
    blocks: int = 0
    local: bool = False
    found: bool = False
    timed_out: bool = False
    seconds: float = 0.0
    error: str = ""

    @property
    def requests(self) -> int:
        """Every request this retrieval sent (search and fetch)."""
        return self.search_requests + self.fetch_requests

    @property
    def replies(self) -> int:
        return self.search_replies + self.fetch_replies

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["requests"], out["replies"] = self.requests, self.replies
        return out

    def summary(self) -> str:
        """One line for logs and demos."""
        where = "local" if self.local else f"{self.nodes_asked} nodes asked, {self.max_depth} hops"
        outcome = "found" if self.found else "not found"
        return (
            f"{self.content_id[:12]} {outcome} ({where}): {self.search_requests} search + {self.fetch_requests} "
            f"fetch requests, {self.replies} replies, {self.seconds * 1000:.0f} ms"
        )


@dataclass(slots=True)
class RetrievalTotals:
    """Counters since start over every retrieval of one node, plus its digest maintenance."""

    retrievals: int = 0
    found: int = 0
    local: int = 0
    search_requests: int = 0
    search_replies: int = 0
    fetch_requests: int = 0
    fetch_replies: int = 0
    overloaded: int = 0
    timed_out: int = 0
    digest_requests: int = 0
    digest_replies: int = 0
    digest_bytes: int = 0
    digest_pushes: int = 0  # this node's digest pushed to a known host (route bfs-digest-push)
    per_query: list[int] = field(default_factory=list, repr=False)  # requests of the last 1,000 retrievals

    def add(self, stats: QueryStats) -> None:
        self.retrievals += 1
        self.found += stats.found
        self.local += stats.local
        self.search_requests += stats.search_requests
        self.search_replies += stats.search_replies
        self.fetch_requests += stats.fetch_requests
        self.fetch_replies += stats.fetch_replies
        self.overloaded += stats.overloaded
        self.timed_out += stats.timed_out
        self.per_query.append(stats.requests)
        del self.per_query[:-1000]
