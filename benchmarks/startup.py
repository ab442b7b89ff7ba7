"""Start-up benchmark: how long the ``butter`` command takes before it does anything, against the interpreter.

Run::

    python benchmarks/startup.py [--runs 10] [--out benchmarks/results/startup.json]

Each command is started ``--runs`` times as a fresh process (interleaved, so that a burst of load on a shared
machine hits every command alike) and its wall time from ``Popen`` to exit is recorded; the figure is the
median, in seconds. The CPU time each used (user + system, from ``getrusage``) is recorded beside it: it
hardly depends on what else the machine runs, so it is the steadier figure on a shared machine. The
commands:

* ``python -c pass``: the interpreter's own start, the baseline;
* ``python -c "import butter"``: the library's import (the public API a dapp uses);
* ``butter --help``: the CLI parsing its commands, nothing run;
* ``butter plugins``: the installed drivers, read from package metadata (none imported).

``butter`` is run as ``python -m butter.cli`` with this interpreter, so the figure does not depend on which
``butter`` script is first on PATH. The target is each command at most 0.5 s above the baseline
(``over_baseline`` in the results). Nothing here opens a socket; ``butter plugins`` runs in an empty
temporary directory with every ``BUTTER_*`` variable removed, so that no ``butter.toml`` is read.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

TARGET_OVER_BASELINE = 0.5  # seconds

COMMANDS: dict[str, list[str]] = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "python -c 'import butter'": [sys.executable, "-c", "import butter"],
    "butter --help": [sys.executable, "-m", "butter.cli", "--help"],
    "butter plugins": [sys.executable, "-m", "butter.cli", "plugins"],
}
BASELINE = "python -c pass"


def time_once(argv: list[str], cwd: str, env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds from start to exit of ``argv`` and the CPU seconds (user + system) it used; raises
    ``RuntimeError`` with its output if it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {result.returncode}: {result.stdout.decode(errors='replace')}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(runs: int) -> dict[str, dict[str, float | list[float]]]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("BUTTER_")}
    env["COLUMNS"] = "120"
    # As installed by pip (which compiles bytecode): the warm-up run writes __pycache__, later runs read it.
    # With PYTHONDONTWRITEBYTECODE set every run compiles each module from source (about 0.4 s more).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    wall: dict[str, list[float]] = {name: [] for name in COMMANDS}
    cpu: dict[str, list[float]] = {name: [] for name in COMMANDS}
    with tempfile.TemporaryDirectory() as cwd:
        for argv in COMMANDS.values():  # one warm-up each: the first run pays for cold file caches
            time_once(argv, cwd, env)
        for _ in range(runs):
            for name, argv in COMMANDS.items():
                elapsed, used = time_once(argv, cwd, env)
                wall[name].append(elapsed)
                cpu[name].append(used)
    baseline = statistics.median(wall[BASELINE])
    cpu_baseline = statistics.median(cpu[BASELINE])
    return {
        name: {
            "median": round(statistics.median(wall[name]), 4),
            "min": round(min(wall[name]), 4),
            "over_baseline": round(statistics.median(wall[name]) - baseline, 4),
            "cpu_median": round(statistics.median(cpu[name]), 4),
            "cpu_over_baseline": round(statistics.median(cpu[name]) - cpu_baseline, 4),
            "runs": [round(value, 4) for value in wall[name]],
        }
        for name in COMMANDS
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="runs per command; the figure is the median")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "startup.json")
    args = parser.parse_args()
    results = measure(max(1, args.runs))
    report = {
        "benchmark": "startup",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "runs": args.runs,
        "target_over_baseline": TARGET_OVER_BASELINE,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'command':28} {'median s':>9} {'min s':>7} {'over python':>12} {'CPU s':>7} {'CPU over':>9}")
    for name, row in results.items():
        verdict = "" if name == BASELINE else ("  ok" if row["over_baseline"] <= TARGET_OVER_BASELINE else "  SLOW")
        print(f"{name:28} {row['median']:9.3f} {row['min']:7.3f} {row['over_baseline']:12.3f} "
              f"{row['cpu_median']:7.3f} {row['cpu_over_baseline']:9.3f}{verdict}")
    print(f"load average {report['load_average']}; written to {args.out}")


if __name__ == "__main__":
    main()
