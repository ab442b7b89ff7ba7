"""The ``butter`` command: run a node and look inside a running overlay.

One function per command; shared plumbing (settings, logging, running async code, error exits) lives in
:mod:`butter._cli_support` and what the inspection commands gather in :mod:`butter._cli_inspect`. To add a
command: write ``@app.command()`` here, build settings with ``load_or_exit``, run a coroutine with
``run_async``.

Settings come, highest priority first, from explicit flags (``--port``), extra ``--section.key VALUE`` pairs,
``BUTTER_*`` environment variables, the ``[butter]`` table of ``--config`` (default ``./butter.toml``), and
the defaults (see :mod:`butter.settings`).
"""

from __future__ import annotations

import json
import logging
import signal
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated, Any

import anyio
import typer
from rich.markup import escape
from rich.table import Table

from . import __version__
from ._cli_inspect import installed_plugins, probe_settings, query_peers, settings_rows, settings_toml
from ._cli_support import (
    EXTRA_ARGS,
    Backend,
    LogLevel,
    console,
    err_console,
    fail,
    load_or_exit,
    run_async,
    setup_logging,
)
from ._node import Node, open_node
from .blocks import is_block_id
from .errors import ButterError
from .peers import PeerAddress
from .settings import ButterSettings

__all__ = ["app", "main"]

log = logging.getLogger("butter.cli")

app = typer.Typer(
    name="butter",
    help="Butter: build decentralised applications on an unstructured peer-to-peer overlay.",
    epilog="Settings: flags > --section.key VALUE > BUTTER_* environment > butter.toml [butter] > defaults. "
    "Run `butter settings` to see them all.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
)

# -- options shared by several commands ---------------------------------------------------------------------

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        metavar="FILE",
        help="TOML file whose [butter] table holds settings. Default: ./butter.toml if present.",
        dir_okay=False,
    ),
]
BackendOption = Annotated[
    Backend, typer.Option("--backend", help="Async library to run on.", case_sensitive=False)
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table, for scripts.")]

NodeOption = Annotated[str, typer.Option("--node", "-n", metavar="HOST:PORT", help="A running node.")]
ClientHostOption = Annotated[str, typer.Option(help="Address the short-lived client node listens on.")]

COMMAND_GROUP = "butter.commands"  # entry points adding commands to `butter` (see _register_commands)
SLOTS_SHOWN = ("transport", "discovery", "host_manager", "persistence", "retrieval")


def address_or_exit(text: str) -> PeerAddress:
    """Parse ``HOST:PORT`` or exit with status 2 saying why."""
    try:
        return PeerAddress.parse(text)
    except ValueError as exc:
        fail(str(exc), 2)


def _version(value: bool) -> None:
    if value:
        console.print(f"butter {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", callback=_version, is_eager=True)
    ] = False,
) -> None:
    """Butter: build decentralised applications on an unstructured peer-to-peer overlay."""


# -- butter node --------------------------------------------------------------------------------------------


