"""``butter doc``: create, append to, read and delete multi-writer documents through a running node (part of
:mod:`butter.cli`; the formats are :mod:`butter.documents`'s)."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ._cli_names import KeyOption, TimeoutOption, client_settings, owner_or_exit
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
    load_or_exit,
    run_async,
    setup_logging,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ._node import Node
    from .documents import Document, Revision
    from .settings import ButterSettings

__all__ = ["doc_app"]

doc_app = typer.Typer(help="Multi-writer documents: signed revisions that every replica merges.",
                      no_args_is_help=True, rich_markup_mode=None)

DocumentArgument = Annotated[str, typer.Argument(metavar="DOCUMENT", help="Document id (64 hex), from `doc new`.")]
TextArgument = Annotated[str | None, typer.Argument(metavar="TEXT", help="The content (UTF-8); or --file.")]
FileOption = Annotated[Path | None, typer.Option(
    "--file", "-f", metavar="FILE", help="Read the content from FILE ('-': standard input), at most 16 KiB.")]


def _body_or_exit(text: str | None, file: Path | None) -> bytes:
    """The content from TEXT or --file, or exit with status 2 saying why."""
    from .documents import MAX_BODY

    if (text is None) == (file is None):
        fail("give the content as TEXT or with --file FILE (one of them)", 2)
    if file is None:
        body = (text or "").encode()
    elif str(file) == "-":
        body = sys.stdin.buffer.read(MAX_BODY + 1)
    else:
        try:
            body = file.read_bytes()
        except OSError as exc:
            fail(f"cannot read {file}: {exc.strerror or exc}", 2)
    if len(body) > MAX_BODY:
        fail(f"a revision's content is at most {MAX_BODY} bytes (16 KiB); this one is larger", 2)
    return body


def _document_or_exit(document_id: str) -> None:
    from .blocks import is_block_id

    if not is_block_id(document_id):
        fail(f"a document id is 64 lowercase hex characters, got {document_id!r:.80}", 2)


def _writer_or_exit(text: str) -> bytes:
    """A writer's raw public key from 64 hex characters or an owner key file, or exit with status 2."""
    from .errors import ButterConfigError
    from .records import load_owner_key, public_key_bytes

    try:
        key = bytes.fromhex(text)
        if len(key) == 32:
            return key
    except ValueError:
        pass
    try:
        return public_key_bytes(load_owner_key(Path(text)))
    except ButterConfigError as exc:
        fail(f"--writer {text!r:.80}: neither a public key (64 hex) nor a key file ({exc})", 2)


@doc_app.command(
    "key",
    epilog=examples(
        "butter doc key --key ~/.butter/me.pem",
        "",
        "Prints the public key (64 hex) of an owner key file: give it to a document's creator for --writer.",
    ),
)
def public_key(
    owner_key: KeyOption = None,
    config: ConfigOption = None,
) -> None:
    """Print the public key of your owner key."""
    from .records import public_key_bytes

    typer.echo(public_key_bytes(owner_or_exit(owner_key, load_or_exit(config, []))).hex())


@doc_app.command(
    "new",
    context_settings=EXTRA_ARGS,
    epilog=examples(
        "butter doc new 'first draft' --key me.pem --node 127.0.0.1:9000",
        "butter doc new -f notes.md --writer 5f1c...9a --writer alice.pem --key me.pem",
        "",
        "Signs the first revision of a new document with your key (you are its creator: only you can delete "
        "it) and pushes it to the node's peers. Prints the document id. With --writer, only those keys (and "
        "yours) may append. Exit status 2 for bad input or a missing key, 1 if the node cannot be reached.",
    ),
)
def new(
    ctx: typer.Context,
    text: TextArgument = None,
    file: FileOption = None,
    writer: Annotated[list[str] | None, typer.Option(
        metavar="KEY", help="A key that may append: 64 hex (`butter doc key`) or a key file. Repeatable.")] = None,
    owner_key: KeyOption = None,
    node_address: NodeOption = "127.0.0.1:9000",
    timeout: TimeoutOption = 10.0,
    host: ClientHostOption = "127.0.0.1",
    config: ConfigOption = None,
    log_format: LogFormatOption = LogFormat.text,
    backend: BackendOption = Backend.asyncio,
) -> None:
    """Create a document."""
    target = address_or_exit(node_address)
    body = _body_or_exit(text, file)
    writers = [_writer_or_exit(each) for each in writer] if writer else None
    base = load_or_exit(config, ctx.args)
    owner = owner_or_exit(owner_key, base)
    setup_logging(LogLevel.WARNING, log_format)
    try:
        document_id = run_async(_session, client_settings(base, host, target, timeout), _new, body, writers, owner,
                                backend=backend, context=f"cannot create a document through {target}")
    except ValueError as exc:  # too many writers, a writer key of small order
        fail(str(exc), 2)
    typer.echo(document_id)


