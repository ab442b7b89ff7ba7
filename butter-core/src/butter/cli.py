"""The ``butter`` command: run a node and look inside a running overlay.

One function per command; shared plumbing (settings, logging, running async code, error exits) lives in
:mod:`butter._cli_support`, what the inspection commands gather in :mod:`butter._cli_inspect` and
:mod:`butter._cli_peers`, the simulator in :mod:`butter._cli_sim`. To add a command: write
``@app.command()`` here, build settings with ``load_or_exit``, run a coroutine with ``run_async``.

Start-up time matters (``butter --help`` is the first thing a newcomer runs; benchmarks/startup.py measures
it): this module imports only typer at load time, and each command imports what it uses in its body.

Settings come, highest priority first, from explicit flags (``--port``), extra ``--section.key VALUE`` pairs,
``BUTTER_*`` environment variables, the ``[butter]`` table of ``--config`` (default ``./butter.toml``), and
the defaults (see :mod:`butter.settings`).
"""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ._cli_documents import doc_app
from ._cli_names import KeyOption, name_app
from ._cli_sim import sim_app
from ._cli_support import (
    EXTRA_ARGS,
    Backend,
    BackendOption,
    ClientHostOption,
    ConfigOption,
    LogFormat,
    LogFormatOption,
    LogLevel,
    NodeOption,
    address_or_exit,
    console,
    err_console,
    examples,
    exit_on_errors,
    fail,
    item_or_exit,
    load_or_exit,
    run_async,
    setup_logging,
)

if TYPE_CHECKING:
    from ._cli_inspect import DriverRow
    from ._node import Node
    from .settings import ButterSettings

__all__ = ["app", "main"]

app = typer.Typer(
    name="butter",
    help="Butter: build decentralised applications on an unstructured peer-to-peer overlay.",
    epilog="Settings: flags > --section.key VALUE > BUTTER_* environment > butter.toml [butter] > defaults. "
    "Run `butter settings` to see them all.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # click's plain help: rich's costs a third of a second at every start
    pretty_exceptions_enable=False,
)
app.add_typer(sim_app, name="sim")
app.add_typer(name_app, name="name")
app.add_typer(doc_app, name="doc")

# -- options shared by several commands ---------------------------------------------------------------------

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table, for scripts.")]


COMMAND_GROUP = "butter.commands"  # entry points adding commands to `butter` (see _register_commands)


def _version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"butter {__version__}")
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
    epilog=examples(
        "butter node --host 127.0.0.1 --port 9000",
        "butter node --host 127.0.0.1 --port 9001 --peer 127.0.0.1:9000",
        "butter node --memory_budget 1GiB --host_manager.options '{\"capacity\": 8}'",
        "BUTTER_TRANSPORT__DRIVER=tcp butter node --config ./butter.toml",
        "",
        "Any other setting is accepted as --section.key VALUE (dots for nesting, JSON for lists and tables); "
        "list them with `butter settings`, and a driver's options with `butter plugins --options DRIVER`. "
        "Exit status: 0 after a graceful exit, 1 on a runtime failure, 2 on invalid settings.",
    ),
)
def node(
    ctx: typer.Context,
    config: ConfigOption = None,
    host: Annotated[
        str | None, typer.Option(metavar="ADDRESS", help="Interface address to listen on (0.0.0.0: every interface).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(metavar="PORT", help="Port to listen on, 0 to 65535; 0 lets the OS pick.")
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(metavar="DIR", help="Directory for the node's identity key and durable data. Unset: ephemeral "
                     "node."),
    ] = None,
    peer: Annotated[
        list[str] | None,
        typer.Option(
            "--peer", "-p", metavar="HOST:PORT",
            help="Peer to contact at start, by static discovery, which runs beside the configured discovery "
            "drivers. Repeatable.",
        ),
    ] = None,
    transport: Annotated[
        str | None, typer.Option(metavar="NAME", help="Transport driver, e.g. tcp or memory (see `butter plugins`).")
    ] = None,
    discovery: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAME",
            help="Discovery driver, e.g. static. Repeatable; replaces the configured list (default: multicast). "
            "Disable all with --discovery.drivers '[]'.",
        ),
    ] = None,
    log_level: Annotated[LogLevel, typer.Option(help="Least severe log level shown.", case_sensitive=False)] = (
        LogLevel.INFO
    ),
    log_format: LogFormatOption = LogFormat.text,
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
    setup_logging(log_level, log_format)
    run_async(_run_node, settings, backend=backend)
    console().print("[green]left gracefully[/]")


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
    import logging
    import signal

    import anyio

    from ._node import open_node

    # The signal receiver is opened before the node starts, so that Ctrl-C or SIGTERM at any moment means a
    # graceful exit. (Node.wait_for_exit installs its receiver only once awaited, after start-up: a signal
    # arriving in between would kill the process abruptly.)
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_node(settings) as running:
            _print_started(running)
            async for signum in signals:
                logging.getLogger("butter.cli").info("received %s, leaving gracefully", signal.Signals(signum).name)
                break