@app.command(
    "node",
    context_settings=EXTRA_ARGS,
    epilog="""**Examples**

  butter node --host 127.0.0.1 --port 9000

  butter node --host 127.0.0.1 --port 9001 --peer 127.0.0.1:9000

  butter node --memory_budget 1GiB --host_manager.options '{"capacity": 8}'

  BUTTER_TRANSPORT__DRIVER=tcp butter node --config ./butter.toml

Any other setting is accepted as --section.key VALUE (dots for nesting, JSON for lists and tables);
list them with `butter settings`. Exit status: 0 after a graceful exit, 1 on a runtime failure,
2 on invalid settings.""",
)
def node(
    ctx: typer.Context,
    config: ConfigOption = None,
    host: Annotated[
        str | None, typer.Option(help="Interface address to listen on (0.0.0.0: every interface).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on, 0 to 65535; 0 lets the OS pick.")] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Directory for the node's identity key and durable data. Unset: ephemeral node."),
    ] = None,
    peer: Annotated[
        list[str] | None,
        typer.Option(
            "--peer", "-p", metavar="HOST:PORT", help="Peer to contact at start (static discovery). Repeatable."
        ),
    ] = None,
    transport: Annotated[
        str | None, typer.Option(metavar="NAME", help="Transport driver, e.g. tcp or memory (see `butter plugins`).")
    ] = None,
    discovery: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAME",
            help="Discovery driver, e.g. static. Repeatable; replaces the configured list. "
            "Disable all with --discovery.drivers '[]'.",
        ),
    ] = None,
    log_level: Annotated[LogLevel, typer.Option(help="Least severe log level shown.", case_sensitive=False)] = (
        LogLevel.INFO
    ),
    backend: BackendOption = Backend.asyncio,
    tracker: Annotated[
        str | None,
        typer.Option(metavar="URL", help="Write snapshots to this tracker database (sqlite:PATH or postgresql://...); "
                     "needs butter-observe (setting plugins.observe.tracker_url)."),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve Prometheus /metrics on this port of 127.0.0.1 (plugins.observe.metrics_port; "
                     "needs butter-observe).", min=0, max=65535),
    ] = None,
    stats_route: Annotated[
        bool, typer.Option("--stats-route", help="Answer route stats, for `butter stats` and `butter graph` "
                           "(plugins.observe.stats_route; needs butter-observe).")
    ] = False,
) -> None:
    """Run a node with the configured stack until Ctrl-C / SIGTERM, then leave gracefully.

    Prints the node id, the address peers should dial and the selected drivers, then logs peers joining
    and leaving.
    """
    settings = load_or_exit(
        config,
        ctx.args,
        host=host,
        port=port,
        data_dir=data_dir,
        peers=peer or None,
        transport={"driver": transport} if transport else None,
        discovery={"drivers": discovery} if discovery else None,
        plugins=_observe_options(tracker, metrics_port, stats_route),
    )
    setup_logging(log_level)
    run_async(_run_node, settings, backend=backend)
    console.print("[green]left gracefully[/]")


def _observe_options(tracker: str | None, metrics_port: int | None, stats_route: bool) -> dict[str, Any] | None:
    """The ``plugins.observe`` options the shortcuts ``--tracker``, ``--metrics-port``, ``--stats-route`` set."""
    options: dict[str, Any] = {}
    if tracker is not None:
        options["tracker_url"] = tracker
    if metrics_port is not None:
        options["metrics_port"] = metrics_port
    if stats_route:
        options["stats_route"] = True
    return {"observe": options} if options else None


async def _run_node(settings: ButterSettings) -> None:
    # The signal receiver is opened before the node starts, so that Ctrl-C or SIGTERM at any moment means a
    # graceful exit. (Node.wait_for_exit installs its receiver only once awaited, after start-up: a signal
    # arriving in between would kill the process abruptly.)
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_node(settings) as running:
            _print_started(running)
            async for signum in signals:
                log.info("received %s, leaving gracefully", signal.Signals(signum).name)
                break


def _print_started(running: Node) -> None:
    drivers = "  ".join(
        f"{slot.replace('_', ' ')} [b]{escape(','.join(running.plugins.selected(slot)) or '-')}[/]"
        for slot in SLOTS_SHOWN
    )
    console.print(f"butter node [b]{running.node_id}[/]", highlight=False)
    console.print(f"  listening on [b cyan]{running.address}[/]", highlight=False)
    console.print(f"  {drivers}", highlight=False)
    if running.settings.peers:
        console.print(f"  peers to contact: {', '.join(running.settings.peers)}", highlight=False)
    console.print("  press Ctrl-C to leave", style="dim")


# -- butter peers -------------------------------------------------------------------------------------------


