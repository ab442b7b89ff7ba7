"""Wiki nodes (examples/wiki) as real processes on 127.0.0.1, for the tests of its pages and its command line.

Every node uses static discovery only (``--peer``; the first one ``--discovery static``) and fast timers, so
the tests never send beyond loopback and do not wait long. Every process is SIGKILLed at the end.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from butter.testing.process import RunningProcess

ROOT = Path(__file__).resolve().parents[2]
FAST = {  # seconds: heartbeats, quality polls and known-host exchanges a few times faster than the defaults
    "BUTTER_PERSISTENCE__OPTIONS__HEARTBEAT_INTERVAL": "0.5",
    "BUTTER_PERSISTENCE__OPTIONS__HEARTBEAT_TIMEOUT": "1.0",
    "BUTTER_PERSISTENCE__OPTIONS__FETCH_TIMEOUT": "1.0",
    "BUTTER_HOST_MANAGER__OPTIONS__REFRESH_INTERVAL": "1.0",
    "BUTTER_HOST_MANAGER__OPTIONS__EXCHANGE_INTERVAL": "0.5",
    "BUTTER_HOST_MANAGER__OPTIONS__QUALITY_TIMEOUT": "1.0",
    # An overlay of this test process's own: nodes other tests started on this machine, still re-probing a port
    # that one of these nodes now reuses, are refused in the handshake instead of becoming its peers (a CI run
    # saw a lone wiki node know 4 peers it was never told of).
    "BUTTER_NETWORK_ID": f"wiki-tests-{uuid.uuid4().hex[:12]}",
}
# urllib would use an http_proxy from the environment, even for 127.0.0.1.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def wiki_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUTTER_")}
    return {**env, **FAST, "PYTHONPATH": str(ROOT), "NO_PROXY": "*"}


def run_wiki(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """A one-shot wiki command (``write``, ``read``, ``list``)."""
    return subprocess.run(
        [sys.executable, "-m", "examples.wiki", *args], env={**wiki_env(), "PYTHONUNBUFFERED": "1"}, text=True,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
    )


@dataclass
class WikiNode:
    process: RunningProcess
    address: str  # the node's HOST:PORT
    url: str  # its web page, ending in "/"

    def get(self, path: str) -> tuple[int, str, str]:
        """GET ``path``: (status, final URL after redirects, body)."""
        return self._open(urllib.request.Request(self.url + path.lstrip("/")))

    def post(self, path: str, form: dict[str, str], headers: dict[str, str] | None = None) -> tuple[int, str, str]:
        data = urllib.parse.urlencode(form).encode()
        return self._open(
            urllib.request.Request(self.url + path.lstrip("/"), data=data, method="POST", headers=headers or {})
        )

    def wait_for_peers(self, count: int, timeout: float = 30) -> None:
        """Until the home page says this node knows at least ``count`` peers (they are admitted in the
        background; other tests' nodes on this machine may reach it too, through a port they knew before it
        was reused)."""
        deadline = time.monotonic() + timeout
        while (found := re.search(r"peers it knows: (\d+)\b", page := self.get("/")[2])) is None or int(
                found.group(1)) < count:
            assert time.monotonic() < deadline, f"{self.address} never knew {count} peers:\n{page}"
            time.sleep(0.2)

    def _open(self, request: urllib.request.Request) -> tuple[int, str, str]:
        try:
            with HTTP.open(request, timeout=60) as reply:
                return reply.status, reply.url, reply.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.url, exc.read().decode()


class WikiNodes:
    """What the ``wiki_nodes`` fixture gives: ``start()`` a node, ``kill()`` it, ``run()`` a one-shot command."""

    def __init__(self) -> None:
        self.started: list[WikiNode] = []

    def start(self, *, peer: WikiNode | None = None, backend: str = "asyncio") -> WikiNode:
        """Start ``serve`` on free ports; the first node uses static discovery with no peer, the others
        ``--peer`` the given node (default: the first one)."""
        peer = peer or (self.started[0] if self.started else None)
        where = ["--peer", peer.address] if peer else ["--discovery", "static"]
        process = RunningProcess(
            [sys.executable, "-m", "examples.wiki", "serve", "--port", "0", "--web-port", "0", "--backend", backend,
             *where], env=wiki_env(),
        )
        node = WikiNode(process, "", "")
        self.started.append(node)
        node.address = process.wait_for(r"listening on (127\.0\.0\.1:\d+)", timeout=30).group(1)
        node.url = process.wait_for(r"wiki page on (http://\S+/)", timeout=30).group(1)
        return node

    def kill(self, node: WikiNode) -> None:
        node.process.stop(signal.SIGKILL, timeout=10)

    run = staticmethod(run_wiki)


@pytest.fixture
def wiki_nodes() -> Iterator[WikiNodes]:
    pytest.importorskip("butter_transport_tcp", reason="butter-transport-tcp is not installed")
    pytest.importorskip("butter_persist_pcg", reason="butter-persist-pcg is not installed")
    pytest.importorskip("butter_retrieve_bfs", reason="butter-retrieve-bfs is not installed")
    pytest.importorskip("hypercorn", reason="hypercorn (the wiki's web server) is not installed")
    nodes = WikiNodes()
    try:
        yield nodes
    finally:
        for node in nodes.started:
            node.process.stop(signal.SIGKILL, timeout=10)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """Keep each phase's report on the test item, so a fixture can tell at teardown whether the test failed."""
    report: pytest.TestReport = yield
    setattr(item, f"report_{report.when}", report)
    return report


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic", "--no-proxy-server",
]
TIMEOUT_MS = 30_000


@pytest.fixture
def page(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A fresh Chromium page; on failure its screenshot and HTML go to ``tmp_path`` (paths printed)."""
    if not CHROMIUM.exists():
        pytest.skip(f"chromium is not installed ({CHROMIUM}; .ci/run installs Debian's chromium package)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (Python package) is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page()
            tab.set_default_timeout(TIMEOUT_MS)
            yield tab
            report = getattr(request.node, "report_call", None)
            if report is None or report.failed:
                screenshot, html = tmp_path / "failure.png", tmp_path / "failure.html"
                tab.screenshot(path=str(screenshot), full_page=True)
                html.write_text(tab.content())
                print(f"browser artefacts: {screenshot} {html} (page {tab.url})")
        finally:
            browser.close()