def _print_started(running: Node) -> None:
    from rich.markup import escape

    out = console()
    out.print(f"butter node [b]{running.node_id}[/]", highlight=False)
    where = f"  listening on [b cyan]{escape(str(running.address))}[/]"
    if running.plugins.selected("transport") == ["memory"]:
        where += (f" (memory transport: the in-process network {running.address.host!r}; nothing outside this "
                  "process can reach it)")
    out.print(where, highlight=False)
    out.print(f"  {escape(running.plugins.describe())}", highlight=False)
    if running.settings.peers:
        out.print(f"  peers to contact: {', '.join(running.settings.peers)}", highlight=False)
    out.print("  press Ctrl-C to leave", style="dim")


# -- butter peers -------------------------------------------------------------------------------------------


@app.command(
    "peers",
    context_settings=EXTRA_ARGS,
    epilog=examples(
        "butter peers 127.0.0.1:9000",
        "butter peers 127.0.0.1:9000 --json --timeout 2",
        "",
        "The node answers route known-hosts with a random sample of at most 16 hosts, so it is asked up to "
        "--rounds times until every host it reports knowing has been seen; with a long list the table may "
        "still be a sample (the header says so). The query is invisible to the node: it is not introduced to "
        "it and does not count toward its known_by. Exit status 1 when the node cannot be reached.",
    ),
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
    log_format: LogFormatOption = LogFormat.text,
    backend: BackendOption = Backend.asyncio,
) -> None:
    """Ask a running node for its known hosts and print them (id, address, uptime, storage, known hosts)."""
    import json

    from rich.table import Table

    from ._cli_peers import probe_settings, query_peers

    target = address_or_exit(address)
    base = load_or_exit(config, ctx.args, transport={"driver": transport} if transport else None)
    setup_logging(LogLevel.WARNING, log_format)
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
    out = console()
    out.print(
        f"node [b]{me.node_id}[/] at [b cyan]{report.dialled}[/] (advertises {me.address}): "
        f"ping {report.rtt * 1000:.1f} ms, up {quality.uptime:.0f} s, {quality.available_storage} bytes free, "
        f"knows {quality.known_hosts}, known by {quality.known_by}",
        highlight=False,
    )
    if not report.hosts:
        out.print("it knows no hosts yet", style="dim")
        return
    table = Table("node id", "address", "uptime s", "storage bytes", "known hosts", "known by")
    for info in report.hosts:
        q = info.quality
        table.add_row(
            info.node_id, str(info.address), f"{q.uptime:.0f}", str(q.available_storage), str(q.known_hosts),
            str(q.known_by),
        )
    out.print(table)
    shown = f"{len(report.hosts)} of {quality.known_hosts} known hosts after {report.rounds} sample(s)"
    out.print(shown if report.complete else f"{shown} (a sample: ask again or raise --rounds)", style="dim")