@app.command(
    "peers",
    context_settings=EXTRA_ARGS,
    epilog="""**Examples**

  butter peers 127.0.0.1:9000

  butter peers 127.0.0.1:9000 --json --timeout 2

The node answers route known-hosts with a random sample of at most 16 hosts, so it is asked up to
--rounds times until every host it reports knowing has been seen; with a long list the table may
still be a sample (the header says so). The query is invisible to the node: it is not introduced to
it and does not count toward its known_by. Exit status 1 when the node cannot be reached.""",
)
def peers(
    ctx: typer.Context,
    address: Annotated[str, typer.Argument(metavar="ADDR", help="HOST:PORT of a running node.")],
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each reply.", min=0.01)] = 5.0,
    rounds: Annotated[int, typer.Option(help="Most known-hosts samples to ask for.", min=1)] = 8,
    json_output: JsonOption = False,
    host: ClientHostOption = "127.0.0.1",
    transport: Annotated[
        str | None, typer.Option(metavar="NAME", help="Transport driver to use. Default: the configured one (tcp).")
    ] = None,
    config: ConfigOption = None,
    backend: BackendOption = Backend.asyncio,
) -> None:
    """Ask a running node for its known hosts and print them (id, address, uptime, storage, known hosts)."""
    target = address_or_exit(address)
    base = load_or_exit(config, ctx.args, transport={"driver": transport} if transport else None)
    setup_logging(LogLevel.WARNING)
    settings = probe_settings(base, host=host, timeout=timeout)
    report = run_async(
        query_peers, settings, target, timeout=timeout, rounds=rounds, backend=backend,
        context=f"cannot query {target}",
    )
    if json_output:
        typer.echo(json.dumps(report.to_json(), indent=2))
        return
    me = report.target
    quality = me.quality
    console.print(
        f"node [b]{me.node_id}[/] at [b cyan]{report.dialled}[/] (advertises {me.address}): "
        f"ping {report.rtt * 1000:.1f} ms, up {quality.uptime:.0f} s, {quality.available_storage} bytes free, "
        f"knows {quality.known_hosts}, known by {quality.known_by}",
        highlight=False,
    )
    if not report.hosts:
        console.print("it knows no hosts yet", style="dim")
        return
    table = Table("node id", "address", "uptime s", "storage bytes", "known hosts", "known by")
    for info in report.hosts:
        q = info.quality
        table.add_row(
            info.node_id, str(info.address), f"{q.uptime:.0f}", str(q.available_storage), str(q.known_hosts),
            str(q.known_by),
        )
    console.print(table)
    shown = f"{len(report.hosts)} of {quality.known_hosts} known hosts after {report.rounds} sample(s)"
    console.print(shown if report.complete else f"{shown} (a sample: ask again or raise --rounds)", style="dim")


# -- butter plugins -----------------------------------------------------------------------------------------


@app.command(
    "plugins",
    context_settings=EXTRA_ARGS,
    epilog="""**Examples**

  butter plugins

  BUTTER_TRANSPORT__DRIVER=memory butter plugins --json

Drivers are read from installed package metadata (entry-point groups butter.transport,
butter.discovery, butter.host_manager, butter.persistence, butter.retrieval, and butter.plugins for
observers); none is imported. Select one with e.g. BUTTER_TRANSPORT__DRIVER=NAME or
[butter.transport] driver = "NAME" in butter.toml.""",
)
def plugins(ctx: typer.Context, json_output: JsonOption = False, config: ConfigOption = None) -> None:
    """List the installed drivers for every slot and mark the ones the current settings select."""
    settings = load_or_exit(config, ctx.args)
    rows = installed_plugins(settings)
    if json_output:
        typer.echo(json.dumps([row.to_json() for row in rows], indent=2))
        return
    table = Table("slot", "driver", "selected", "entry point", "distribution")
    previous = None
    for row in rows:
        if previous is not None and row.slot != previous:
            table.add_section()
        mark = "[green]✓[/]" if row.selected and row.installed else ""
        if not row.installed:
            mark = "[red]✗ not installed[/]"
        table.add_row(row.slot if row.slot != previous else "", row.name, mark, row.target, row.distribution)
        previous = row.slot
    console.print(table)


# -- butter settings ----------------------------------------------------------------------------------------


