"""A retry schedule with exponential backoff, sans-IO: which lost peers (or other keys) to try again, and when.

Rules:

* A key added at time *t* is first due at *t* + ``first`` seconds. Each time :meth:`Backoff.due` returns it,
  its next attempt is pushed out by an interval that doubles (or grows by another ``factor``), from ``first``
  up to ``max_interval``, each
  stretched by a random factor in [0.8, 1.2] so that peers that lost each other together do not retry in step.
* A key is forgotten ``expiry`` seconds after it was added (the schedule's, or the key's own given to
  :meth:`Backoff.add`; ``float("inf")``: never), or when :meth:`Backoff.discard` is called (it was reached,
  or is no longer wanted).
* At most ``capacity`` keys are kept; adding one more forgets the one added first.
* :meth:`Backoff.hurry` makes every key due at once and starts its backoff over.

Times are seconds on any monotonic clock the caller likes (the drivers use ``anyio.current_time()``).
"""

from __future__ import annotations

import random
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Backoff"]

K = TypeVar("K", bound=Hashable)
JITTER = 0.2


@dataclass(slots=True)
class _Entry:
    expires_at: float
    next_at: float
    interval: float


class Backoff(Generic[K]):
    """The schedule described in the module docstring; ``rng`` draws the jitter (seed it for simulations)."""

    def __init__(
        self, first: float, max_interval: float, expiry: float, capacity: int, rng: random.Random | None = None,
        *, factor: float = 2.0,
    ) -> None:
        if not 0 < first <= max_interval or expiry <= 0 or capacity < 1 or factor <= 1:
            raise ValueError("need 0 < first <= max_interval, expiry > 0, capacity >= 1 and factor > 1")
        self.first, self.max_interval, self.expiry, self.capacity = first, max_interval, expiry, capacity
        self.factor = factor
        self._rng = rng or random.Random()
        self._entries: dict[K, _Entry] = {}

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, key: K, now: float, *, expiry: float | None = None) -> None:
        """Schedule ``key``, first due in ``first`` seconds and forgotten after ``expiry`` seconds (default:
        the schedule's); a key already scheduled keeps its schedule."""
        if key in self._entries:
            return
        if len(self._entries) >= self.capacity:
            del self._entries[next(iter(self._entries))]
        lifetime = self.expiry if expiry is None else expiry
        self._entries[key] = _Entry(now + lifetime, now + self._stretch(self.first), self.first)

    def discard(self, key: K) -> None:
        """Forget ``key``; absent: no-op."""
        self._entries.pop(key, None)

    def hurry(self, now: float) -> None:
        """Make every key due at ``now`` and start its backoff over from ``first`` (something suggests they
        are back: a failed attempt is retried soon)."""
        for entry in self._entries.values():
            entry.next_at, entry.interval = min(entry.next_at, now), self.first / self.factor

    def due(self, now: float) -> list[K]:
        """The keys due at ``now``, each rescheduled one (doubled) interval later; expired keys are forgotten."""
        for key in [k for k, e in self._entries.items() if now >= e.expires_at]:
            del self._entries[key]
        ready = [k for k, e in self._entries.items() if e.next_at <= now]
        for key in ready:
            entry = self._entries[key]
            entry.interval = min(self.max_interval, entry.interval * self.factor)
            entry.next_at = now + self._stretch(entry.interval)
        return ready

    def due_at(self, key: K) -> float:
        """When ``key`` is next due (``inf`` when it is not scheduled)."""
        entry = self._entries.get(key)
        return float("inf") if entry is None else entry.next_at

    def next_due(self) -> float:
        """When the earliest key is due (``inf`` when none is scheduled)."""
        return min((e.next_at for e in self._entries.values()), default=float("inf"))

    def _stretch(self, interval: float) -> float:
        return interval * self._rng.uniform(1 - JITTER, 1 + JITTER)