# -- butter plugins -----------------------------------------------------------------------------------------


@app.command(
    "plugins",
    context_settings=EXTRA_ARGS,
    epilog=examples(
        "butter plugins",
        "butter plugins --options tcp",
        "butter plugins --options discovery:static --json",
        "BUTTER_TRANSPORT__DRIVER=memory butter plugins --json",
        "",
        "Drivers are read from installed package metadata (entry-point groups butter.transport, "
        "butter.discovery, butter.host_manager, butter.persistence, butter.retrieval, and butter.plugins for "
        "observers); none is imported, except the one whose options --options prints. Select one with e.g. "
        "BUTTER_TRANSPORT__DRIVER=NAME or [butter.transport] driver = \"NAME\" in butter.toml.",
    ),
)
def plugins(
    ctx: typer.Context,
    options: Annotated[
        str | None,
        typer.Option("--options", metavar="DRIVER",
                     help="Print every option of DRIVER (NAME, or SLOT:NAME such as discovery:static): "
                     "name, type, default, meaning."),
    ] = None,
    json_output: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """List the installed drivers for every slot and mark the ones the current settings select."""
    import json

    from rich.table import Table

    if options is not None:
        _print_options(options, json_output)
        return
    from ._cli_inspect import installed_plugins

    rows = installed_plugins(load_or_exit(config, ctx.args))
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
    console().print(table)
    _warn_missing(rows)


def _warn_missing(rows: list[DriverRow]) -> None:
    """One line on stderr for each selected driver that is not installed: what to install."""
    from ._catalogue import SLOT_GROUPS, missing_driver_message

    for row in rows:
        if not row.installed:
            err_console().print(missing_driver_message(SLOT_GROUPS[row.slot], row.name), style="yellow",
                                highlight=False, markup=False)


def _print_options(spec: str, json_output: bool) -> None:
    import json

    from rich.markup import escape
    from rich.table import Table

    from ._cli_inspect import driver_options, resolve_driver

    with exit_on_errors():
        found = [(slot, name, driver_options(slot, name)) for slot, name in resolve_driver(spec)]
    if json_output:
        typer.echo(json.dumps([row.to_json() for _, _, rows in found for row in rows], indent=2))
        return
    out = console()
    for slot, name, rows in found:
        where = f"{slot}.options.{name}" if slot == "discovery" else f"{slot}.options"
        if not rows:
            out.print(f"the {slot.replace('_', ' ')} driver {name} takes no options", highlight=False)
            continue
        table = Table("option", "type", "default", "meaning", title=f"options of the {slot.replace('_', ' ')} "
                      f"driver {name}", title_justify="left")
        for row in rows:
            table.add_row(row.name, row.type, escape(row.default), escape(row.description))
        out.print(table)
        option = rows[0].name
        value = f'{{"{name}": {{"{option}": VALUE}}}}' if slot == "discovery" else f'{{"{option}": VALUE}}'
        out.print(f"Set one as {rows[0].env}=VALUE, --{slot}.options '{value}', or in butter.toml under "
                  f"[butter.{where}]; `butter settings` shows the effective values.", style="dim",
                  highlight=False, markup=False)


# -- butter settings ----------------------------------------------------------------------------------------


@app.command(
    "settings",
    context_settings=EXTRA_ARGS,
    epilog=examples(
        "butter settings",
        "butter settings --port 9000 --toml > butter.toml",
        "BUTTER_HOST_MANAGER__OPTIONS='{\"capacity\": 8}' butter settings --json",
        "",
        "Each key can be set in butter.toml under [butter] (nested keys in tables such as "
        "[butter.transport]), as the environment variable shown, or on the command line as --key VALUE "
        "(nested: --transport.driver tcp). The table shows every option of the selected drivers with its "
        "effective value; --json and --toml print the settings as given, with the drivers' own defaults left "
        "to the drivers.",
    ),
)
def settings(
    ctx: typer.Context,
    json_output: JsonOption = False,
    toml_output: Annotated[bool, typer.Option("--toml", help="Print a butter.toml document.")] = False,
    config: ConfigOption = None,
) -> None:
    """Print the effective settings, every option of the selected drivers, and where each can be set."""
    from rich.markup import escape
    from rich.table import Table

    from ._cli_inspect import installed_plugins, settings_rows, settings_toml

    effective = load_or_exit(config, ctx.args)
    if json_output:
        typer.echo(effective.model_dump_json(indent=2))
        return
    if toml_output:
        typer.echo(settings_toml(effective), nl=False)
        return
    with exit_on_errors():
        rows = settings_rows(effective)
    table = Table("key", "value", "environment variable", "meaning")
    for row in rows:
        table.add_row(row.key, escape(row.value), row.env, escape(row.description))
    console().print(table)
    _warn_missing(installed_plugins(effective))
    err_console().print(
        r"precedence: flags > BUTTER_* environment > butter.toml \[butter] > defaults", style="dim"
    )


# -- butter demo --------------------------------------------------------------------------------------------


@app.command(
    "demo",
    epilog=examples(
        "butter demo",
        "butter demo --nodes 10 --limit 200",
        "butter demo --corpus ~/src/myproject --transport memory",
        "",
        "Phases: start the nodes and let them find each other; store the corpus (every .py file, one random "
        "node each; PCG replicates each to 3 nodes); kill a third of the nodes one after another with their "
        "data; then retrieve every item from a fresh node that never held any and compare it byte for byte. "
        "Every node listens on 127.0.0.1 only (static discovery: nothing is sent anywhere else). Exit status "
        "0 when every item came back intact.",
    ),
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
    log_format: LogFormatOption = LogFormat.text,
    backend: BackendOption = Backend.asyncio,
    tracker: Annotated[
        str | None,
        typer.Option(metavar="URL", help="Every node writes a snapshot each second to this tracker database "
                     "(sqlite:PATH or postgresql://...; needs butter-observe); draw it with `butter graph --tracker`."),
    ] = None,
) -> None:
    """Store a real corpus on a local network, kill a third of it, retrieve everything from a fresh node."""
    from ._demo import run_demo

    setup_logging(log_level, log_format)
    observe = {"observe": {"tracker_url": tracker, "tracker_interval": 1.0}} if tracker else None
    result = run_async(run_demo, nodes, corpus=corpus, limit=limit, transport=transport,
                       kill_fraction=kill_fraction, seed=seed, console=console(), plugins=observe, backend=backend)
    if not result.ok:
        raise typer.Exit(1)


# -- butter put ---------------------------------------------------------------------------------------------


@app.command(
    "put",
    context_settings=EXTRA_ARGS,
    epilog=examples(
        "butter put notes.txt --node 127.0.0.1:9000",
        "echo hello | butter put - --node 127.0.0.1:9000 --media-type text/plain",
        "butter put diary.txt --encrypt --node 127.0.0.1:9000",
        "",
        "The file is cut into blocks here and uploaded to the node's `store` route in batches of about 1 MiB; "
        "the node then keeps it with its persistence driver (PCG: three replicas by default). Prints the "
        "content id. With --encrypt the file is first encrypted here under a fresh key (ChaCha20-Poly1305): "
        "nodes only see ciphertext, and what is printed is a capability, bcap1:<content id>:<key>, the one "
        "string that reads it back (`butter get`): keep it secret. With --owner the manifest names the owner "
        "key's public half (--key FILE, default the node key of data_dir): that key alone can delete the item "
        "with `butter rm`. "
        "Exit status 1 if the node cannot be reached or has no room, 2 for a missing key file.",
    ),
)
def put(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(metavar="FILE", help="File to store; - reads standard input.")],
    node_address: NodeOption = "127.0.0.1:9000",
    media_type: Annotated[str, typer.Option(help="Media type recorded in the manifest.")] = (
        "application/octet-stream"
    ),
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each reply.", min=0.01)] = 30.0,
    encrypt: Annotated[bool, typer.Option("--encrypt", help="Encrypt here; print a capability, not a content id.")
                       ] = False,
    owner: Annotated[bool, typer.Option("--owner", help="Name the owner key in the manifest, so that it can delete "
                                        "the item (`butter rm`).")] = False,
    owner_key: KeyOption = None,
    host: ClientHostOption = "127.0.0.1",
    config: ConfigOption = None,
    log_format: LogFormatOption = LogFormat.text,
    backend: BackendOption = Backend.asyncio,
) -> None:
    """Store a file on the overlay through a running node and print its content id (a capability with --encrypt)."""
    import sys

    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from ._cli_data import upload
    from ._cli_peers import probe_settings

    target = address_or_exit(node_address)
    try:
        data = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as exc:
        fail(f"cannot read {file}: {exc}", 2)
    key = b""
    if encrypt:
        from .blocks import DEFAULT_MEDIA_TYPE
        from .encryption import encrypt as encrypt_bytes

        if media_type != DEFAULT_MEDIA_TYPE:
            fail("--media-type cannot go with --encrypt: every node would read it", 2)
        data, key = encrypt_bytes(data)
    base = load_or_exit(config, ctx.args)
    owner_public = None
    if owner:
        from ._cli_names import owner_or_exit
        from .records import public_key_bytes

        owner_public = public_key_bytes(owner_or_exit(owner_key, base))
    elif owner_key is not None:
        fail("--key goes with --owner", 2)
    setup_logging(LogLevel.WARNING, log_format)
    settings = probe_settings(base, host=host, timeout=timeout)
    with Progress(BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=err_console(),
                  transient=True, disable=len(data) < UPLOAD_PROGRESS_FROM) as progress:
        task = progress.add_task("upload", total=len(data))

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        content_id = run_async(upload, settings, target, data, media_type=media_type, timeout=timeout,
                               owner=owner_public, on_progress=advance, backend=backend,
                               context=f"cannot store on {target}")
    if encrypt:
        from .encryption import Capability

        content_id = str(Capability(content_id, key))
    typer.echo(content_id)


