"""``--log-format json``: one JSON object per line, each naming the node that logged it (even with several
nodes in one process), the event and the peer where known; ``butter node`` run as a real process."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import butter
from butter._logs import JsonFormatter
from butter.settings import ButterSettings

FIELDS = {"time", "level", "logger", "message", "node_id", "event", "peer"}


class Lines(logging.Handler):
    """Keeps each record as its formatted JSON line."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]


@pytest.fixture
def captured() -> Iterator[Lines]:
    handler, root = Lines(), logging.getLogger("butter")
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


@pytest.mark.anyio
async def test_each_record_names_the_node_that_logged_it(
    memory_settings: Callable[..., ButterSettings], captured: Lines
) -> None:
    async with butter.open_node(memory_settings()) as a, \
            butter.open_node(memory_settings(peers=[str(a.address)])) as b:
        with anyio.fail_after(30):
            while not any(e["event"] == "peer_joined" and e["node_id"] == b.node_id for e in captured.entries()):
                await anyio.sleep(0.02)
    entries = captured.entries()
    assert all(set(entry) == FIELDS for entry in entries)
    started = {e["node_id"] for e in entries if e["event"] == "node_started"}
    assert started == {a.node_id, b.node_id}
    joined = [e for e in entries if e["event"] == "peer_joined"]
    assert (b.node_id, a.node_id) in {(e["node_id"], e["peer"]) for e in joined}
    assert all(e["message"].startswith("peer joined: ") for e in joined)


def test_a_record_without_extras_has_its_template_as_event_and_its_exception() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("butter.x", logging.ERROR, __file__, 1, "failed %d times", (3,), sys.exc_info())
    entry = json.loads(JsonFormatter().format(record))
    assert (entry["message"], entry["event"], entry["node_id"], entry["peer"]) == (
        "failed 3 times", "failed %d times", None, None)
    assert entry["level"] == "ERROR" and "ValueError: boom" in entry["exception"]


def test_butter_node_logs_json_lines_on_stderr(tmp_path: Path) -> None:
    """Two real ``butter node`` processes over tcp: every stderr line of the second is a JSON object, and
    its lines say when the first joined and left."""
    pytest.importorskip("butter_transport_tcp")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUTTER_")}
    fast = ["--host_manager.options", '{"refresh_interval": 0.5}']
    logs = [tmp_path / "first.log", tmp_path / "second.log"]

    def start(*args: str, log: Path) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "butter.cli", "node", "--host", "127.0.0.1", "--discovery", "static",
             "--log-format", "json", *fast, *args],
            cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE, stderr=log.open("w"))

    def wait_for(log: Path, found: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for line in log.read_text().splitlines():
                if line.endswith("}") and found(entry := json.loads(line)):
                    return entry
            time.sleep(0.05)
        raise AssertionError(log.read_text())

    first = start(log=logs[0])
    second = None
    try:
        started = wait_for(logs[0], lambda e: e["event"] == "node_started")
        address = started["message"].split(" listening on ")[1].split()[0]
        second = start("--peer", address, log=logs[1])
        wait_for(logs[1], lambda e: e["event"] == "peer_joined" and e["peer"] == started["node_id"])
        first.send_signal(signal.SIGTERM)
        assert first.wait(30) == 0
        wait_for(logs[1], lambda e: e["event"] == "peer_left" and e["peer"] == started["node_id"])
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
    for log in logs:
        entries = [json.loads(line) for line in log.read_text().splitlines()]  # every line parses
        assert entries and all(set(entry) == FIELDS for entry in entries)
        assert {e["node_id"] for e in entries if e["logger"] != "butter.cli"} - {None}


def test_every_command_that_talks_to_a_node_takes_log_format() -> None:
    """``--log-format`` on every command with ``--node`` (it reaches a running node) or that runs nodes."""
    import typer

    from butter.cli import app

    def commands(group: Any, path: str = "butter") -> Iterator[tuple[str, Any]]:  # typer's own click
        if hasattr(group, "list_commands"):
            context = group.context_class(group)
            for name in group.list_commands(context):
                sub = group.get_command(context, name)
                if sub is not None:
                    yield from commands(sub, f"{path} {name}")
        else:
            yield path, group

    talking = {path: {o for p in command.params for o in p.opts}
               for path, command in commands(typer.main.get_command(app))}
    talking = {path: opts for path, opts in talking.items() if "--node" in opts or path in ("butter node",
                                                                                                "butter demo")}
    assert {"butter name publish", "butter name resolve", "butter get", "butter node"} <= set(talking)
    assert [path for path, opts in talking.items() if "--log-format" not in opts] == []
