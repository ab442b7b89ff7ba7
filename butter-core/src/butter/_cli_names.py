"""``butter name``: publish and resolve signed mutable records through a running node (part of
:mod:`butter.cli`; the formats are :mod:`butter.records`'s)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

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
    err_console,
    examples,
    fail,
    item_or_exit,
    load_or_exit,
    run_async,
    setup_logging,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from .peers import PeerAddress
    from .records import RecordValue, SignedRecord
    from .settings import ButterSettings

__all__ = ["KeyOption", "TimeoutOption", "client_settings", "name_app", "owner_or_exit"]

name_app = typer.Typer(help="Publish and resolve signed mutable records (names that point at new values).",
                       no_args_is_help=True, rich_markup_mode=None)

KeyOption = Annotated[Path | None, typer.Option(
    "--key", "-k", metavar="FILE", dir_okay=False,
    help="Owner key file (PEM Ed25519; `butter name key FILE` makes one). Default: the node key of data_dir.")]
TimeoutOption = Annotated[float, typer.Option(help="Seconds to wait for each reply.", min=0.01)]


@name_app.command(
    "key",
    epilog=examples(
        "butter name key ~/.butter/me.pem",
        "",
        "Creates a new Ed25519 owner key (mode 0600) and prints the name it has for each --label given. Copy the "
        "file to publish the same names from another machine. An existing file is never overwritten (status 2).",
    ),
)
def key(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="Key file to create.", dir_okay=False)],
    label: Annotated[list[str] | None, typer.Option(help="Print the name of this label. Repeatable.")] = None,
) -> None:
    """Create an owner key file."""
    from .errors import ButterConfigError
    from .records import create_owner_key, public_key_bytes, record_name

    try:
        owner = create_owner_key(file)
    except ButterConfigError as exc:
        fail(str(exc), 2)
    for each in label or []:
        typer.echo(f"{each}\t{record_name(public_key_bytes(owner), each)}")


@name_app.command(
    "publish",
    context_settings=EXTRA_ARGS,
    epilog=examples(
        "butter name publish blog 3f2a...e9 --key me.pem --node 127.0.0.1:9000",
        "butter name publish status 'gone fishing' --inline --key me.pem",
        "",
        "Signs a record pointing the name of (owner key, LABEL) at VALUE, a content id or a capability (or, with "
        "--inline, the text itself, at most 1 KiB), with a sequence above every one the node's peers hold, and "
        "pushes it to them. Prints the name (64 hex characters): `butter name resolve NAME` finds the newest "
        "value. Exit status 2 for a bad value or a missing key file, 1 if the node cannot be reached.",
    ),
)
def publish(
    ctx: typer.Context,
    label: Annotated[str, typer.Argument(metavar="LABEL", help="Which of the owner's names (up to 128 chars).")],
    value: Annotated[str, typer.Argument(metavar="VALUE", help="Content id or capability; text with --inline.")],
    inline: Annotated[bool, typer.Option("--inline", help="VALUE is the value itself (UTF-8, ≤ 1 KiB).")] = False,
    owner_key: KeyOption = None,
    record_expiry: Annotated[float, typer.Option("--expiry", help="Seconds the record stays valid.", min=1)
                             ] = 86_400.0,
    node_address: NodeOption = "127.0.0.1:9000",
    timeout: TimeoutOption = 10.0,
    host: ClientHostOption = "127.0.0.1",
    config: ConfigOption = None,
    log_format: LogFormatOption = LogFormat.text,
    backend: BackendOption = Backend.asyncio,
) -> None:
    """Point one of your names at a value."""
    target = address_or_exit(node_address)
    base = load_or_exit(config, ctx.args)
    owner = owner_or_exit(owner_key, base)
    chosen: RecordValue = value.encode() if inline else value
    if not inline:
        item_or_exit(value, "VALUE", "; --inline for text")
    setup_logging(LogLevel.WARNING, log_format)
    try:
        record = run_async(_publish, client_settings(base, host, target, timeout), label, chosen, owner,
                           record_expiry, backend=backend, context=f"cannot publish through {target}")
    except ValueError as exc:  # a label or an inline value too long
        fail(str(exc), 2)
    typer.echo(record.name)
    _print_version(record)


@name_app.command(
    "rm",
    context_settings=EXTRA_ARGS,
    epilog=examples(
        "butter name rm blog --key me.pem --node 127.0.0.1:9000",
        "",
        "Deletes the name of (owner key, LABEL): signs its deletion record, with a sequence above every one the "
        "node's peers hold, and publishes it like a value. Holders drop the name's record and refuse its older "
        "ones until the deletion expires; `butter name resolve NAME` then says the name was deleted (exit status "
        "1). Publishing the name again brings it back. Prints the name. Exit status 2 for a missing key file, 1 if "
        "the node cannot be reached.",
    ),
)
def rm(
    ctx: typer.Context,
    label: Annotated[str, typer.Argument(metavar="LABEL", help="Which of the owner's names (up to 128 chars).")],
    owner_key: KeyOption = None,
    tombstone_expiry: Annotated[float, typer.Option(
        "--expiry", help="Seconds holders keep the deletion (and refuse older records).", min=1)] = 30 * 86_400.0,
    node_address: NodeOption = "127.0.0.1:9000",
    timeout: TimeoutOption = 10.0,
    host: ClientHostOption = "127.0.0.1",
    config: ConfigOption = None,
    log_format: LogFormatOption = LogFormat.text,
    backend: BackendOption = Backend.asyncio,
) -> None:
    """Delete one of your names."""
    target = address_or_exit(node_address)
    base = load_or_exit(config, ctx.args)
    owner = owner_or_exit(owner_key, base)
    setup_logging(LogLevel.WARNING, log_format)
    try:
        record = run_async(_unpublish, client_settings(base, host, target, timeout), label, owner, tombstone_expiry,
                           backend=backend, context=f"cannot delete through {target}")
    except ValueError as exc:  # a label too long
        fail(str(exc), 2)
    typer.echo(record.name)
    _print_version(record)


@name_app.command(
    "resolve",
    context_settings=EXTRA_ARGS,
    epilog=examples(
        "butter name resolve 9c1b...07 --node 127.0.0.1:9000",
        "butter get $(butter name resolve 9c1b...07) -o post.html",
        "",
        "Asks the node's peers for the record of NAME, verifies every answer (forged, expired and older records "
        "are refused) and prints the newest value: a content id or capability on one line, inline bytes as they "
        "are. Exit status 1 when no valid record is found, 2 for a malformed name.",
    ),
)
def resolve(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Name printed by `butter name publish`.")],
    node_address: NodeOption = "127.0.0.1:9000",
    timeout: TimeoutOption = 10.0,
    host: ClientHostOption = "127.0.0.1",
    config: ConfigOption = None,
    log_format: LogFormatOption = LogFormat.text,
    backend: BackendOption = Backend.asyncio,
) -> None:
    """Print the newest value of a name."""
    from .blocks import is_block_id

    target = address_or_exit(node_address)
    if not is_block_id(name):
        fail(f"a name is 64 lowercase hex characters, got {name!r}", 2)
    base = load_or_exit(config, ctx.args)
    setup_logging(LogLevel.WARNING, log_format)
    record = run_async(_resolve, client_settings(base, host, target, timeout), name, backend=backend,
                       context=f"cannot resolve {name[:16]}")
    if isinstance(record.value, bytes):
        sys.stdout.buffer.write(record.value)
        sys.stdout.buffer.flush()
    else:
        typer.echo(record.value)
    _print_version(record)


# -- helpers ------------------------------------------------------------------------------------------------


def _print_version(record: SignedRecord) -> None:
    err_console().print(f"sequence {record.sequence}, expires at {record.expires_at} (Unix seconds)", style="dim")


def owner_or_exit(path: Path | None, settings: ButterSettings) -> Ed25519PrivateKey:
    """The owner key in file ``path`` (default: the node key of ``settings.data_dir``), or exit with status 2
    saying why (no key given, a missing or unreadable file)."""
    from ._identity import KEY_FILE
    from .errors import ButterConfigError
    from .records import load_owner_key

    if path is None:
        if not settings.data_dir:
            fail("no owner key: give --key FILE (`butter name key FILE` creates one), or set data_dir", 2)
        path = Path(settings.data_dir) / KEY_FILE
    try:
        return load_owner_key(path)
    except ButterConfigError as exc:
        fail(str(exc), 2)


def client_settings(base: ButterSettings, host: str, target: PeerAddress, timeout: float) -> ButterSettings:
    """Settings for a short-lived client node that joins ``target`` only (see
    :func:`~butter._cli_peers.probe_settings`), each request within ``timeout`` seconds."""
    from ._cli_peers import probe_settings

    return probe_settings(base, host=host, timeout=timeout).model_copy(update={"peers": [str(target)]})


async def _publish(settings: ButterSettings, label: str, value: RecordValue, owner: Ed25519PrivateKey,
                   record_expiry: float) -> SignedRecord:
    from ._cli_data import wait_until_joined
    from ._node import open_node

    async with open_node(settings) as client:
        await wait_until_joined(client, settings.request_timeout)
        return await client.publish(label, value, owner=owner, record_expiry=record_expiry)


async def _unpublish(settings: ButterSettings, label: str, owner: Ed25519PrivateKey,
                     tombstone_expiry: float) -> SignedRecord:
    from ._cli_data import wait_until_joined
    from ._node import open_node

    async with open_node(settings) as client:
        await wait_until_joined(client, settings.request_timeout)
        return await client.unpublish(label, owner=owner, tombstone_expiry=tombstone_expiry)


async def _resolve(settings: ButterSettings, name: str) -> SignedRecord:
    from ._cli_data import wait_until_joined
    from ._node import open_node

    async with open_node(settings) as client:
        await wait_until_joined(client, settings.request_timeout)
        return await client.resolve(name)
