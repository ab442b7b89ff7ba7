"""Prometheus metrics of one node, served on ``/metrics`` from the node's own event loop.

prometheus-client rather than the OpenTelemetry SDK: the Prometheus text format is what operators scrape
either way, and prometheus-client is one pure-Python package with no dependencies (OTel's SDK, API and
Prometheus exporter are three, and pull in prometheus-client as well); a per-request observation is a dict
lookup and two additions.

Each node has its own :class:`~prometheus_client.CollectorRegistry` (many nodes share a process in tests
and ``butter demo``). Metrics (all prefixed ``butter_``):

* ``requests_total{route}``, ``request_errors_total{route,code}``, ``request_seconds{route}`` (a histogram):
  every request a handler answered, from the event ``butter_request_served``.
* ``known_hosts``, ``known_by``, ``uptime_seconds``, ``available_storage_bytes``, ``items_kept``,
  ``groups{state}``, ``groups_by_replicas{replicas}``: gauges read at scrape time.
* ``service_total{source,counter}``: every :class:`~butter.capabilities.Counters` of the node's services
  (``source`` is the service's class: retrieval queries and hops, discovery pings, PCG heartbeats, the tcp
  transport's connections accepted, refused by each cap, handshakes failed, ...); ``service_open{source,
  counter}``, a gauge, for those named ``*_open``, which are levels rather than counts (tcp's
  ``connections_open``).

The HTTP server (:mod:`butter_observe._http`) answers ``GET /metrics`` (anything else: 404). Scrapes run on
the node's loop, so they read the node's state without locks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

import butter
from butter.slots import NodeServices

from ._http import serve_http
from ._snapshot import take_snapshot

__all__ = ["NodeMetrics", "serve_metrics"]

log = logging.getLogger("butter.observe.metrics")

LEVEL_SUFFIX = "_open"  # a service counter so named is a level (e.g. tcp's connections_open): a gauge
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)  # seconds


class NodeMetrics(Collector):
    """The metrics of ``node`` in ``registry`` (see the module docstring). Subscribe it to the node
    (``node.subscribe(metrics)``) for the per-route figures."""

    def __init__(self, node: NodeServices) -> None:
        self.node = node
        self.registry = CollectorRegistry(auto_describe=False)
        self._requests = Counter("butter_requests", "Requests answered, by route.", ["route"], registry=self.registry)
        self._errors = Counter(
            "butter_request_errors", "Error replies, by route and error code.", ["route", "code"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "butter_request_seconds", "Seconds a route's handler took.", ["route"], buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(self)

    @butter.hookimpl
    def butter_request_served(self, node: NodeServices, route: str, seconds: float, error_code: str | None) -> None:
        self._requests.labels(route).inc()
        self._latency.labels(route).observe(seconds)
        if error_code is not None:
            self._errors.labels(route, error_code).inc()

    def collect(self) -> Iterator[Metric]:
        """The gauges and service counters, read now (called by the registry at each scrape)."""
        node = self.node
        try:
            snapshot = take_snapshot(node)
        except RuntimeError:  # not listening yet
            return
        for name, text, value in [
            ("butter_known_hosts", "Hosts in the known-host list.", len(node.hosts.peers())),
            ("butter_known_by", "Peers holding this node in their known hosts.", snapshot.known_by),
            ("butter_uptime_seconds", "Seconds since the node started listening.", snapshot.uptime),
            ("butter_available_storage_bytes", "Bytes of items the node can still accept.", snapshot.available_storage),
            ("butter_items_kept", "Items this node keeps alive.", snapshot.items),
        ]:
            yield GaugeMetricFamily(name, text, value=value)
        groups = GaugeMetricFamily("butter_groups", "Kept items' groups, by state.", labels=["state"])
        for state, count in sorted(snapshot.groups_by_state().items()):
            groups.add_metric([state], count)
        yield groups
        by_replicas = GaugeMetricFamily(
            "butter_groups_by_replicas", "Kept items' groups, by replicas in view.", labels=["replicas"]
        )
        replicas: dict[int, int] = {}
        for group in snapshot.groups:
            replicas[group.replicas] = replicas.get(group.replicas, 0) + 1
        for count_of, count in sorted(replicas.items()):
            by_replicas.add_metric([str(count_of)], count)
        yield by_replicas
        service = CounterMetricFamily(
            "butter_service", "Counters of the node's services (Counters capability).", labels=["source", "counter"]
        )
        levels = GaugeMetricFamily(
            "butter_service_open", "What a service has open now (its counters named *_open).",
            labels=["source", "counter"],
        )
        for source, counters in snapshot.counters.items():
            for counter, value in sorted(counters.items()):
                (levels if counter.endswith(LEVEL_SUFFIX) else service).add_metric([source, counter], value)
        yield service
        yield levels


async def serve_metrics(
    registry: CollectorRegistry, host: str, port: int, *, on_listening: Callable[[int], None] | None = None
) -> None:
    """Serve ``GET /metrics`` of ``registry`` on ``host:port`` (port 0: any free one) until cancelled;
    ``on_listening(port bound)`` is called once listening. Raises ``OSError`` when the port cannot be
    bound."""

    async def metrics() -> tuple[int, str, bytes]:
        return 200, CONTENT_TYPE_LATEST, generate_latest(registry)

    await serve_http(host, port, {"/metrics": metrics}, what="metrics", on_listening=on_listening)
