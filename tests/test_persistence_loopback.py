"""Issue 4's promise on real processes over TCP on 127.0.0.1: an item outlives the SIGKILL of every node
that held it at first, as long as replicas had time to move; a durable node restarted after SIGKILL still
holds what it acknowledged."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

import butter
import butter.blocks
import butter.wire
from butter.blocks import chunk, load_manifest
from butter.settings import ButterSettings

FAST = [
    "--host_manager.options", json.dumps({"refresh_interval": 1.0, "exchange_interval": 0.5, "quality_timeout": 1.0}),
    "--persistence.options", json.dumps({"heartbeat_interval": 0.5, "heartbeat_timeout": 1.0, "fetch_timeout": 1.0}),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cluster:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.first_port = 0

    def start(self, port: int, *extra: str) -> None:
        peers = ["--peer", f"127.0.0.1:{self.first_port}"] if self.first_port and port != self.first_port else []
        log = (self.tmp / f"node-{port}.log").open("ab")
        self.procs[port] = subprocess.Popen(
            [sys.executable, "-c", "from butter.cli import main; main()", "node", "--host", "127.0.0.1",
             "--port", str(port), "--discovery", "static", *peers, *FAST, *extra],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def kill(self, port: int) -> None:
        proc = self.procs.pop(port)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def close(self) -> None:
        for proc in self.procs.values():
            proc.kill()
            proc.wait(10)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    pytest.importorskip("butter_transport_tcp", reason="butter-transport-tcp is not installed")
    pytest.importorskip("butter_persist_pcg", reason="butter-persist-pcg is not installed")
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.close()


def client_settings() -> ButterSettings:
    return ButterSettings(host="127.0.0.1", discovery={"drivers": []}, persistence={"driver": ""},
                          request_timeout=2.0, connect_timeout=1.0)


async def holders(client: butter.Node, ports: list[int], content_id: str) -> list[int]:
    found = []
    for port in ports:
        try:
            await client.fetch_block(f"127.0.0.1:{port}", content_id, timeout=2)
        except butter.ButterError:
            continue
        found.append(port)
    return found


async def wait_until_up(client: butter.Node, port: int) -> None:
    with anyio.fail_after(30):
        while True:
            try:
                await client.request(f"127.0.0.1:{port}", "ping", timeout=1)
                return
            except butter.ButterError:
                await anyio.sleep(0.2)


@pytest.mark.anyio
async def test_item_survives_sigkill_of_every_first_holder(cluster: Cluster) -> None:
    ports = [free_port() for _ in range(7)]
    cluster.first_port = ports[0]
    for port in ports:
        cluster.start(port)
    data = os.urandom(50_000)
    async with butter.open_node(client_settings()) as client:
        for port in ports:
            await wait_until_up(client, port)
        await anyio.sleep(2.0)  # the overlay forms (known-host exchange)
        content_id = chunk(data).content_id
        item = chunk(data)
        body = butter.wire.encode_payload({"blocks": list(item.blocks.values()), "manifest": item.manifest_block})
        await client.request(f"127.0.0.1:{ports[0]}", "store", body, timeout=10)
        with anyio.fail_after(30):
            while len(first := await holders(client, ports, content_id)) < 3:
                await anyio.sleep(0.3)
        live = list(ports)
        for port in first:  # SIGKILL each first holder, leaving time for the group to repair in between
            cluster.kill(port)
            live.remove(port)
            with anyio.fail_after(40):
                while len(now := await holders(client, live, content_id)) < 3:
                    await anyio.sleep(0.3)
        assert not set(now) & set(first)
        survivor = f"127.0.0.1:{now[0]}"
        manifest = load_manifest(content_id, await client.fetch_block(survivor, content_id))
        blocks = {a: await client.fetch_block(survivor, a) for a in manifest.blocks}
        assert butter.blocks.assemble(manifest, blocks) == data


@pytest.mark.anyio
async def test_durable_node_keeps_acknowledged_items_across_sigkill(cluster: Cluster, tmp_path: Path) -> None:
    port = free_port()
    durable = ["--data-dir", str(tmp_path / "data"), "--store.driver", "sqlite"]
    cluster.start(port, *durable)
    async with butter.open_node(client_settings()) as client:
        await wait_until_up(client, port)
        items = [chunk(os.urandom(9_000 + i)) for i in range(5)]
        for item in items:
            body = butter.wire.encode_payload({"blocks": list(item.blocks.values()),
                                               "manifest": item.manifest_block})
            await client.request(f"127.0.0.1:{port}", "store", body, timeout=10)
        cluster.kill(port)
        cluster.start(port, *durable)
        await wait_until_up(client, port)
        for item in items:
            for address, block in item.all_blocks.items():
                assert await client.fetch_block(f"127.0.0.1:{port}", address) == block
        identity = butter.wire.decode_payload(await client.request(f"127.0.0.1:{port}", "ping"))
        assert (tmp_path / "data" / "node_key.pem").exists() and identity["id"]