@doc_app.command(
    "append",
    context_settings=EXTRA_ARGS,
    epilog=examples(
        "butter doc append 9c1b...07 'second draft' --key me.pem --node 127.0.0.1:9000",
        "",
        "Reads the document through the node, then signs a revision following every version found (merging "
        "concurrent ones) and pushes it. Prints the revision id. Exit status 1 when the document is not found, "
        "deleted, or your key is not on its writers list; 2 for bad input.",
    ),
)
def append(
    ctx: typer.Context,
    document_id: DocumentArgument,
    text: TextArgument = None,
    file: FileOption = None,
    owner_key: KeyOption = None,
    node_address: NodeOption = "127.0.0.1:9000",
    timeout: TimeoutOption = 10.0,
    host: ClientHostOption = "127.0.0.1",
    config: ConfigOption = None,
    log_format: LogFormatOption = LogFormat.text,
    backend: BackendOption = Backend.asyncio,
) -> None:
    """Add a new version to a document."""
    target = address_or_exit(node_address)
    _document_or_exit(document_id)
    body = _body_or_exit(text, file)
    base = load_or_exit(config, ctx.args)
    owner = owner_or_exit(owner_key, base)
    setup_logging(LogLevel.WARNING, log_format)
    revision = run_async(_session, client_settings(base, host, target, timeout), _append, document_id, body, owner,
                         backend=backend, context=f"cannot append to {document_id[:16]}")
    typer.echo(revision.id)
    err_console().print(f"clock {revision.clock}, {len(revision.parents)} parent(s)", style="dim")


@doc_app.command(
    "read",
    context_settings=EXTRA_ARGS,
    epilog=examples(
        "butter doc read 9c1b...07 --node 127.0.0.1:9000 > draft.md",
        "",
        "Asks the node (which asks its peers) for every revision, merges them and writes the current version "
        "as it is to standard output; standard error says which revision it is, how many versions are "
        "concurrent and how many peers answered. Exit status 1 when the document is not found or deleted.",
    ),
)
def read(
    ctx: typer.Context,
    document_id: DocumentArgument,
    node_address: NodeOption = "127.0.0.1:9000",
    timeout: TimeoutOption = 10.0,
    host: ClientHostOption = "127.0.0.1",
    config: ConfigOption = None,
    log_format: LogFormatOption = LogFormat.text,
    backend: BackendOption = Backend.asyncio,
) -> None:
    """Print the current version of a document."""
    document = _fetch(ctx, document_id, node_address, timeout, host, config, log_format, backend)
    sys.stdout.buffer.write(document.body)
    sys.stdout.buffer.flush()
    current = document.current
    err_console().print(f"revision {current.id[:16]} by {current.author.hex()[:16]} at {_when(current.at)}; "
                        f"{len(document.heads)} head(s), {len(document.history)} revision(s)", style="dim")


