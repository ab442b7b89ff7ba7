"""A node restarted on its durable store (sqlite, real files) over TCP on 127.0.0.1, asyncio and trio.

* While it resumes its groups it answers every request ``starting``, never with a closed connection, and the
  scan of its store reads blocks in batches (a few store operations for hundreds of items).
* A block corrupted on disk while the node was down is deleted when the node reads it back, and repaired
  from the group; one corrupted while it runs is found by the rolling scrub and repaired the same way.
"""

import random
import socket
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest

import butter
from butter.blocks import chunk
from butter.errors import ButterConfigError, PeerUnreachable, RemoteError
from butter.store import DEFAULT_FILENAME, SqliteBlockStore
from butter_persist_pcg import PcgPersistence

from .helpers import Network, goldilocks, network, pcg, tcp_settings

pytestmark = pytest.mark.anyio

ITEMS = 300


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def fill(path: Path, items: int) -> int:
    """Store ``items`` random items of 1 to 3 blocks in a new sqlite store at ``path``; returns the blocks."""
    rng = random.Random(4)
    blocks = 0
    async with SqliteBlockStore(path, 1 << 30) as store:
        for _ in range(items):
            item = chunk(rng.randbytes(rng.randint(100, 12_000)), block_size=4096)
            for block_id, data in item.all_blocks.items():
                blocks += await store.put(block_id, data)
    return blocks


def durable(directory: Path, port: int, **pcg_options: Any) -> butter.ButterSettings:
    return tcp_settings(secure=True)(
        port=port, data_dir=directory, store={"driver": "sqlite"},
        persistence={"driver": "pcg", "options": {"heartbeat_interval": 0.2, **pcg_options}},
    )


async def test_a_restarting_node_answers_starting_until_its_groups_are_resumed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = await fill(tmp_path / "n" / DEFAULT_FILENAME, ITEMS)
    hops = 0
    run = SqliteBlockStore._run

    async def counted(self: SqliteBlockStore, *args: Any) -> Any:
        nonlocal hops
        hops += 1
        return await run(self, *args)

    seen_starting = anyio.Event()
    resume = PcgPersistence._adopt_stored_groups

    async def held(self: PcgPersistence) -> None:  # resuming waits until a request has been answered meanwhile
        await seen_starting.wait()
        with monkeypatch.context() as patch:
            patch.setattr(SqliteBlockStore, "_run", counted)
            await resume(self)

    monkeypatch.setattr(PcgPersistence, "_adopt_stored_groups", held)
    port = free_port()
    answers: list[str] = []
    client = tcp_settings(secure=True)(discovery={"drivers": []}, persistence={"driver": ""})
    async with butter.open_node(client) as prober, anyio.create_task_group() as tg:

        async def probe() -> None:
            while "ok" not in answers:
                try:
                    await prober.request(f"127.0.0.1:{port}", "ping", timeout=2.0)
                    answers.append("ok")
                except RemoteError as exc:
                    answers.append(exc.code)
                    seen_starting.set()
                except PeerUnreachable as exc:  # before the node listens: refused; any other is a failure
                    answers.append("refused" if "cannot connect" in str(exc) else f"lost: {exc}")
                await anyio.sleep(0.01)

        tg.start_soon(probe)
        with anyio.fail_after(20):
            async with butter.open_node(durable(tmp_path / "n", port)) as node:
                assert len(pcg(node).kept_items()) == ITEMS
                while "ok" not in answers:
                    await anyio.sleep(0.01)
    listening = answers[answers.index("starting"):]
    assert set(listening) == {"starting", "ok"} and listening[-1] == "ok", set(listening)
    assert hops <= 2 + blocks // 100, f"{hops} store operations to resume {ITEMS} items ({blocks} blocks)"


def corrupt(directory: Path, block_id: str) -> None:
    """Overwrite a block's bytes in the sqlite file, behind the store's back."""
    with sqlite3.connect(directory / DEFAULT_FILENAME) as conn:
        assert conn.execute("UPDATE blocks SET data = ? WHERE address = ?", (b"rot", block_id)).rowcount == 1


def on_disk(node: butter.Node) -> dict[str, Any]:
    return {"data_dir": node.settings.data_dir, "port": node.address.port, "store": {"driver": "sqlite"}}


async def restarted(net: Network, settings: dict[str, Any]) -> butter.Node:
    """Start a node on a killed node's data directory and port, once its listener is closed."""
    deadline = anyio.current_time() + 10  # not fail_after: the node's task group outlives this call
    while True:
        try:
            return await net.add(**settings)
        except ButterConfigError:  # the port: the killed node's tasks are still winding down
            if anyio.current_time() > deadline:
                raise
            await anyio.sleep(0.05)


async def test_a_block_corrupted_while_the_node_was_down_is_repaired_from_the_group(tmp_path: Path) -> None:
    async with network(tcp_settings(secure=True), 2) as net:
        durable_node = await net.add(data_dir=tmp_path / "d", port=free_port(), store={"driver": "sqlite"})
        data = random.Random(9).randbytes(10_000)  # three blocks
        content_id = await net.nodes[0].store(data)
        await net.wait_for(lambda: all(goldilocks(n, content_id) for n in net.nodes))
        victim = chunk(data, block_size=4096).manifest.blocks[1]
        restart = on_disk(durable_node)
        await net.kill(durable_node)
        corrupt(tmp_path / "d", victim)
        reborn = await restarted(net, restart)
        assert reborn.node_id == durable_node.node_id and content_id in pcg(reborn).kept_items()
        await net.wait_for(lambda: pcg(reborn).counters().get("blocks_repaired") == 1)
        assert await reborn.blocks.get(victim) == data[4096:8192]
        await net.wait_for(lambda: all(goldilocks(n, content_id) for n in net.nodes))


async def test_a_block_corrupted_under_a_running_node_is_found_by_the_scrub_and_repaired(tmp_path: Path) -> None:
    async with network(tcp_settings(secure=True), 2) as net:
        durable_node = await net.add(data_dir=tmp_path / "d", port=0, store={"driver": "sqlite"})
        data = random.Random(10).randbytes(10_000)
        content_id = await net.nodes[0].store(data)
        await net.wait_for(lambda: all(goldilocks(n, content_id) for n in net.nodes))
        victim = chunk(data, block_size=4096).manifest.blocks[2]
        corrupt(tmp_path / "d", victim)
        await net.wait_for(lambda: pcg(durable_node).counters().get("blocks_repaired") == 1)
        assert await durable_node.blocks.get(victim) == data[8192:]
