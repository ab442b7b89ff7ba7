"""butter-observe: seeing a Butter overlay.

* the ``observe`` observer plugin (:class:`ObservePlugin`, entry point ``butter.plugins:observe``): a
  **tracker** writing each node's snapshot to SQLite or PostgreSQL every 10 s, Prometheus **metrics** on
  ``/metrics``, and route ``stats``; all off until the setting ``plugins.observe`` turns them on;
* commands ``butter stats HOST:PORT`` and ``butter graph`` (GraphML and a self-contained HTML page),
  registered on the ``butter`` command through entry point ``butter.commands:observe``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._database import SCHEMA_VERSION, Database, open_database
    from ._metrics import NodeMetrics, serve_metrics
    from ._plugin import ObservePlugin
    from ._snapshot import GroupView, HostView, Snapshot, take_snapshot
    from ._stats import ask_stats, serve_stats
    from ._tracker import Tracker, TrackerStats

_HOMES = {
    "SCHEMA_VERSION": "_database", "Database": "_database", "open_database": "_database",
    "NodeMetrics": "_metrics", "serve_metrics": "_metrics", "ObservePlugin": "_plugin",
    "GroupView": "_snapshot", "HostView": "_snapshot", "Snapshot": "_snapshot", "take_snapshot": "_snapshot",
    "ask_stats": "_stats", "serve_stats": "_stats", "Tracker": "_tracker", "TrackerStats": "_tracker",
}


def __getattr__(name: str) -> Any:
    """Import a public name on first use (PEP 562), so that loading the ``butter`` command's entry point
    (``butter_observe._cli``) does not import the tracker, metrics and database code."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "SCHEMA_VERSION",
    "Database",
    "GroupView",
    "HostView",
    "NodeMetrics",
    "ObservePlugin",
    "Snapshot",
    "Tracker",
    "TrackerStats",
    "ask_stats",
    "open_database",
    "serve_metrics",
    "serve_stats",
    "take_snapshot",
]
