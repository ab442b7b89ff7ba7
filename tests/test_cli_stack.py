"""CLI commands that need the whole stack (TCP transport, PCG): put, demo, sim. Loopback only."""

from __future__ import annotations

import csv
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from typer.testing import CliRunner

import butter
import butter.blocks
from butter.capabilities import KeptItems
from butter.cli import app
from butter.settings import ButterSettings

runner = CliRunner()


@pytest.fixture
def tcp_node() -> Iterator[tuple[BlockingPortal, butter.Node]]:
    settings = ButterSettings(host="127.0.0.1", discovery={"drivers": []})
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(butter.open_node(settings)) as node:
        yield portal, node


def test_put_stores_a_file_and_prints_its_content_id(tcp_node: tuple[BlockingPortal, butter.Node],
                                                     tmp_path: Path) -> None:
    portal, node = tcp_node
    data = os.urandom(1_500_000)  # two upload batches
    (tmp_path / "f.bin").write_bytes(data)
    result = runner.invoke(app, ["put", str(tmp_path / "f.bin"), "--node", str(node.address)])
    assert result.exit_code == 0, result.output
    content_id = result.stdout.strip()
    kept = node.capability(KeptItems)
    assert kept is not None and content_id in portal.call(kept.kept_items)
    item = butter.blocks.chunk(data)
    assert item.content_id == content_id
    for address in item.all_blocks:
        assert portal.call(node.blocks.has, address)


def test_put_to_an_unreachable_node_exits_1(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    result = runner.invoke(app, ["put", str(tmp_path / "f"), "--node", "127.0.0.1:1", "--timeout", "2"])
    assert result.exit_code == 1 and "cannot store on 127.0.0.1:1" in result.stderr


def test_demo_stores_kills_and_retrieves_everything(tmp_path: Path) -> None:
    pytest.importorskip("butter_retrieve_bfs", reason="butter-retrieve-bfs is not installed")
    for i in range(12):
        (tmp_path / f"m{i}.py").write_text(f"# module {i}\n" + "x = 1\n" * (i * 900))  # up to 3 blocks
    result = runner.invoke(app, ["demo", "--nodes", "6", "--corpus", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "OK: 12/12 items retrieved byte for byte after 2 of 6 nodes died" in result.stdout
    assert "Expected duration" in result.stdout.split("1. Started")[0]  # said before it starts


def test_sim_churn_prints_the_table_and_writes_outputs(tmp_path: Path) -> None:
    result = runner.invoke(app, ["sim", "churn", "--nodes", "20", "--death-rate", "0.05", "--churn", "10",
                                 "--settle", "10", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "Retention under churn: 20 nodes" in result.stdout
    rows = json.loads((tmp_path / "churn.json").read_text())
    assert rows[0]["items"] == 20 and rows[0]["deaths"] > 0
    assert rows[0]["baseline_retention"] < rows[0]["retention"]
    assert (tmp_path / "churn.csv").exists() and (tmp_path / "churn.png").stat().st_size > 1000
    with (tmp_path / "churn-timeline.csv").open() as f:
        samples = list(csv.DictReader(f))
    assert {s["run"] for s in samples} == {"PCG", "baseline"}
    pcg = [s for s in samples if s["run"] == "PCG"]
    assert [float(s["t"]) for s in pcg] == [5.0 * i for i in range(len(pcg))] and len(pcg) >= 6  # warmup to settle
    assert float(pcg[0]["replicas_per_item"]) == 1.0 < max(float(s["replicas_per_item"]) for s in pcg)
    assert max(float(s["maintenance_per_node_second"]) for s in pcg) > 0
    assert all(float(s["maintenance_per_node_second"]) == 0 for s in samples if s["run"] == "baseline")
    assert (tmp_path / "churn-timeline.png").stat().st_size > 1000


SMALL_SIM = ["sim", "churn", "--nodes", "5", "--death-rate", "0.05", "--churn", "1", "--settle", "1", "--no-baseline"]


def test_sim_without_trio_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "trio", None)  # as if not installed
    result = runner.invoke(app, SMALL_SIM)
    assert result.exit_code == 2
    assert result.stderr.strip() == ("error: butter sim needs trio, which is not installed: "
                                     "pip install 'butter-core[trio]'")


def test_sim_out_without_matplotlib_says_so_and_writes_the_rest(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = runner.invoke(app, [*SMALL_SIM, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "PNG pictures need matplotlib, which is not installed (pip install 'butter-core[plot]')" in result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["churn-timeline.csv", "churn.csv", "churn.json"]


def test_sim_with_a_missing_driver_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUTTER_RETRIEVAL__DRIVER", "bsf")  # the simulated nodes read BUTTER_* too
    result = runner.invoke(app, SMALL_SIM)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: no retrieval driver 'bsf' is installed: did you mean 'bfs'?")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_keeping_a_one_block_item_is_logged_in_the_singular(tcp_node: tuple[BlockingPortal, butter.Node],
                                                           caplog: pytest.LogCaptureFixture) -> None:
    portal, node = tcp_node
    caplog.set_level(logging.INFO, logger="butter.pcg")
    portal.call(node.store, b"hello")
    assert any(record.getMessage().endswith("(5 bytes, 1 block)") for record in caplog.records), caplog.text


def test_get_retrieves_what_put_stored_through_another_node(tmp_path: Path) -> None:
    pytest.importorskip("butter_retrieve_bfs", reason="butter-retrieve-bfs is not installed")
    fast = {"heartbeat_interval": 0.3}
    settings = ButterSettings(host="127.0.0.1", discovery={"drivers": []}, persistence={"options": fast},
                              host_manager={"options": {"refresh_interval": 1.0, "exchange_interval": 0.3}})
    with start_blocking_portal() as portal, \
            portal.wrap_async_context_manager(butter.open_node(settings)) as a, \
            portal.wrap_async_context_manager(butter.open_node(
                settings.model_copy(update={"peers": [str(a.address)]}))) as b:
        data = os.urandom(30_000)
        (tmp_path / "in.bin").write_bytes(data)
        put = runner.invoke(app, ["put", str(tmp_path / "in.bin"), "--node", str(a.address)])
        assert put.exit_code == 0, put.output
        content_id = put.stdout.strip()
        out = tmp_path / "out.bin"
        got = runner.invoke(app, ["get", content_id, "--node", str(b.address), "-o", str(out)])
        assert got.exit_code == 0, got.output
        assert out.read_bytes() == data
        missing = runner.invoke(app, ["get", "0" * 64, "--node", str(b.address), "-o", str(tmp_path / "x")])
        assert missing.exit_code == 1 and "not found" in missing.stderr
