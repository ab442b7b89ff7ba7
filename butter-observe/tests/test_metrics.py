"""Prometheus /metrics of real nodes, scraped over a loopback socket and parsed as the exposition format."""

from __future__ import annotations

import os
from collections.abc import Callable

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

import butter
from butter.errors import RemoteError

from .conftest import MakeSettings, observer, overlay

pytestmark = pytest.mark.anyio


async def http_get(port: int, path: str) -> tuple[int, str]:
    """One HTTP/1.1 GET to 127.0.0.1:``port``: (status, body)."""
    with anyio.fail_after(10):
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            data = b""
            try:
                while True:
                    data += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body.decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text) for sample in family.samples
    }


async def test_metrics_are_scraped_and_parse(memory_settings: MakeSettings) -> None:
    async with overlay(memory_settings, 3, {"metrics_port": 0}) as nodes:
        plugin = observer(nodes[0])
        with anyio.fail_after(10):
            await plugin.metrics_listening.wait()
        port = plugin.metrics_port
        assert port is not None
        await nodes[0].store(os.urandom(1500))
        for _ in range(3):
            await nodes[1].request(nodes[0].address, "ping")
        with pytest.raises(RemoteError):
            await nodes[1].request(nodes[0].address, "fetch-block", b"\x01")  # bad-request
        status, text = await http_get(port, "/metrics")
        assert status == 200
        found = samples(text)
        assert found[("butter_requests_total", (("route", "ping"),))] >= 3
        assert found[("butter_request_errors_total", (("code", "bad-request"), ("route", "fetch-block")))] == 1
        assert found[("butter_request_seconds_count", (("route", "ping"),))] >= 3
        assert found[("butter_known_hosts", ())] == 2
        assert found[("butter_items_kept", ())] == 1
        assert sum(v for (name, _), v in found.items() if name == "butter_groups") == 1
        assert any(name == "butter_service_total" and dict(labels)["source"] == "PcgPersistence"
                   for name, labels in found)
        assert (await http_get(port, "/other"))[0] == 404


async def test_metrics_are_off_by_default(memory_settings: MakeSettings) -> None:
    async with butter.open_node(memory_settings()) as node:
        plugin = observer(node)
        assert plugin.metrics is None and plugin.tracker is None and "stats" not in node.routes


async def test_the_tcp_transports_connections_are_scraped() -> None:
    """Over real tcp on 127.0.0.1: a failed handshake, a connection refused by the per-IP cap, and the
    connections open, read from the transport's Counters capability on /metrics."""
    pytest.importorskip("butter_transport_tcp", reason="butter-transport-tcp is not installed")

    def settings(**tcp: object) -> butter.ButterSettings:
        return butter.ButterSettings(
            host="127.0.0.1", port=0, discovery={"drivers": []}, persistence={"driver": ""},
            retrieval={"driver": ""}, transport={"driver": "tcp", "options": tcp},
            plugins={"observe": {"metrics_port": 0}},
        )

    async def scrape(port: int) -> dict[str, float]:
        status, text = await http_get(port, "/metrics")
        assert status == 200
        return {dict(labels)["counter"]: value for (name, labels), value in samples(text).items()
                if name in ("butter_service_total", "butter_service_open")
                and dict(labels)["source"] == "TcpTransport"}

    async def until(port: int, check: Callable[[dict[str, float]], bool]) -> dict[str, float]:
        with anyio.fail_after(30):
            while not check(found := await scrape(port)):
                await anyio.sleep(0.05)
        return found

    async with butter.open_node(settings(max_inbound_per_ip=1, handshake_timeout=2.0)) as server, \
            butter.open_node(settings()) as client:
        plugin = observer(server)
        with anyio.fail_after(10):
            await plugin.metrics_listening.wait()
        port = plugin.metrics_port
        assert port is not None
        target = server.address
        async with await anyio.connect_tcp(target.host, target.port) as raw:
            await raw.send(b"this is no TLS hello\r\n" * 8)
            await until(port, lambda c: c["handshakes_failed"] >= 1)
        await client.request(target, "ping")  # holds the one slot 127.0.0.1 has
        found = await until(port, lambda c: c["connections_open"] >= 1)
        assert found["connections_accepted"] >= 2
        async with await anyio.connect_tcp(target.host, target.port):
            await until(port, lambda c: c["connections_refused_per_ip"] >= 1)
        _, text = await http_get(port, "/metrics")
        kinds = {family.name: family.type for family in text_string_to_metric_families(text)}
        assert kinds["butter_service"] == "counter" and kinds["butter_service_open"] == "gauge"
