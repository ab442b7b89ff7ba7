"""The churn simulator is reproducible: a seeded run gives the same result however busy the machine is.

Each run below is compared field by field (retention, replicas, deaths, request and maintenance rates, the
timeline); only ``wall_seconds`` may differ. One run is made while a CPU hog thread (contending for the GIL)
and a CPU hog process (contending for the cores) run beside it.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from butter.testing.sim import ChurnConfig, ChurnResult, run_churn_sync

SMALL = ChurnConfig(nodes=12, death_rate=0.04, churn=10.0, warmup=5.0, settle=10.0, grace=5.0, seed=7)
HOG_SECONDS = 120  # the hog process ends by itself even if the test is killed


def _outcome(result: ChurnResult) -> dict[str, Any]:
    out = result.to_json()
    del out["wall_seconds"]
    return out


@contextmanager
def _cpu_hogs() -> Iterator[None]:
    """A busy thread in this process and a busy process beside it, both stopped on exit."""
    stop = threading.Event()

    def spin() -> None:
        n = 0
        while not stop.is_set():
            n += 1

    thread = threading.Thread(target=spin, daemon=True)
    spin_for = f"import time\nend = time.monotonic() + {HOG_SECONDS}\nwhile time.monotonic() < end: pass"
    hog = subprocess.Popen([sys.executable, "-c", spin_for])
    thread.start()
    try:
        yield
    finally:
        stop.set()
        hog.kill()
        hog.wait()
        thread.join()


def test_a_seeded_run_gives_the_same_result_on_an_idle_and_a_busy_machine() -> None:
    quiet = run_churn_sync(SMALL)
    with _cpu_hogs():
        busy = run_churn_sync(SMALL)
    assert quiet.deaths > 0 and quiet.requests_per_node_second > 0  # the run did churn and talk
    assert _outcome(busy) == _outcome(quiet)


def test_another_seed_gives_another_run() -> None:
    from dataclasses import replace

    first, other = run_churn_sync(SMALL), run_churn_sync(replace(SMALL, seed=8))
    assert _outcome(first) != _outcome(other)
