"""How long ``butter demo`` should take, said before it starts and corrected as it goes.

The estimate is the work of each phase (items stored, replicated, re-recruited after kills, retrieved) times
per-item costs measured on a reference machine (:data:`COST`), scaled by how slow this machine is now (a
fixed piece of work, :func:`work_sample`, timed against the reference's), plus the waits that do not depend
on the machine (the repair time after each kill). As phases end, the slowness measured in this run replaces
the guess, and during the kills the time the kills took so far predicts the rest.
"""

from __future__ import annotations

import hashlib
import statistics
import time

import msgpack

__all__ = ["COST", "PHASES", "REFERENCE_SAMPLE", "Forecast", "duration", "work_sample"]

PHASES = ("overlay", "store", "replicate", "churn", "retrieve")

# Seconds per unit at slowness 1.0, from a run of ``butter demo`` (tcp, 20 nodes, 6 killed, the Python 3.11
# standard library: 1,790 files, 1,744 distinct items, 31.5 MB) on a 2-core machine shared with other work:
# replicate 21.9 s, churn 30.2 s, retrieve 14.0 s, 68.7 s in all; work_sample() 0.0071 s. "repair" is per replica
# lost in a kill: every group was back at 3 replicas within the repair wait after each kill, so a kill costs
# the wait alone unless the machine is far slower.
REFERENCE_SAMPLE = 0.01
COST = {"store": 0.0003, "replicate": 0.0177, "repair": 0.001, "retrieve": 0.0113}
OVERLAY_PER_NODE = 0.2  # seconds: starting a node and the known-host exchanges (waiting, mostly)
RETRIEVE_WAIT = 1.0  # seconds the reader waits before retrieving
MIN_WORK = 0.5  # seconds of reference work a phase needs before its time says anything about the machine


def work_sample() -> float:
    """Seconds this machine takes now for a fixed piece of work like a node's (hashing and encoding 2,000
    blocks of 4 KiB): the median of 5 runs; 0.008 s to 0.02 s on the reference machine, idle to busy."""
    block = bytes(4096)

    def once() -> float:
        start = time.perf_counter()
        for i in range(2000):
            hashlib.sha256(block).digest()
            msgpack.unpackb(msgpack.packb({"id": i, "route": "fetch-block", "body": block}))
        return time.perf_counter() - start

    return statistics.median(once() for _ in range(5))


class Forecast:
    """The demo's duration: ``nodes`` started, ``items`` stored, ``kills`` nodes killed one after another
    (each followed by ``repair`` seconds of waiting at least), on a machine ``slowness`` times slower than
    the reference (``work_sample() / REFERENCE_SAMPLE``). All figures are seconds."""

    def __init__(self, *, nodes: int, items: int, kills: int, repair: float, slowness: float) -> None:
        self.nodes, self.items, self.kills, self.repair = nodes, items, kills, repair
        self.slowness = slowness
        self.done: dict[str, float] = {}
        self.kill_times: list[float] = []
        self._measured: list[tuple[float, float]] = []  # (seconds of work measured, seconds at slowness 1.0)

    def work(self, phase: str) -> float:
        """Seconds of ``phase``'s work at slowness 1.0, waits excluded."""
        lost_per_kill = self.items * 3 / max(self.nodes - self.kills / 2, 1)  # replicas on a dying node
        return {
            "overlay": 0.0,
            "store": self.items * COST["store"],
            "replicate": self.items * COST["replicate"],
            "churn": self.kills * lost_per_kill * COST["repair"],
            "retrieve": self.items * COST["retrieve"],
        }[phase]

    def wait(self, phase: str) -> float:
        """Seconds ``phase`` spends waiting whatever the machine's speed."""
        return {"overlay": self.nodes * OVERLAY_PER_NODE, "churn": self.kills * self.repair,
                "retrieve": RETRIEVE_WAIT}.get(phase, 0.0)

    def left_of(self, phase: str) -> float:
        """Seconds ``phase`` should still take: all of it before it starts; for the kills under way, the
        mean of those done so far times the kills left."""
        if phase in self.done:
            return 0.0
        if phase == "churn" and self.kill_times:
            return statistics.fmean(self.kill_times) * (self.kills - len(self.kill_times))
        return self.wait(phase) + self.work(phase) * self.slowness

    def remaining(self) -> float:
        return sum(self.left_of(phase) for phase in PHASES)

    def observe(self, phase: str, seconds: float) -> None:
        """``phase`` took ``seconds``: from now on the slowness is the one this run's phases showed."""
        self.done[phase] = seconds
        work = self.work(phase)
        if work >= MIN_WORK:
            self._measured.append((max(seconds - self.wait(phase), 0.0), work))
            self.slowness = max(sum(m for m, _ in self._measured) / sum(w for _, w in self._measured), 0.1)

    def observe_kill(self, seconds: float) -> None:
        """One kill, its repair wait included, took ``seconds``."""
        self.kill_times.append(seconds)


def duration(seconds: float) -> str:
    """``"45 s"``, ``"about 3 min"``, ``"about 1 h 5 min"``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"about {minutes} min" if minutes < 60 else f"about {minutes // 60} h {minutes % 60} min"
