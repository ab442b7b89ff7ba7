"""Route ``stats``, the crawl, the graph from a tracker database, and the commands over real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import networkx as nx
import pytest

from butter.errors import RemoteError
from butter.testing.process import RunningProcess
from butter_observe import GroupView, HostView, Snapshot, ask_stats, open_database
from butter_observe._cli import write_graph
from butter_observe._graph import crawl, overlay_graph, to_dot

from .conftest import MakeSettings, overlay

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.anyio
async def test_stats_route_and_crawl(memory_settings: MakeSettings, tmp_path: Path) -> None:
    async with overlay(memory_settings, 4, {"stats_route": True}) as nodes:
        content_id = await nodes[1].store(os.urandom(1000))
        snapshot = await ask_stats(nodes[0], nodes[1].address, timeout=5)
        assert snapshot.node_id == nodes[1].node_id and snapshot.items == 1 and len(snapshot.hosts) == 3
        assert snapshot.groups[0].content_id == content_id
        progress: list[tuple[int, int]] = []
        with anyio.fail_after(20):
            found = await crawl(nodes[0], nodes[2].address, timeout=5,
                                on_progress=lambda done, queued: progress.append((done, queued)))
        assert {s.node_id for s in found} == {n.node_id for n in nodes}
        assert progress[-1] == (4, 4)
        graph = overlay_graph(found)
        assert graph.number_of_nodes() == 4 and graph.number_of_edges() == 12
        assert sum(content_id in d["groups"].split() for _, d in graph.nodes(data=True)) >= 1
        paths = write_graph(graph, tmp_path / "overlay", title="test")
        assert nx.read_graphml(paths[0]).number_of_nodes() == 4


@pytest.mark.anyio
async def test_a_node_without_the_stats_route_is_crawled_by_its_known_hosts(memory_settings: MakeSettings) -> None:
    async with overlay(memory_settings, 3, {}, pcg=False) as nodes:
        with pytest.raises(RemoteError, match="unknown-route"):
            await ask_stats(nodes[0], nodes[1].address, timeout=5)
        with anyio.fail_after(20):
            found = await crawl(nodes[0], nodes[1].address, timeout=5)
        assert {s.node_id for s in found} == {n.node_id for n in nodes}
        assert all(len(s.hosts) == 2 for s in found)


def fake_overlay(size: int) -> list[Snapshot]:
    """``size`` nodes in a ring, each keeping one item also kept by the next."""
    ids = [f"{i:064x}" for i in range(1, size + 1)]
    cids = [f"{i + 100:064x}" for i in range(size)]
    snapshots = []
    for i, node_id in enumerate(ids):
        nxt = (i + 1) % size
        hosts = (HostView(ids[nxt], f"127.0.0.1:{9000 + nxt}", 10.0 * nxt, 1000 * nxt, 1, 1),)
        groups = (GroupView(cids[i], "cold", 2, 3), GroupView(cids[i - 1], "cold", 2, 3))
        snapshots.append(Snapshot(node_id, f"127.0.0.1:{9000 + i}", 1.0, 10.0 * i, 1000 * i, 1, 2, hosts, groups, {}))
    return snapshots


def test_the_graph_from_a_tracker_database(tmp_path: Path) -> None:
    url = f"sqlite:{tmp_path / 't.db'}"
    database = open_database(url)
    try:
        for snapshot in fake_overlay(7):
            database.write(snapshot, history_expiry=60)
        snapshots = database.latest()
    finally:
        database.close()
    graph = overlay_graph(snapshots)
    assert graph.number_of_nodes() == 7 and graph.number_of_edges() == 7
    assert len({d["quality_class"] for _, d in graph.nodes(data=True)}) > 1


def test_the_dot_file_has_every_node_and_link() -> None:
    graph = overlay_graph(fake_overlay(5))
    graph.add_node('odd "id"\\', seen=False)
    text = to_dot(graph, colours={})
    lines = text.splitlines()
    assert lines[0] == "digraph butter {" and lines[-1] == "}"
    nodes = [line for line in lines if line.startswith('  "') and "->" not in line]
    edges = [line for line in lines if "->" in line]
    assert len(nodes) == 6 and len(edges) == 5
    assert f'  "{1:064x}" -> "{2:064x}";' in edges
    assert '  "odd \\"id\\"\\\\" [' in text and 'style="filled,dashed"' in text
    first = next(line for line in nodes if line.startswith(f'  "{1:064x}"'))
    assert 'address="127.0.0.1:9000"' in first and 'seen="true"' in first and 'fillcolor="#999999"' in first


def butter_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "butter.cli", *args], capture_output=True, text=True, timeout=60,
                          env={**node_env(), "COLUMNS": "200"})


def node_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUTTER_")}
    return {**env, "BUTTER_HOST_MANAGER__OPTIONS__EXCHANGE_INTERVAL": "0.3",
            "BUTTER_HOST_MANAGER__OPTIONS__REFRESH_INTERVAL": "0.5",
            "BUTTER_PLUGINS__OBSERVE__TRACKER_INTERVAL": "0.3", "NO_PROXY": "*"}


def test_the_commands_on_real_nodes(tmp_path: Path) -> None:
    """`butter node --tracker --stats-route` on three processes (tcp, 127.0.0.1), then `butter stats`,
    `butter graph --crawl` and `butter graph --tracker`."""
    pytest.importorskip("butter_transport_tcp", reason="butter-transport-tcp is not installed")
    database = tmp_path / "tracker.db"
    started: list[RunningProcess] = []
    try:
        first = ""
        for _ in range(3):
            where = ["--peer", first] if first else ["--discovery", "static"]
            process = RunningProcess(
                [sys.executable, "-m", "butter.cli", "node", "--host", "127.0.0.1", "--port", "0", "--stats-route",
                 "--tracker", f"sqlite:{database}", "--persistence.driver", "", "--retrieval.driver", "", *where],
                env=node_env(),
            )
            started.append(process)
            address = process.wait_for(r"listening on (127\.0\.0\.1:\d+)", timeout=30).group(1)
            first = first or address
        stats = butter_cli("stats", first, "--json")
        assert stats.returncode == 0, stats.stderr
        assert json.loads(stats.stdout)["addr"] == first
        table = butter_cli("stats", first)
        assert "known hosts" in table.stdout
        for _ in range(100):  # until every node knows the two others
            crawled = butter_cli("graph", "--crawl", first, "--out", str(tmp_path / "crawl"))
            assert crawled.returncode == 0, crawled.stderr
            if "3 nodes, 6 links" in crawled.stdout:
                break
        assert "3 nodes, 6 links" in crawled.stdout
        for _ in range(100):
            tracked = butter_cli("graph", "--tracker", f"sqlite:{database}", "--out", str(tmp_path / "tracked"))
            if "3 nodes, 6 links" in tracked.stdout:
                break
        assert "3 nodes, 6 links" in tracked.stdout, tracked.stdout + tracked.stderr
        assert (tmp_path / "tracked.html").read_text().count('class="node') == 3
        assert (tmp_path / "tracked.dot").read_text().count(" -> ") == 6
    finally:
        for process in started:
            process.stop(timeout=10)
    assert butter_cli("stats", "127.0.0.1:1", "--timeout", "1").returncode == 1