@app.command(
    "settings",
    context_settings=EXTRA_ARGS,
    epilog="""**Examples**

  butter settings

  butter settings --port 9000 --toml > butter.toml

  BUTTER_HOST_MANAGER__OPTIONS='{"capacity": 8}' butter settings --json

Each key can be set in butter.toml under [butter] (nested keys in tables such as
[butter.transport]), as the environment variable shown, or on the command line as --key VALUE
(nested: --transport.driver tcp).""",
)
def settings(
    ctx: typer.Context,
    json_output: JsonOption = False,
    toml_output: Annotated[bool, typer.Option("--toml", help="Print a butter.toml document.")] = False,
    config: ConfigOption = None,
) -> None:
    """Print the effective settings and where each one can be set."""
    effective = load_or_exit(config, ctx.args)
    if json_output:
        typer.echo(effective.model_dump_json(indent=2))
        return
    if toml_output:
        typer.echo(settings_toml(effective), nl=False)
        return
    table = Table("key", "value", "environment variable", "meaning")
    for row in settings_rows(effective):
        value = json.dumps(row.value) if not isinstance(row.value, str) else row.value
        table.add_row(row.key, escape(value), row.env, escape(row.description))
    console.print(table)
    err_console.print(
        r"precedence: flags > BUTTER_* environment > butter.toml \[butter] > defaults", style="dim"
    )


# -- butter demo --------------------------------------------------------------------------------------------


@app.command(
    "demo",
    epilog="""**Examples**

  butter demo

  butter demo --nodes 10 --limit 200

  butter demo --corpus ~/src/myproject --transport memory

Phases: start the nodes and let them find each other; store the corpus (every .py file, one random node
each; PCG replicates each to 3 nodes); kill a third of the nodes one after another with their data; then
retrieve every item from a fresh node that never held any and compare it byte for byte. Every node listens
on 127.0.0.1 only (static discovery: nothing is sent anywhere else). Exit status 0 when every item came
back intact.""",
)
def demo(
    nodes: Annotated[int, typer.Option(help="How many nodes to start.", min=4, max=200)] = 20,
    corpus: Annotated[
        Path | None,
        typer.Option(help="Directory whose .py files are stored. Default: this Python's standard library.",
                     exists=True, file_okay=False),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Store at most this many files.", min=1)] = None,
    kill_fraction: Annotated[float, typer.Option(help="Share of the nodes killed.", min=0.0, max=0.5)] = 1 / 3,
    transport: Annotated[str, typer.Option(metavar="NAME", help="tcp (loopback sockets) or memory.")] = "tcp",
    seed: Annotated[int, typer.Option(help="Random seed: which node stores what, who dies.")] = 1,
    log_level: Annotated[LogLevel, typer.Option(help="Least severe log level shown.", case_sensitive=False)] = (
        LogLevel.WARNING
    ),
    backend: BackendOption = Backend.asyncio,
    tracker: Annotated[
        str | None,
        typer.Option(metavar="URL", help="Every node writes a snapshot each second to this tracker database "
                     "(sqlite:PATH or postgresql://...; needs butter-observe); draw it with `butter graph --tracker`."),
    ] = None,
) -> None:
    """Store a real corpus on a local network, kill a third of it, retrieve everything from a fresh node."""
    from ._demo import run_demo

    setup_logging(log_level)
    observe = {"observe": {"tracker_url": tracker, "tracker_interval": 1.0}} if tracker else None
    result = run_async(run_demo, nodes, corpus=corpus, limit=limit, transport=transport,
                       kill_fraction=kill_fraction, seed=seed, console=console, plugins=observe, backend=backend)
    if not result.ok:
        raise typer.Exit(1)


# -- butter put ---------------------------------------------------------------------------------------------


@app.command(
    "put",
    context_settings=EXTRA_ARGS,
    epilog="""**Examples**

  butter put notes.txt --node 127.0.0.1:9000

  echo hello | butter put - --node 127.0.0.1:9000 --media-type text/plain

The file is cut into blocks here and uploaded to the node's `store` route in batches of about 1 MiB;
the node then keeps it with its persistence driver (PCG: three replicas by default). Prints the
content id. Exit status 1 if the node cannot be reached or has no room.""",
)
def put(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(metavar="FILE", help="File to store; - reads standard input.")],
    node_address: NodeOption = "127.0.0.1:9000",
    media_type: Annotated[str, typer.Option(help="Media type recorded in the manifest.")] = (
        "application/octet-stream"
    ),
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each reply.", min=0.01)] = 30.0,
    host: ClientHostOption = "127.0.0.1",
    config: ConfigOption = None,
    backend: BackendOption = Backend.asyncio,
) -> None:
    """Store a file on the overlay through a running node and print its content id."""
    import sys

    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from ._cli_data import upload

    target = address_or_exit(node_address)
    try:
        data = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as exc:
        fail(f"cannot read {file}: {exc}", 2)
    base = load_or_exit(config, ctx.args)
    setup_logging(LogLevel.WARNING)
    settings = probe_settings(base, host=host, timeout=timeout)
    with Progress(BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=err_console,
                  transient=True, disable=len(data) < UPLOAD_PROGRESS_FROM) as progress:
        task = progress.add_task("upload", total=len(data))

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        content_id = run_async(upload, settings, target, data, media_type=media_type, timeout=timeout,
                               on_progress=advance, backend=backend, context=f"cannot store on {target}")
    typer.echo(content_id)


