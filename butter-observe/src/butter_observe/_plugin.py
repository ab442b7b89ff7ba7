"""The ``observe`` observer plugin (entry point ``butter.plugins:observe``): loaded by every node where
butter-observe is installed, inert until its options (setting ``plugins.observe``) turn a part on."""

from __future__ import annotations

import logging

import anyio
from pydantic import BaseModel, ConfigDict, Field, field_validator

import butter
from butter.slots import NodeServices

from ._database import check_url
from ._metrics import NodeMetrics, serve_metrics
from ._stats import ROUTE, serve_stats
from ._tracker import Tracker

__all__ = ["ObservePlugin"]

log = logging.getLogger("butter.observe")


class ObservePlugin:
    """Tracker, metrics and the ``stats`` route for one node, each off by default (see :class:`Options`).

    Set in ``butter.toml`` under ``[butter.plugins.observe]``, as ``BUTTER_PLUGINS__OBSERVE__TRACKER_URL=...``
    or ``--plugins.observe.tracker_url ...``; ``butter node --tracker URL --metrics-port N --stats-route``
    are shortcuts. After start: ``tracker`` (a :class:`~butter_observe.Tracker` or ``None``), ``metrics``
    (:class:`~butter_observe.NodeMetrics` or ``None``) and ``metrics_port`` (the port bound, once listening).
    """

    class Options(BaseModel):
        """``tracker_url``: ``sqlite:PATH`` or ``postgresql://...``; empty (the default): no tracker.
        ``tracker_interval``: seconds between snapshots (jittered ±20 %). ``tracker_queue``: snapshots waiting
        for the database at most (the oldest is dropped). ``tracker_write_timeout``: seconds one connection or
        write may take. ``tracker_history_expiry``: seconds of snapshot history kept. ``metrics_port``: serve
        Prometheus ``/metrics`` on it (0: any free port; unset: no metrics) at ``metrics_host`` (loopback by
        default). ``stats_route``: answer route ``stats`` (``butter stats``, the ``butter graph`` crawl)."""

        model_config = ConfigDict(extra="forbid")
        tracker_url: str = ""
        tracker_interval: float = Field(10.0, gt=0)
        tracker_queue: int = Field(16, ge=1, le=10_000)
        tracker_write_timeout: float = Field(30.0, gt=0)
        tracker_history_expiry: float = Field(86400.0, ge=0)
        metrics_port: int | None = Field(None, ge=0, le=65535)
        metrics_host: str = "127.0.0.1"
        stats_route: bool = False

        @field_validator("tracker_url")
        @classmethod
        def _known_backend(cls, value: str) -> str:
            return check_url(value) if value else value

    def __init__(self, options: Options | None = None) -> None:
        self.options = options or self.Options()
        self.tracker: Tracker | None = None
        self.metrics: NodeMetrics | None = None
        self.metrics_port: int | None = None
        self.metrics_listening = anyio.Event()

    @butter.hookimpl
    def butter_node_started(self, node: NodeServices) -> None:
        options = self.options
        if options.stats_route:
            node.route(ROUTE, serve_stats)
        if options.tracker_url:
            self.tracker = Tracker(
                node, options.tracker_url, interval=options.tracker_interval, queue=options.tracker_queue,
                write_timeout=options.tracker_write_timeout, history_expiry=options.tracker_history_expiry,
            )
            node.spawn(self.tracker.run)
        if options.metrics_port is not None:
            self.metrics = NodeMetrics(node)
            node.subscribe(self.metrics)
            node.spawn(self._serve_metrics, self.metrics)

    async def _serve_metrics(self, metrics: NodeMetrics) -> None:
        def listening(port: int) -> None:
            self.metrics_port = port
            self.metrics_listening.set()

        try:
            await serve_metrics(metrics.registry, self.options.metrics_host, self.options.metrics_port or 0,
                                on_listening=listening)
        except OSError as exc:
            log.error("metrics: cannot listen on %s:%s: %s", self.options.metrics_host, self.options.metrics_port,
                      exc)
        finally:
            self.metrics_port = None
