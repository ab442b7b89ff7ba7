"""A visiting schedule with a budget, sans-IO: which keys (passive known hosts) to poll, and when.

Rules:

* Every key is due once per *round*: ``max(interval, len(self) / rate)`` seconds after its last visit (or,
  for a key just added, after the wait given to :meth:`Sweep.add`), stretched by a random factor in
  [0.8, 1.2] so that keys added together drift apart. So a short list is visited every ``interval``
  seconds, and a list longer than ``interval × rate`` keys more slowly, in rounds that grow with it.
* :meth:`Sweep.due` hands out at most ``rate`` keys per second on average, the earliest due first (a key
  left over waits for the next slot, at most one slot's credit is kept while nothing is due): the visits
  cost at most ``rate`` per second however many keys there are.

Times are seconds on any monotonic clock the caller likes (the host manager uses ``anyio.current_time()``).
This is the budgeted poll of a passive view; the active/passive split is after HyParView (Leitão, Pereira
and Rodrigues, DSN 2007), where the passive view is kept without contact and checked only when needed.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["Sweep"]

K = TypeVar("K", bound=Hashable)
JITTER = 0.2


class Sweep(Generic[K]):
    """The schedule described in the module docstring: ``interval`` seconds (> 0) between two visits of a
    key at least, ``rate`` visits per second (> 0) at most; ``rng`` draws the jitter (seed it for
    simulations). Raises :class:`ValueError` for a non-positive ``interval`` or ``rate``."""

    def __init__(self, interval: float, rate: float, rng: random.Random | None = None) -> None:
        if interval <= 0 or rate <= 0:
            raise ValueError("need interval > 0 and rate > 0")
        self.interval, self.rate = interval, rate
        self._rng = rng or random.Random()
        self._at: dict[K, float] = {}  # key -> when it is next due
        self._heap: list[tuple[float, int, K]] = []  # (due at, tie-break, key); stale items are skipped
        self._order = itertools.count()
        self._slot = float("-inf")  # the earliest time the next visit may be handed out

    def __contains__(self, key: object) -> bool:
        return key in self._at

    def __len__(self) -> int:
        return len(self._at)

    def round(self) -> float:
        """Seconds between two visits of a key, before jitter: ``max(interval, len(self) / rate)``."""
        return max(self.interval, len(self._at) / self.rate)

    def add(self, key: K, now: float, wait: float | None = None) -> None:
        """Schedule ``key`` (again), due in ``wait`` seconds (default: one :meth:`round`, jittered)."""
        at = now + (self._stretch(self.round()) if wait is None else wait)
        self._at[key] = at
        heapq.heappush(self._heap, (at, next(self._order), key))
        if len(self._heap) > 2 * len(self._at) + 64:
            self._heap = [item for item in self._heap if self._at.get(item[2]) == item[0]]
            heapq.heapify(self._heap)

    def discard(self, key: K) -> None:
        """Forget ``key``; absent: no-op."""
        self._at.pop(key, None)

    def due_at(self, key: K) -> float:
        """When ``key`` is next due (``inf`` when it is not scheduled)."""
        return self._at.get(key, float("inf"))

    def next_due(self) -> float:
        """When :meth:`due` will next hand out a key (``inf`` when none is scheduled)."""
        while self._heap:
            at, _, key = self._heap[0]
            if self._at.get(key) == at:
                return max(at, self._slot)
            heapq.heappop(self._heap)
        return float("inf")

    def due(self, now: float) -> list[K]:
        """The keys to visit at ``now``, earliest due first, as many as the budget allows; each is
        rescheduled one round later."""
        slot = max(self._slot, now - 1 / self.rate)
        ready: list[K] = []
        while self._heap and self._heap[0][0] <= now and slot <= now:
            at, _, key = heapq.heappop(self._heap)
            if self._at.get(key) != at:
                continue
            ready.append(key)
            slot += 1 / self.rate
        self._slot = slot
        for key in ready:
            self.add(key, now)
        return ready

    def _stretch(self, interval: float) -> float:
        return interval * self._rng.uniform(1 - JITTER, 1 + JITTER)
