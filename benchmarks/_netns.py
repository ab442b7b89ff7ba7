"""What the network-namespace benchmarks (``discovery.py``, ``wider.py``, ``faults.py``) share: the test
harness and its kits, loaded by path, and a nearest-rank percentile."""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def load_harness() -> Any:
    """``tests/netns/harness.py`` by path (``tests`` is not an installed package)."""
    spec = importlib.util.spec_from_file_location("butter_netns_harness", ROOT / "tests" / "netns" / "harness.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def load_netns_module(name: str) -> Any:
    """Module ``tests/netns/<name>.py`` as ``netns.<name>`` (``tests/netns`` is a namespace package here, so
    the kits' relative imports of the harness work)."""
    tests = str(ROOT / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    return importlib.import_module(f"netns.{name}")


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0-100) of ``values``; ``None`` when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def rounded(value: float | None) -> float | None:
    """``value`` to the millisecond (3 decimals), ``None`` kept."""
    return None if value is None else round(value, 3)