UPLOAD_PROGRESS_FROM = 4 * 1024 * 1024  # bytes: smaller uploads show no progress bar


# -- butter get ---------------------------------------------------------------------------------------------


@app.command(
    "get",
    context_settings=EXTRA_ARGS,
    epilog=examples(
        "butter get 3f2a...e9 --node 127.0.0.1:9000 -o notes.txt",
        "butter get 3f2a...e9 --node 127.0.0.1:9000 > notes.txt",
        "butter get bcap1:3f2a...e9:Qm9...x --node 127.0.0.1:9000 -o diary.txt",
        "",
        "A short-lived client node joins through --node, searches the overlay for the content id (random TTL "
        "breadth-first search, bfs driver), then fetches the blocks in parallel from the holders, each "
        "verified against its block id, and writes them in order. Given a capability (from `butter put --encrypt`) "
        "it decrypts the item once all of it has arrived and writes nothing unless it authenticates. Exit status "
        "1 when the item cannot be found or does not decrypt.",
    ),
)
def get(
    ctx: typer.Context,
    content_id: Annotated[str, typer.Argument(
        metavar="CID", help="Content id printed by `butter put`, or capability printed by `butter put --encrypt`.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write; default standard output.", dir_okay=False)
    ] = None,
    node_address: NodeOption = "127.0.0.1:9000",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each reply.", min=0.01)] = 10.0,
    host: ClientHostOption = "127.0.0.1",
    config: ConfigOption = None,
    log_format: LogFormatOption = LogFormat.text,
    backend: BackendOption = Backend.asyncio,
) -> None:
    """Retrieve an item by content id (or capability) through a running node and write it out, verified."""
    import sys

    from rich.progress import DownloadColumn, Progress, SpinnerColumn, TransferSpeedColumn

    from ._cli_data import download
    from ._cli_peers import probe_settings
    target = address_or_exit(node_address)
    item_or_exit(content_id, "CONTENT_ID")
    base = load_or_exit(config, ctx.args)
    setup_logging(LogLevel.WARNING, log_format)
    settings = probe_settings(base, host=host, timeout=timeout).model_copy(update={
        "retrieval": base.retrieval, "peers": [str(target)]})
    sink = output.open("wb") if output is not None else sys.stdout.buffer
    try:
        with Progress(SpinnerColumn(), DownloadColumn(), TransferSpeedColumn(), console=err_console(),
                      transient=True, disable=output is None) as progress:
            task = progress.add_task("download", total=None)
            written = run_async(download, settings, content_id, sink,
                               on_progress=lambda done: progress.update(task, completed=done),
                               backend=backend, context=f"cannot retrieve {content_id[:16]}")
    finally:
        if output is not None:
            sink.close()
    if output is not None:
        err_console().print(f"wrote {written} bytes to {output}", style="dim")


