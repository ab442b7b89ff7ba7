"""``butter stats``, ``butter graph`` and ``butter tracker serve``, added to the ``butter`` command by
:func:`register` (entry point ``butter.commands:observe``, which butter-core's CLI loads)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:  # the rest is imported when a command runs: `butter --help` must stay quick
    from rich.console import Console

    from butter.peers import PeerAddress
    from butter.settings import ButterSettings

    from ._snapshot import Snapshot

__all__ = ["register"]


@cache
def console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``stats``, ``graph`` and ``tracker serve`` to ``app`` (the ``butter`` command)."""
    app.command("stats", epilog=STATS_EPILOG)(stats)
    app.command("graph", epilog=GRAPH_EPILOG)(graph)
    tracker_app = typer.Typer(help="The tracker's database.", no_args_is_help=True)
    tracker_app.command("serve", epilog=SERVE_EPILOG)(tracker_serve)
    app.add_typer(tracker_app, name="tracker")


def _fail(message: str, code: int = 1) -> typer.Exit:
    console(stderr=True).print(f"[bold red]error:[/] {message}", markup=True)
    return typer.Exit(code)


def _address(text: str) -> PeerAddress:
    from butter.peers import PeerAddress

    try:
        return PeerAddress.parse(text)
    except ValueError as exc:
        raise _fail(str(exc), 2) from None


def client_settings(timeout: float) -> ButterSettings:
    """A short-lived client node: the environment's and ``butter.toml``'s transport, on 127.0.0.1 at a free
    port, with no discovery, persistence, retrieval or observer options (it stays invisible)."""
    import butter
    from butter.settings import DiscoverySettings

    base = butter.load_settings()
    return base.model_copy(update={
        "host": "127.0.0.1", "port": 0, "peers": [], "discovery": DiscoverySettings(drivers=[]),
        "persistence": base.persistence.model_copy(update={"driver": "", "options": {}}),
        "retrieval": base.retrieval.model_copy(update={"driver": "", "options": {}}),
        "plugins": {}, "connect_timeout": timeout, "request_timeout": timeout, "shutdown_timeout": 2.0,
    })


def _run(fn: Any, *args: Any, what: str) -> Any:
    import anyio

    from butter.errors import ButterError

    try:
        return anyio.run(fn, *args)
    except ButterError as exc:
        raise _fail(f"{what}: {exc}") from None


# -- butter stats -------------------------------------------------------------------------------------------

STATS_EPILOG = """**Examples**

  butter stats 127.0.0.1:9000

  butter stats 127.0.0.1:9000 --json

The node must serve route stats: start it with `butter node --stats-route` (setting
plugins.observe.stats_route). Exit status 1 when it cannot be reached or does not serve it."""


def stats(
    address: Annotated[str, typer.Argument(metavar="ADDR", help="HOST:PORT of a running node.")],
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the reply.", min=0.01)] = 5.0,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables, for scripts.")] = False,
) -> None:
    """Print a node's gauges (uptime, hosts, storage, items, groups by state) and its services' counters."""
    from rich.table import Table

    import butter

    from ._stats import ask_stats

    target = _address(address)

    async def ask() -> Snapshot:
        async with butter.open_node(client_settings(timeout)) as client:
            return await ask_stats(client, target, timeout=timeout)

    snapshot: Snapshot = _run(ask, what=f"cannot get stats of {target}")
    if json_output:
        typer.echo(json.dumps(snapshot.to_wire(), indent=2))
        return
    gauges = Table("gauge", "value", title=f"node {snapshot.node_id} at {snapshot.address}")
    for name, value in [
        ("uptime s", f"{snapshot.uptime:.0f}"), ("known hosts", len(snapshot.hosts)), ("known by", snapshot.known_by),
        ("available storage bytes", snapshot.available_storage), ("items kept", snapshot.items),
        *((f"groups {state}", count) for state, count in sorted(snapshot.groups_by_state().items())),
    ]:
        gauges.add_row(name, str(value))
    console().print(gauges)
    counters = Table("source", "counter", "count")
    for source, values in snapshot.counters.items():
        for index, (name, value) in enumerate(sorted(values.items())):
            counters.add_row(source if index == 0 else "", name, str(value))
    console().print(counters if snapshot.counters else "no service offers counters")


# -- butter graph -------------------------------------------------------------------------------------------

GRAPH_EPILOG = """**Examples**

  butter graph --crawl 127.0.0.1:9000 --out overlay

  butter graph --tracker sqlite:tracker.db --out overlay

  butter graph --tracker postgresql://butter@localhost/butter --max-age 30 --out overlay

Writes OUT.graphml (for networkx, Gephi, yEd), OUT.dot (Graphviz: dot -Tsvg OUT.dot) and OUT.html (opens
offline: nodes coloured by host-quality class, sized by the items they keep, groups highlightable). A crawl
asks each node route stats (nodes without it: their known-hosts samples)."""


