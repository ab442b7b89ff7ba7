"""Options of the ``bfs`` retrieval driver (units: seconds, hops, counts). The defaults were chosen by the
IR1 measurements in ``benchmarks/retrieval.py``; this package's README gives the numbers."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from butter.pacing import PacingOptions

from ._messages import MAX_TTL

__all__ = ["BfsOptions", "Ring"]


class Ring(BaseModel):
    """One round of the expanding ring: hop limit ``ttl`` (``None``: no limit) and fan-out ``fraction``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    ttl: int | None = Field(..., ge=1, le=MAX_TTL, description="hops; None: no limit")
    fraction: float = Field(..., gt=0, le=1, description="share of its known hosts each node returns")


def _default_rings() -> list[Ring]:
    return [Ring(ttl=4, fraction=0.5), Ring(ttl=None, fraction=1.0)]


class BfsOptions(PacingOptions):
    model_config = ConfigDict(extra="forbid")
    rings: list[Ring] = Field(
        default_factory=_default_rings,
        min_length=1,
        max_length=8,
        description="search rounds, each run only when the previous one failed (expanding ring)",
    )
    parallelism: int = Field(4, ge=1, le=1024, description="search requests in flight at once")
    hints: bool = Field(True, description="use peers' digests: ask first the hosts whose digest matches")
    digest_interval: float = Field(
        10.0, gt=0, description="seconds before a host's digest is pulled again after it changed"
    )
    digest_max_interval: float = Field(
        160.0, gt=0, description="seconds between pulls of a digest that keeps coming back unchanged, at most"
    )
    digest_push_interval: float = Field(
        5.0, ge=0, description="seconds between two pushes of this node's digest to its subscribers, at least: the "
        "changes of one interval go as one push"
    )
    digest_memory: int = Field(16 * 1024 * 1024, ge=0, description="bytes of peers' digests kept, at most")
    digest_fp_rate: float = Field(0.01, gt=0, lt=1, description="false-positive rate this node's digest is sized for")
    max_hints: int = Field(8, ge=0, le=1024, description="digest-matching hosts named in one miss reply")
    max_sample: int = Field(64, ge=1, le=1024, description="addresses in one miss reply, at most")
    max_frontier: int = Field(10_000, ge=16, description="addresses a search keeps queued, at most")
    retrieve_timeout: float = Field(
        30.0, gt=0, description="seconds a retrieval may take, search and fetching together, when the caller gives "
        "no timeout; a missing item is reported not found within it (stream(): finding the item, then each "
        "window of blocks)"
    )
    query_timeout: float = Field(3.0, gt=0, description="seconds to wait for one search reply")
    fetch_timeout: float = Field(10.0, gt=0, description="seconds to wait for one block")
    fetch_concurrency: int = Field(8, ge=1, le=256, description="blocks fetched in parallel by retrieve()")
    stream_window: int = Field(16, ge=1, le=1024, description="blocks in flight (and held) by stream()")
    seen_capacity: int = Field(4096, ge=16, description="query ids remembered for duplicate suppression")
    seen_expiry: float = Field(120.0, gt=0, description="seconds a handled query id is remembered")
    max_concurrency: int = Field(8, ge=1, description="digest pulls in flight at once")
    seed: int | None = Field(None, description="random seed, for reproducible simulations")

    @model_validator(mode="after")
    def _rings_widen(self) -> BfsOptions:
        for before, after in zip(self.rings, self.rings[1:], strict=False):
            wider_ttl = after.ttl is None or (before.ttl is not None and after.ttl >= before.ttl)
            if not wider_ttl or after.fraction < before.fraction:
                raise ValueError("each ring must have a TTL and fraction at least as large as the one before")
        return self