# -- butter rm ----------------------------------------------------------------------------------------------


@app.command(
    "rm",
    context_settings=EXTRA_ARGS,
    epilog=examples(
        "butter rm 3f2a...e9 --node 127.0.0.1:9000",
        "butter rm 3f2a...e9 --node 127.0.0.1:9000 --key ~/.butter/me.pem",
        "",
        "Deletes an item stored with `butter put --owner`: a short-lived client node joins through --node, "
        "finds the item's holders (bfs search), checks that the key (--key FILE, default the node key of "
        "data_dir) is the owner the manifest names, and sends them a tombstone signed with it. Honest holders "
        "drop the blocks, keep the tombstone (30 days) and answer that the item is deleted; a peer that ignores "
        "the protocol can keep a copy. Exit status 1 when the key is not the item's owner (or the item has "
        "none), the item is already deleted or cannot be found; 2 for a malformed CID or a missing key file.",
    ),
)
def rm(
    ctx: typer.Context,
    content_id: Annotated[str, typer.Argument(
        metavar="CID", help="Content id (or capability) printed by `butter put --owner`.")],
    owner_key: KeyOption = None,
    node_address: NodeOption = "127.0.0.1:9000",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each reply.", min=0.01)] = 10.0,
    host: ClientHostOption = "127.0.0.1",
    config: ConfigOption = None,
    log_format: LogFormatOption = LogFormat.text,
    backend: BackendOption = Backend.asyncio,
) -> None:
    """Delete an item you own from the overlay (its holders drop it and keep a signed tombstone)."""
    from ._cli_data import remove
    from ._cli_names import owner_or_exit
    from ._cli_peers import probe_settings
    target = address_or_exit(node_address)
    item_or_exit(content_id, "CID")
    base = load_or_exit(config, ctx.args)
    owner = owner_or_exit(owner_key, base)
    setup_logging(LogLevel.WARNING, log_format)
    settings = probe_settings(base, host=host, timeout=timeout).model_copy(update={
        "retrieval": base.retrieval, "peers": [str(target)]})
    accepted = run_async(remove, settings, content_id, owner, backend=backend,
                         context=f"cannot delete {content_id[:16]}")
    typer.echo(f"deleted {content_id}: {accepted} holder(s) accepted the tombstone")


def _register_commands() -> None:
    """Add the commands other distributions offer: each entry point of group ``butter.commands`` is a function
    ``register(app)`` adding its commands to this Typer app (butter-observe: ``stats``, ``graph``). One that
    fails to load is skipped with a warning."""
    import logging

    for entry_point in entry_points(group=COMMAND_GROUP):
        try:
            entry_point.load()(app)
        except Exception as exc:
            logging.getLogger("butter.cli").warning(
                "commands of %s (%s) not loaded: %s: %s", entry_point.name, entry_point.value, type(exc).__name__, exc
            )


_register_commands()


def main() -> None:
    """Console-script entry point (``butter``)."""
    app()


if __name__ == "__main__":
    main()