def graph(
    out: Annotated[Path, typer.Option(help="Path prefix of the files written (.graphml, .dot, .html).")] = (
        Path("overlay")
    ),
    crawl_from: Annotated[
        str | None, typer.Option("--crawl", metavar="HOST:PORT", help="Crawl the overlay from this node.")
    ] = None,
    tracker: Annotated[
        str | None, typer.Option(metavar="URL", help="Read the tracker's database (sqlite:PATH, postgresql://...).")
    ] = None,
    max_nodes: Annotated[int, typer.Option(help="Crawl: most nodes asked.", min=1)] = 500,
    time_limit: Annotated[float, typer.Option(help="Crawl: seconds at most.", min=0.1)] = 60.0,
    timeout: Annotated[float, typer.Option(help="Crawl: seconds per request.", min=0.01)] = 5.0,
    max_age: Annotated[
        float | None, typer.Option(help="Tracker: only nodes whose last snapshot is at most this many seconds "
                                        "older than the newest.", min=0)
    ] = None,
) -> None:
    """Draw the overlay: GraphML, DOT, and a self-contained HTML page."""
    import butter

    from ._graph import crawl, overlay_graph

    if (crawl_from is None) == (tracker is None):
        raise _fail("give one of --crawl HOST:PORT or --tracker URL", 2)
    if crawl_from is not None:
        start = _address(crawl_from)

        async def walk() -> list[Snapshot]:
            from rich.progress import Progress

            async with butter.open_node(client_settings(timeout)) as client:
                with Progress(console=console(stderr=True), transient=True) as progress:
                    task = progress.add_task("crawling", total=None)

                    def show(done: int, queued: int) -> None:
                        progress.update(task, completed=done, total=queued, description=f"crawled {done}/{queued}")

                    return await crawl(client, start, max_nodes=max_nodes, time_limit=time_limit, timeout=timeout,
                                       on_progress=show)

        snapshots: list[Snapshot] = _run(walk, what=f"cannot crawl from {start}")
        source = f"crawled from {start}"
    else:
        snapshots = _read_tracker(str(tracker), max_age)
        source = f"tracker {tracker}"
    overlay = overlay_graph(snapshots)
    written = write_graph(overlay, out, title=f"Butter overlay ({source})")
    for path in written:
        console().print(f"wrote {path}")
    console().print(f"{overlay.number_of_nodes()} nodes, {overlay.number_of_edges()} links")


def _check_tracker(url: str) -> None:
    from ._database import check_url

    try:
        check_url(url)
    except ValueError as exc:
        raise _fail(str(exc), 2) from None
    if url.startswith("sqlite:") and not Path(url.removeprefix("sqlite:")).is_file():
        raise _fail(f"no tracker database at {url.removeprefix('sqlite:')}")


def _read_tracker(url: str, max_age: float | None) -> list[Snapshot]:
    from ._database import open_database

    _check_tracker(url)
    try:
        database = open_database(url)
    except Exception as exc:
        raise _fail(f"cannot open {url}: {exc}") from None
    try:
        return database.latest(max_age=max_age)
    finally:
        database.close()


def write_graph(overlay: Any, out: Path, *, title: str) -> list[Path]:
    """Write ``out``.graphml, ``out``.dot and ``out``.html; returns their paths."""
    import networkx as nx

    from ._graph import to_dot
    from ._html import COLOURS, render_html

    out.parent.mkdir(parents=True, exist_ok=True)
    graphml, dot, page = (out.with_name(out.name + suffix) for suffix in (".graphml", ".dot", ".html"))
    nx.write_graphml(overlay, graphml)
    dot.write_text(to_dot(overlay, colours=COLOURS), encoding="utf-8")
    page.write_text(render_html(overlay, title=title), encoding="utf-8")
    return [graphml, dot, page]


# -- butter tracker serve -----------------------------------------------------------------------------------

SERVE_EPILOG = """**Examples**

  butter tracker serve sqlite:tracker.db

  butter tracker serve postgresql://butter@localhost/butter --port 8090 --expiry 60

Serves on 127.0.0.1 (unless --host says otherwise) a page drawing the nodes whose last snapshot is at most
--expiry seconds old, as `butter graph` draws them, redrawn every --refresh seconds from /overlay.json.
Runs until Ctrl-C."""


def tracker_serve(
    url: Annotated[str, typer.Argument(metavar="URL", help="The tracker's database: sqlite:PATH or postgresql://...")],
    host: Annotated[str, typer.Option(metavar="ADDRESS", help="Interface to serve on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to serve on; 0 picks a free one.", min=0, max=65535)] = 8090,
    refresh: Annotated[float, typer.Option(help="Seconds between two redraws of the page.", min=0.1)] = 2.0,
    expiry: Annotated[
        float, typer.Option(help="Seconds after its last snapshot a node counts as gone (default: 3 tracker "
                                 "intervals).", min=0.1)
    ] = 30.0,
) -> None:
    """Serve a page showing the live overlay from the tracker's database, refreshing itself."""
    import signal

    import anyio
    import anyio.abc

    from ._live import serve_live

    _check_tracker(url)

    def listening(bound: int) -> None:
        console().print(f"tracker view on http://{host}:{bound}/ (Ctrl-C to stop)")

    failed: list[OSError] = []

    async def serve(tg: anyio.abc.TaskGroup) -> None:
        try:
            await serve_live(url, host, port, refresh=refresh, expiry=expiry, on_listening=listening)
        except OSError as exc:
            failed.append(exc)
            tg.cancel_scope.cancel()

    async def until_signalled() -> None:
        # Ctrl-C or SIGTERM cancels the server inside the loop (no KeyboardInterrupt thrown into whatever
        # runs, a database read in a worker thread included), so the process always ends promptly.
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with anyio.create_task_group() as tg:
                tg.start_soon(serve, tg)
                async for _ in signals:
                    tg.cancel_scope.cancel()
                    break

    anyio.run(until_signalled)
    if failed:
        raise _fail(f"cannot serve on {host}:{port}: {failed[0]}")
    console(stderr=True).print("stopped")