UPLOAD_PROGRESS_FROM = 4 * 1024 * 1024  # bytes: smaller uploads show no progress bar


# -- butter get ---------------------------------------------------------------------------------------------


@app.command(
    "get",
    context_settings=EXTRA_ARGS,
    epilog="""**Examples**

  butter get 3f2a...e9 --node 127.0.0.1:9000 -o notes.txt

  butter get 3f2a...e9 --node 127.0.0.1:9000 > notes.txt

A short-lived client node joins through --node, searches the overlay for the content id (random TTL
breadth-first search, bfs driver), then fetches the blocks in parallel from the holders, each verified
against its address, and writes them in order. Exit status 1 when the item cannot be found.""",
)
def get(
    ctx: typer.Context,
    content_id: Annotated[str, typer.Argument(metavar="CID", help="Content id printed by `butter put`.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write; default standard output.", dir_okay=False)
    ] = None,
    node_address: NodeOption = "127.0.0.1:9000",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each reply.", min=0.01)] = 10.0,
    host: ClientHostOption = "127.0.0.1",
    config: ConfigOption = None,
    backend: BackendOption = Backend.asyncio,
) -> None:
    """Retrieve an item by content id through a running node and write it out, verified block by block."""
    import sys

    from rich.progress import DownloadColumn, Progress, SpinnerColumn, TransferSpeedColumn

    from ._cli_data import download

    target = address_or_exit(node_address)
    if not is_block_id(content_id):
        fail(f"a content id is 64 lowercase hex characters, got {content_id!r}", 2)
    base = load_or_exit(config, ctx.args)
    setup_logging(LogLevel.WARNING)
    settings = probe_settings(base, host=host, timeout=timeout).model_copy(update={
        "retrieval": base.retrieval, "peers": [str(target)]})
    sink = output.open("wb") if output is not None else sys.stdout.buffer
    try:
        with Progress(SpinnerColumn(), DownloadColumn(), TransferSpeedColumn(), console=err_console,
                      transient=True, disable=output is None) as progress:
            task = progress.add_task("download", total=None)
            written = run_async(download, settings, content_id, sink,
                               on_progress=lambda done: progress.update(task, completed=done),
                               backend=backend, context=f"cannot retrieve {content_id[:16]}")
    finally:
        if output is not None:
            sink.close()
    if output is not None:
        err_console.print(f"wrote {written} bytes to {output}", style="dim")


# -- butter sim ---------------------------------------------------------------------------------------------

sim_app = typer.Typer(help="Simulate many nodes in one process under a virtual clock.", no_args_is_help=True)
app.add_typer(sim_app, name="sim")


