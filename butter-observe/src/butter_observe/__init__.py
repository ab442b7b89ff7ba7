"""butter-observe: seeing a Butter overlay.

* the ``observe`` observer plugin (:class:`ObservePlugin`, entry point ``butter.plugins:observe``): a
  **tracker** writing each node's snapshot to SQLite or PostgreSQL every 10 s, Prometheus **metrics** on
  ``/metrics``, and route ``stats``; all off until the setting ``plugins.observe`` turns them on;
* commands ``butter stats HOST:PORT`` and ``butter graph`` (GraphML and a self-contained HTML page),
  registered on the ``butter`` command through entry point ``butter.commands:observe``.
"""

from ._database import SCHEMA_VERSION, Database, open_database
from ._metrics import NodeMetrics, serve_metrics
from ._plugin import ObservePlugin
from ._snapshot import GroupView, HostView, Snapshot, take_snapshot
from ._stats import ask_stats, serve_stats
from ._tracker import Tracker, TrackerStats

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