@doc_app.command(
    "history",
    context_settings=EXTRA_ARGS,
    epilog=examples(
        "butter doc history 9c1b...07 --node 127.0.0.1:9000",
        "butter doc history 9c1b...07 --json | jq '.[].author'",
        "",
        "Lists every revision, parents first: clock, revision id, author key, time (as the author's clock "
        "said), size in bytes, and 'head' for the latest concurrent versions ('current' for the one shown).",
    ),
)
def history(
    ctx: typer.Context,
    document_id: DocumentArgument,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list instead of a table, for scripts.")] = False,
    node_address: NodeOption = "127.0.0.1:9000",
    timeout: TimeoutOption = 10.0,
    host: ClientHostOption = "127.0.0.1",
    config: ConfigOption = None,
    log_format: LogFormatOption = LogFormat.text,
    backend: BackendOption = Backend.asyncio,
) -> None:
    """List the revisions of a document."""
    document = _fetch(ctx, document_id, node_address, timeout, host, config, log_format, backend)
    marks = {r.id: "head" for r in document.heads} | {document.current.id: "current"}
    rows: list[dict[str, Any]] = [
        {"clock": r.clock, "revision": r.id, "author": r.author.hex(), "at": r.at, "bytes": len(r.body),
         "parents": list(r.parents), "head": marks.get(r.id, "")}
        for r in document.history]
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    for row in rows:
        typer.echo(f"{row['clock']}\t{row['revision'][:16]}\t{row['author'][:16]}\t{_when(row['at'])}\t"
                   f"{row['bytes']}\t{row['head']}".rstrip())


@doc_app.command(
    "rm",
    context_settings=EXTRA_ARGS,
    epilog=examples(
        "butter doc rm 9c1b...07 --key me.pem --node 127.0.0.1:9000",
        "",
        "Deletes the document as its creator: signs a tombstone with your key and pushes it; nodes that accept "
        "it drop the revisions and answer reads 'deleted'. Exit status 1 when your key is not the creator's "
        "or the document is not found; 2 for bad input.",
    ),
)
def remove(
    ctx: typer.Context,
    document_id: DocumentArgument,
    owner_key: KeyOption = None,
    node_address: NodeOption = "127.0.0.1:9000",
    timeout: TimeoutOption = 10.0,
    host: ClientHostOption = "127.0.0.1",
    config: ConfigOption = None,
    log_format: LogFormatOption = LogFormat.text,
    backend: BackendOption = Backend.asyncio,
) -> None:
    """Delete a document you created."""
    target = address_or_exit(node_address)
    _document_or_exit(document_id)
    base = load_or_exit(config, ctx.args)
    owner = owner_or_exit(owner_key, base)
    setup_logging(LogLevel.WARNING, log_format)
    accepted = run_async(_session, client_settings(base, host, target, timeout), _remove, document_id, owner,
                         backend=backend, context=f"cannot delete {document_id[:16]}")
    typer.echo(f"deleted {document_id}: {accepted} peer(s) accepted the tombstone")


# -- helpers ------------------------------------------------------------------------------------------------


def _fetch(ctx: typer.Context, document_id: str, node_address: str, timeout: float, host: str,
           config: Path | None, log_format: LogFormat, backend: Backend) -> Document:
    target = address_or_exit(node_address)
    _document_or_exit(document_id)
    base = load_or_exit(config, ctx.args)
    setup_logging(LogLevel.WARNING, log_format)
    document: Document = run_async(_session, client_settings(base, host, target, timeout), _read, document_id,
                                   backend=backend, context=f"cannot read {document_id[:16]}")
    return document


def _when(at: int) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S") if 0 <= at < 2**35 else str(at)


async def _session(settings: ButterSettings, fn: Any, *args: Any) -> Any:
    """Open a client node joined to the one named in ``settings``, and run ``fn(client, *args)``."""
    from ._cli_data import wait_until_joined
    from ._node import open_node

    async with open_node(settings) as client:
        await wait_until_joined(client, settings.request_timeout)
        return await fn(client, *args)


async def _new(client: Node, body: bytes, writers: list[bytes] | None, owner: Ed25519PrivateKey) -> str:
    return await client.create_document(body, writers=writers, owner=owner)


async def _append(client: Node, document_id: str, body: bytes, owner: Ed25519PrivateKey) -> Revision:
    return await client.append(document_id, body, owner=owner)


async def _read(client: Node, document_id: str) -> Document:
    return await client.read_document(document_id)


async def _remove(client: Node, document_id: str, owner: Ed25519PrivateKey) -> int:
    return await client.delete_document(document_id, owner=owner)
