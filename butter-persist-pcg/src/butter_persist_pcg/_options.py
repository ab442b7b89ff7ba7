"""Options of the ``pcg`` persistence driver (units: seconds, counts)."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from butter.pacing import PacingOptions

__all__ = ["PcgOptions"]


class PcgOptions(PacingOptions):
    model_config = ConfigDict(extra="forbid")
    replicas: int = Field(3, ge=1, le=64, description="target replicas r per item")
    heartbeat_interval: float = Field(2.0, gt=0, description="seconds between heartbeat rounds")
    member_timeout: float | None = Field(
        None, gt=0, description="seconds without a heartbeat before a member is dropped; default 2.5 intervals"
    )
    palpitation: float = Field(0.1, ge=0, le=1, description="chance a round comes early, at random")
    hot_ticks: int = Field(2, ge=1, description="rounds a group must stay hot before the leader sheds")
    max_replicas: int = Field(8, ge=1, description="cap on the popularity-raised target")
    popularity_hits: int = Field(20, ge=0, description="hits per window that add one replica; 0 disables")
    popularity_window: float = Field(60.0, gt=0, description="seconds over which hits are counted")
    heartbeat_timeout: float = Field(5.0, gt=0, description="seconds for one heartbeat or leave request")
    fetch_timeout: float = Field(5.0, gt=0, description="seconds for one block fetched by a recruit")
    join_timeout: float = Field(
        15.0, gt=0, description="seconds a pcg-join request may take (the recruit fetches its items, in parallel)")
    prefer_partners: bool = Field(
        True, description="recruit, within a diversity class, the hosts already sharing the most groups with this "
        "node first: a node's heartbeats then stay nearly constant as it keeps more items (copysets)"
    )
    max_join_attempts: int = Field(8, ge=1, description="candidates a leader invites per round and group")
    fetch_concurrency: int = Field(8, ge=1, description="blocks a recruit fetches in parallel")
    max_joins: int = Field(
        8, ge=1, description="invitations this node serves at once (each fetches an item); one more is answered "
        "'joins-full' at once, so its inviter invites another candidate instead of waiting out join_timeout; also "
        "the most invitations it puts in one pcg-join request"
    )
    max_concurrency: int = Field(64, ge=1, description="heartbeats in flight at once")
    max_jobs: int = Field(
        8, ge=1, description="recruit, shed and repair jobs under way at once; more groups wait their turn (each "
        "recruit makes its invitees fetch an item: many at once overload them and time out)"
    )
    lost_expiry: float = Field(600.0, gt=0, description="seconds a lost member keeps being probed again")
    scrub_blocks: int = Field(64, ge=0, description="blocks re-read and verified per round (rolling scrub); 0: off")
    seed: int | None = Field(None, description="random seed, for reproducible simulations")
