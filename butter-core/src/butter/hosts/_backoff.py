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

import heapq
import itertools
import random
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Backoff"]

K = TypeVar("K", bound=Hashable)
JITTER = 0.2


@dataclass(slots=True, eq=False)
class _Entry:
    expires_at: float
    next_at: float
    interval: float


class Backoff(Generic[K]):
    """The schedule described in the module docstring; ``rng`` draws the jitter (seed it for simulations).

    Two heaps (next attempt, expiry) keep :meth:`due` and :meth:`next_due` at O(log n) a key that is due or
    expires, however many keys wait (a host manager polls hundreds of known hosts on one such schedule);
    a heap item whose key was discarded or rescheduled since is skipped when it comes up."""

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
        self._attempts: list[tuple[float, int, K, _Entry]] = []  # (next_at, tie-break, key, entry) heap
        self._expiries: list[tuple[float, int, K, _Entry]] = []  # (expires_at, tie-break, key, entry) heap
        self._order = itertools.count()

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, key: K, now: float, *, expiry: float | None = None, first: float | None = None) -> None:
        """Schedule ``key``, first due in ``first`` seconds (default: the schedule's; a longer one is as if
        the key had already come due at the shorter intervals) and forgotten after ``expiry`` seconds (default:
        the schedule's); a key already scheduled keeps its schedule."""
        if key in self._entries:
            return
        if len(self._entries) >= self.capacity:
            del self._entries[next(iter(self._entries))]
        lifetime = self.expiry if expiry is None else expiry
        wait = self.first if first is None else min(max(first, self.first), self.max_interval)
        entry = self._entries[key] = _Entry(now + lifetime, now + self._stretch(wait), wait)
        self._push(key, entry)
        if entry.expires_at != float("inf"):
            heapq.heappush(self._expiries, (entry.expires_at, next(self._order), key, entry))

    def discard(self, key: K) -> None:
        """Forget ``key``; absent: no-op."""
        self._entries.pop(key, None)

    def hurry(self, now: float) -> None:
        """Make every key due at ``now`` and start its backoff over from ``first`` (something suggests they
        are back: a failed attempt is retried soon)."""
        for entry in self._entries.values():
            entry.next_at, entry.interval = min(entry.next_at, now), self.first / self.factor
        self._attempts = [(e.next_at, next(self._order), k, e) for k, e in self._entries.items()]
        heapq.heapify(self._attempts)

    def due(self, now: float) -> list[K]:
        """The keys due at ``now``, each rescheduled one (doubled) interval later; expired keys are forgotten."""
        while self._expiries and self._expiries[0][0] <= now:
            _, _, key, entry = heapq.heappop(self._expiries)
            if self._entries.get(key) is entry:
                del self._entries[key]
        ready: list[K] = []
        while self._attempts and self._attempts[0][0] <= now:
            at, _, key, entry = heapq.heappop(self._attempts)
            if self._entries.get(key) is not entry or entry.next_at != at:
                continue  # discarded, or rescheduled since
            ready.append(key)
            entry.interval = min(self.max_interval, entry.interval * self.factor)
            entry.next_at = now + self._stretch(entry.interval)
            self._push(key, entry)
        return ready

    def due_at(self, key: K) -> float:
        """When ``key`` is next due (``inf`` when it is not scheduled)."""
        entry = self._entries.get(key)
        return float("inf") if entry is None else entry.next_at

    def next_due(self) -> float:
        """When the earliest key is due (``inf`` when none is scheduled)."""
        while self._attempts:
            at, _, key, entry = self._attempts[0]
            if self._entries.get(key) is entry and entry.next_at == at:
                return at
            heapq.heappop(self._attempts)
        return float("inf")

    def _push(self, key: K, entry: _Entry) -> None:
        heapq.heappush(self._attempts, (entry.next_at, next(self._order), key, entry))
        if len(self._attempts) + len(self._expiries) > 3 * len(self._entries) + 64:
            self._compact()

    def _compact(self) -> None:
        """Drop the heap items of keys discarded or rescheduled since (they would otherwise wait, the
        expiries up to ``expiry`` seconds, for their turn to be skipped)."""
        live = self._entries
        self._attempts = [i for i in self._attempts if live.get(i[2]) is i[3] and i[3].next_at == i[0]]
        self._expiries = [i for i in self._expiries if live.get(i[2]) is i[3]]
        heapq.heapify(self._attempts)
        heapq.heapify(self._expiries)

    def _stretch(self, interval: float) -> float:
        return interval * self._rng.uniform(1 - JITTER, 1 + JITTER)
