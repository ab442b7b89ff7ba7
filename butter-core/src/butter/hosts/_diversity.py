"""The diversity optimiser, sans-IO: which candidate to admit and which host to evict.

Rules, in order (the report's design made to work):

1. A host already known is not admitted twice.
2. Below capacity, every candidate is admitted (greedy).
3. At capacity, a host that would otherwise be unknown to the network (it reports ``known_hosts == 0`` or
   ``known_by == 0``) is admitted, evicting a host that others know too (nobody is left unknown).
4. With probability ``random_factor`` a candidate is admitted at random, evicting a random host that others
   know too (for global diversity).
5. Otherwise hosts are put in 2³ = 8 classes (uptime, available storage, known hosts; "high" means ≥ the mean
   over the list plus the candidate). A candidate is admitted, evicting a random member of a most populated
   class, only when that makes the histogram strictly flatter: its class has at least two members fewer
   than the most populated one. (Admitting any candidate of a smaller class, as the original did, merely
   swaps hosts when the two counts differ by one, and endlessly churns a small list.)

Eviction never picks a host whose last record says ``known_by <= 1``, i.e. known by this node alone, when
it can be avoided: evicting it would orphan it. This is what turns the three-nodes, capacity-1 edge case
into the ring A→B→C→A instead of leaving one node unknown. The histogram is recomputed from
scratch for every decision (the original's incremental counters drifted and underflowed).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from ..peers import HostQuality, PeerInfo

__all__ = ["CLASS_NAMES", "Decision", "classify", "decide", "histogram"]

CLASS_NAMES = tuple(
    f"{u}Uptime{s}Storage{k}KH" for u in ("high", "low") for s in ("High", "Low") for k in ("High", "Low")
)


@dataclass(frozen=True, slots=True)
class Decision:
    """``admit`` the candidate or not; ``evict`` a host first (or ``None``); ``reason`` for logs."""

    admit: bool
    evict: PeerInfo | None
    reason: str


def _means(qualities: Sequence[HostQuality]) -> tuple[float, float, float]:
    if not qualities:
        return (0.0, 0.0, 0.0)
    n = len(qualities)
    return (
        sum(q.uptime for q in qualities) / n,
        sum(q.available_storage for q in qualities) / n,
        sum(q.known_hosts for q in qualities) / n,
    )


def classify(quality: HostQuality, means: tuple[float, float, float]) -> int:
    """Class index 0..7 (``CLASS_NAMES[index]``); a value equal to the mean counts as high."""
    uptime, storage, known = means
    return (
        (0 if quality.uptime >= uptime else 4)
        + (0 if quality.available_storage >= storage else 2)
        + (0 if quality.known_hosts >= known else 1)
    )


def histogram(hosts: Sequence[PeerInfo], extra: HostQuality | None = None) -> tuple[Counter[int], list[int]]:
    """Class counts of ``hosts`` and each host's class, with means taken over ``hosts`` (plus ``extra``)."""
    qualities = [h.quality for h in hosts] + ([extra] if extra is not None else [])
    means = _means(qualities)
    classes = [classify(h.quality, means) for h in hosts]
    return Counter(classes), classes


def decide(
    hosts: Sequence[PeerInfo], candidate: PeerInfo, capacity: int, random_factor: float, rng: random.Random
) -> Decision:
    """Apply the rules above to ``candidate`` given the current ``hosts`` (at most ``capacity``)."""
    if any(h.node_id == candidate.node_id for h in hosts):
        return Decision(False, None, "already known")
    if len(hosts) < capacity:
        return Decision(True, None, "room")
    shared = [h for h in hosts if h.quality.known_by >= 2]
    if candidate.quality.known_hosts == 0 or candidate.quality.known_by == 0:
        if shared:
            return Decision(True, rng.choice(shared), "candidate is otherwise unknown")
        return Decision(False, None, "candidate is otherwise unknown, but every host is known by us alone")
    if shared and rng.random() < random_factor:
        return Decision(True, rng.choice(shared), "random factor")
    counts, classes = histogram(hosts, candidate.quality)
    means = _means([h.quality for h in hosts] + [candidate.quality])
    candidate_class = classify(candidate.quality, means)
    biggest = max(counts.values())
    if counts[candidate_class] + 2 > biggest:
        return Decision(False, None, f"class {CLASS_NAMES[candidate_class]} would not make the list more diverse")
    in_biggest = [h for h, c in zip(hosts, classes, strict=True) if counts[c] == biggest]
    victims = [h for h in in_biggest if h.quality.known_by >= 2]
    if not victims:
        return Decision(False, None, "the most populated class holds only hosts known by us alone")
    return Decision(True, rng.choice(victims), f"adds class {CLASS_NAMES[candidate_class]}")