@sim_app.command(
    "churn",
    epilog="""**Examples**

  butter sim churn --nodes 250 --death-rate 0.02 --churn 30 --heartbeat 2 --seed 1

  butter sim churn --death-rate 0.02 --death-rate 0.01 --death-rate 0.001 --out results/

Reproduces the report's persistence experiment P2 (Shinebourne, Warwick 2022): the nodes run the real
protocol code on the in-process memory transport, on trio with a virtual clock, so 30 s of churn take
seconds. Each death is abrupt (no hand-off); a replacement node keeps the population constant. Each rate
is also run with a single copy per item (the naive baseline: the `single` persistence driver) unless
--no-baseline.""",
)
def sim_churn(
    nodes: Annotated[int, typer.Option(help="Live nodes at all times.", min=2)] = 250,
    death_rate: Annotated[
        list[float] | None,
        typer.Option(help="Probability a node dies in a given second. Repeatable.", min=0.0, max=1.0),
    ] = None,
    churn: Annotated[float, typer.Option(help="Seconds of churn.", min=0)] = 30.0,
    heartbeat: Annotated[float, typer.Option(help="PCG heartbeat interval, seconds.", min=0.01)] = 2.0,
    replicas: Annotated[int, typer.Option(help="PCG target replicas r.", min=1)] = 3,
    grace: Annotated[float, typer.Option(help="Seconds a new node is immune.", min=0)] = 10.0,
    settle: Annotated[float, typer.Option(help="Seconds after churn before measuring.", min=0)] = 30.0,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same run.")] = 1,
    baseline: Annotated[bool, typer.Option(help="Also run the single-copy baseline.")] = True,
    out: Annotated[
        Path | None, typer.Option(help="Directory for churn.json, churn.csv and churn.png.", file_okay=False)
    ] = None,
) -> None:
    """Run the churn experiment and print the retention table."""
    from dataclasses import replace

    from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

    from ._cli_data import write_churn_outputs
    from .testing.sim import ChurnConfig, run_churn_sync

    rates = death_rate or [0.02]
    setup_logging(LogLevel.WARNING)
    configs = [ChurnConfig(nodes=nodes, death_rate=r, churn=churn, heartbeat=heartbeat, replicas=replicas,
                           grace=grace, settle=settle, seed=seed) for r in rates]
    rows: list[dict[str, object]] = []
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=err_console,
                  transient=True) as progress:
        for config in configs:
            runs = [("PCG", config)] + ([("baseline", replace(config, persistence="single"))] if baseline else [])
            outcome = {}
            for label, run in runs:
                task = progress.add_task(f"{label} at {run.death_rate:g}/s", total=1.0)

                def show(phase: str, fraction: float, task: TaskID = task, title: str = f"{label} at "
                         f"{run.death_rate:g}/s") -> None:
                    progress.update(task, completed=fraction, description=f"{title}: {phase}")

                try:
                    outcome[label] = run_churn_sync(run, show)
                except ButterError as exc:
                    fail(str(exc))
                progress.remove_task(task)
            pcg = outcome["PCG"]
            rows.append({
                "nodes": nodes, "churn": churn, "heartbeat": heartbeat, "death_rate": config.death_rate,
                "items": pcg.items, "deaths": pcg.deaths, "retention": pcg.retention,
                "replicas_per_item": round(pcg.replicas_per_item, 3),
                "maintenance_per_node_second": round(pcg.maintenance_per_node_second, 3),
                "baseline_retention": outcome["baseline"].retention if baseline else None,
                "wall_seconds": round(pcg.wall_seconds, 1),
            })
    table = Table("death rate /s", "items", "deaths", "retained (PCG)", "single copy", "replicas/item",
                  "PCG msgs/node/s", "wall s", title=f"Retention under churn: {nodes} nodes, {churn:g} s, "
                  f"heartbeat {heartbeat:g} s, r = {replicas}, seed {seed}")
    for row in rows:
        base = row["baseline_retention"]
        table.add_row(f"{row['death_rate']:g}", str(row["items"]), str(row["deaths"]), f"{row['retention']:.1%}",
                      "-" if base is None else f"{base:.1%}", f"{row['replicas_per_item']:.2f}",
                      f"{row['maintenance_per_node_second']:.2f}", f"{row['wall_seconds']:.0f}")
    console.print(table)
    if out is not None:
        for path in write_churn_outputs(rows, out):
            console.print(f"wrote {path}", style="dim")


def _register_commands() -> None:
    """Add the commands other distributions offer: each entry point of group ``butter.commands`` is a function
    ``register(app)`` adding its commands to this Typer app (butter-observe: ``stats``, ``graph``). One that
    fails to load is skipped with a warning."""
    for entry_point in entry_points(group=COMMAND_GROUP):
        try:
            entry_point.load()(app)
        except Exception as exc:
            log.warning("commands of %s (%s) not loaded: %s: %s", entry_point.name, entry_point.value,
                        type(exc).__name__, exc)


_register_commands()


def main() -> None:
    """Console-script entry point (``butter``)."""
    app()


if __name__ == "__main__":
    main()
