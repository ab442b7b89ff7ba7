"""``butter tracker serve``: the live overlay from the tracker's database, as a page that refreshes itself.

The page (``/``) fetches ``/overlay.json`` every ``refresh`` seconds and redraws the picture from it. Each
answer reads the latest snapshot of every node (in a worker thread) and draws the nodes whose snapshot is
at most ``expiry`` seconds old (live), as :func:`~butter_observe._html.render_svg` draws ``butter graph``'s
page; older ones are counted as gone. The JSON: ``{"live": int, "gone": int, "named": int (nodes only
named in live nodes' known hosts), "links": int, "updated": Unix time, "svg": str}``, or ``{"error": str}``
with status 503 when the database cannot be read (it is reopened at the next request).
"""

from __future__ import annotations

import html
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import anyio

from ._database import Database, open_database
from ._graph import overlay_graph
from ._html import STYLE, legend, render_svg
from ._http import serve_http

__all__ = ["LiveOverlay", "serve_live"]

log = logging.getLogger("butter.observe.live")

SCRIPT = """
const refresh = Number(document.body.dataset.refresh) * 1000;
const summary = document.getElementById('summary');
async function update() {
  try {
    const reply = await fetch('overlay.json', {cache: 'no-store'});
    const view = await reply.json();
    if (view.error) {
      summary.textContent = 'cannot read the database: ' + view.error;
    } else {
      document.getElementById('overlay').innerHTML = view.svg;
      for (const key of ['live', 'gone', 'named', 'links']) summary.dataset[key] = view[key];
      summary.textContent = `${view.live} live nodes, ${view.gone} gone, ${view.named} named by others only, ` +
        `${view.links} known-host links; updated ${new Date(view.updated * 1000).toLocaleTimeString()}`;
    }
  } catch (err) {
    summary.textContent = 'tracker view unreachable: ' + err;
  }
  setTimeout(update, refresh);
}
update();
"""


class LiveOverlay:
    """What ``/overlay.json`` answers, read from the database at ``url`` (see the module docstring)."""

    def __init__(self, url: str, *, expiry: float, open_timeout: float = 5.0) -> None:
        self.url = url
        self.expiry = expiry
        self.open_timeout = open_timeout
        self._database: Database | None = None
        self._lock = anyio.Lock()

    def read(self) -> dict[str, Any]:
        """The view now (blocking: run it in a worker thread). Raises what the database driver raises."""
        if self._database is None:
            self._database = open_database(self.url, connect_timeout=self.open_timeout)
        try:
            snapshots = self._database.latest()
        except BaseException:
            self.close()
            raise
        now = time.time()
        live = [s for s in snapshots if s.taken_at >= now - self.expiry]
        graph = overlay_graph(live)
        return {"live": len(live), "gone": len(snapshots) - len(live), "named": graph.number_of_nodes() - len(live),
                "links": graph.number_of_edges(), "updated": now, "svg": render_svg(graph)}

    async def answer(self) -> tuple[int, str, bytes]:
        """``/overlay.json``'s response."""
        async with self._lock:  # one connection: one reader at a time
            try:
                view, status = await anyio.to_thread.run_sync(self.read), 200
            except Exception as exc:
                log.warning("tracker view: cannot read %s: %s: %s", self.url, type(exc).__name__, exc)
                view, status = {"error": f"{type(exc).__name__}: {exc}"}, 503
        return status, "application/json", json.dumps(view).encode()

    def close(self) -> None:
        if self._database is not None:
            self._database.close()
            self._database = None


def page(title: str, refresh: float) -> bytes:
    """The page at ``/``: a shell that draws what ``overlay.json`` says, every ``refresh`` seconds."""
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body data-refresh=\"{refresh}\"><h1>{html.escape(title)}</h1>"
        f'<p id="summary">loading…</p>{legend()}<div id="overlay"></div>'
        f"<script>{SCRIPT}</script></body></html>"
    ).encode()


async def serve_live(
    url: str, host: str, port: int, *, refresh: float = 2.0, expiry: float = 30.0,
    on_listening: Callable[[int], None] | None = None,
) -> None:
    """Serve the live view of the tracker database ``url`` on ``host:port`` (0: any free port) until
    cancelled: ``/`` (the page, redrawn every ``refresh`` seconds) and ``/overlay.json``; nodes whose last
    snapshot is older than ``expiry`` seconds count as gone. Raises ``OSError`` when the port cannot be
    bound."""
    overlay = LiveOverlay(url, expiry=expiry)
    shell = page(f"Butter overlay (live, {url.split('@')[-1]})", refresh)

    async def index() -> tuple[int, str, bytes]:
        return 200, "text/html; charset=utf-8", shell

    try:
        await serve_http(host, port, {"/": index, "/overlay.json": overlay.answer}, what="tracker view",
                         on_listening=on_listening)
    finally:
        overlay.close()
