"""The wiki's command line. From the repository root::

    uv run python -m examples.wiki serve --web-port 8000                # a node with its web page
    uv run python -m examples.wiki write --title T --body-file a.md --peer 127.0.0.1:9001 --key me.pem
    uv run python -m examples.wiki edit ID --body-file b.md --peer 127.0.0.1:9001
    uv run python -m examples.wiki read ID --peer 127.0.0.1:9001
    uv run python -m examples.wiki history ID --peer 127.0.0.1:9001    # every revision: id, author, time
    uv run python -m examples.wiki diff ID --peer 127.0.0.1:9001       # the last change (--from/--to: any two)
    uv run python -m examples.wiki delete ID --peer 127.0.0.1:9001 --key me.pem   # only the creator's key
    uv run python -m examples.wiki list --node 127.0.0.1:9001           # what a running node has seen

``serve`` is a full node: it keeps the revisions of the articles that reach it and answers the peers' reads,
and its web page (web.py) and the ``wiki-articles`` route below share one :class:`~articles.Wiki`. The other
commands but ``list`` start a node for one command: it joins through ``--peer``, does the job (a write or an
edit is pushed to its peers), and leaves. What it signs is signed with ``--key`` (default: the node's key,
which a one-shot node without a ``data_dir`` makes afresh: give ``--key`` to delete your article later).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio

import butter
import butter.records
from butter.wire import decode_payload, encode_payload

from . import web
from .articles import SHORT, ArticleDeleted, ArticleNotFound, Page, Wiki, diff

ROUTE_ARTICLES = "wiki-articles"  # reply: msgpack list of {"id": article id, "title": str}


def wiki_node_settings(args: argparse.Namespace, **more: Any) -> butter.ButterSettings:
    """Flags (and ``more`` settings) override ``butter.toml`` and ``BUTTER_*`` variables, as in ``butter node``:
    ``--peer`` adds peers, which static discovery contacts beside the configured drivers (default: multicast
    on the LAN), and the node learns more from them; ``--discovery`` replaces the drivers."""
    overrides: dict[str, Any] = {"host": args.host, "port": args.port, "peers": [str(p) for p in args.peer], **more}
    if args.discovery:
        overrides["discovery"] = {"drivers": args.discovery}
    return butter.load_settings(**overrides)


@asynccontextmanager
async def one_shot(args: argparse.Namespace) -> AsyncIterator[Wiki]:
    """A node for one command, as a pure client (no persistence: no group recruits a node about to leave):
    it joins through ``--peer`` (at most ``--timeout`` seconds), signs with ``--key`` (default: its own
    identity key), and leaves when the command is done."""
    owner = butter.records.load_owner_key(args.key) if args.key else None
    async with butter.open_node(wiki_node_settings(args, persistence={"driver": ""})) as node:
        await joined(node, args.timeout)
        yield Wiki(node, owner)


async def joined(node: butter.Node, timeout: float) -> None:
    """Wait until host management has admitted a first peer, at most ``timeout`` seconds."""
    with anyio.move_on_after(timeout):
        while not node.hosts.peers():  # noqa: ASYNC110 (a poll, bounded by the timeout)
            await anyio.sleep(0.1)
    if not node.hosts.peers():
        raise SystemExit(f"no peer joined within {timeout:g} s (is --peer right?)")


# -- the commands -----------------------------------------------------------------------------------------


async def serve(args: argparse.Namespace) -> int:
    sock = web.bind(args.web_host, args.web_port)  # fails now, not later, if the port is taken
    web_address = "http://{}:{}/".format(*sock.getsockname()[:2])
    stop_web, web_stopped = anyio.Event(), anyio.Event()

    owner = butter.records.load_owner_key(args.key) if args.key else None
    async with butter.open_node(wiki_node_settings(args)) as node:
        wiki = Wiki(node, owner)

        async def articles(request: butter.RouteRequest) -> bytes:  # lets `list` ask what this node has seen
            return encode_payload([{"id": cid, "title": title} for cid, title in wiki.seen.items()])

        node.route(ROUTE_ARTICLES, articles)

        async def web_page(node: butter.Node) -> None:  # a client behaviour: runs in the node's task group
            try:
                await web.serve(web.build_app(wiki), sock, stop_web, args.backend)
            finally:
                web_stopped.set()

        node.behaviour(web_page)
        print(f"listening on {node.address}")
        print(f"wiki page on {web_address}")
        await node.wait_for_exit()  # Ctrl-C or SIGTERM
        stop_web.set()  # finish the page requests under way, then leave (PCG hands replicas over)
        with anyio.move_on_after(5):
            await web_stopped.wait()
    return 0


async def write(args: argparse.Namespace) -> int:
    body = args.body if args.body is not None else args.body_file.read()
    async with one_shot(args) as wiki:
        try:
            article_id = await wiki.write(args.title, body)
        except ValueError as exc:
            print(f"not stored: {exc}")
            return 1
        print(f"stored {article_id}")
    return 0


async def edit(args: argparse.Namespace) -> int:
    async with one_shot(args) as wiki:
        page = await read_or_say(wiki, args.id)
        if page is None:
            return 1
        old = page.current.article
        body = args.body if args.body is not None else args.body_file.read() if args.body_file else old.body
        try:
            revision, _ = await wiki.edit(page.id, old.title if args.title is None else args.title, body)
        except ArticleNotFound as exc:  # deleted meanwhile
            print(why(exc))
            return 1
        except ValueError as exc:
            print(f"not saved: {exc}")
            return 1
        print(f"saved revision {revision}")
    return 0


async def read(args: argparse.Namespace) -> int:
    async with one_shot(args) as wiki:
        page = await read_or_say(wiki, args.id)
        if page is None:
            return 1
        try:
            version = page.version(args.revision) if args.revision else page.current
        except KeyError:
            print(f"not found: article {page.id} has no revision {args.revision} (or several start so)")
            return 1
        print(f"# {version.article.title}\n\n{version.article.body}")
        print(f"\n(revision {version.revision} by {version.author[:SHORT]} at {version.when}"
              f"{'; no peer answered: this may be stale' if page.stale else ''})", file=sys.stderr)
    return 0


async def history(args: argparse.Namespace) -> int:
    async with one_shot(args) as wiki:
        page = await read_or_say(wiki, args.id)
        if page is None:
            return 1
        for version in reversed(page.history):  # newest first, as on the page
            mark = "*" if version is page.current else " "
            print(f"{mark} {version.revision}  {version.author[:SHORT]}  {version.when}  {version.article.title}")
        if page.stale:
            print("no peer answered: this history may be stale", file=sys.stderr)
    return 0


async def show_diff(args: argparse.Namespace) -> int:
    async with one_shot(args) as wiki:
        page = await read_or_say(wiki, args.id)
        if page is None:
            return 1
        try:
            old, new = page.compare(args.to, args.since)
        except KeyError as exc:
            print(f"not found: article {page.id} has no revision {exc.args[0]} (or several start so)")
            return 1
        print("\n".join(diff(old, new)))
    return 0


async def delete(args: argparse.Namespace) -> int:
    async with one_shot(args) as wiki:
        try:
            await wiki.delete(args.id)
        except ArticleNotFound as exc:
            print(why(exc))
            return 1
        except PermissionError as exc:
            print(f"refused: {exc} (give its key with --key FILE)")
            return 1
        print(f"deleted {args.id}")
    return 0


async def read_or_say(wiki: Wiki, article_id: str) -> Page | None:
    """The article, or ``None`` after printing why not (not found, deleted)."""
    try:
        return await wiki.read(article_id)
    except ArticleNotFound as exc:
        print(why(exc))
        return None


def why(exc: ArticleNotFound) -> str:
    return f"{'deleted' if isinstance(exc, ArticleDeleted) else 'not found'}: {exc}"


async def list_articles(args: argparse.Namespace) -> int:
    settings = butter.load_settings(host=args.host, discovery={"drivers": []}, persistence={"driver": ""})
    async with butter.open_node(settings) as client:
        seen = decode_payload(await client.request(args.node, ROUTE_ARTICLES, timeout=args.timeout))
    for entry in seen if isinstance(seen, list) else []:
        print(f"{entry['id']}  {entry['title']}")
    return 0


# -- flags ------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    node_flags = argparse.ArgumentParser(add_help=False)
    node_flags.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    node_flags.add_argument("--port", type=int, default=0, help="port to listen on (default: 0, the OS picks)")
    node_flags.add_argument("--peer", action="append", default=[], type=butter.PeerAddress.parse,
                            metavar="HOST:PORT", help="a peer to contact at start, by static discovery, which runs "
                            "beside the configured discovery drivers; repeatable")
    node_flags.add_argument("--discovery", action="append", metavar="DRIVER",
                            help="discovery driver, repeatable; replaces the configured list (default: multicast)")
    node_flags.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for peers (default: 20)")
    node_flags.add_argument("--key", type=Path, metavar="FILE", help="the Ed25519 key (PEM) that signs what this "
                            "node writes and deletes; `butter name key FILE` makes one (default: the node's key)")
    node_flags.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio", help="async library")

    parser = argparse.ArgumentParser(prog="python -m examples.wiki", description="A wiki with no server, on Butter.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cmd = commands.add_parser("serve", parents=[node_flags], help="run a node with the wiki's web page")
    cmd.add_argument("--web-host", default="127.0.0.1", help="address of the web page (default: 127.0.0.1)")
    cmd.add_argument("--web-port", type=int, default=8000, help="port of the web page (default: 8000; 0: any)")
    cmd.set_defaults(run=serve)
    cmd = commands.add_parser("write", parents=[node_flags], help="create an article and print its id")
    cmd.add_argument("--title", required=True)
    body = cmd.add_mutually_exclusive_group(required=True)
    body.add_argument("--body", help="the Markdown body")
    body.add_argument("--body-file", type=argparse.FileType("r", encoding="utf-8"), help="read the body from a file")
    cmd.set_defaults(run=write)
    cmd = commands.add_parser("edit", parents=[node_flags], help="save a new revision of an article")
    cmd.add_argument("id", help="the article's id (64 hex characters)")
    cmd.add_argument("--title", help="the new title (default: the current one)")
    body = cmd.add_mutually_exclusive_group()
    body.add_argument("--body", help="the new Markdown body (default: the current one)")
    body.add_argument("--body-file", type=argparse.FileType("r", encoding="utf-8"), help="read the body from a file")
    cmd.set_defaults(run=edit)
    cmd = commands.add_parser("read", parents=[node_flags], help="find an article by id and print it")
    cmd.add_argument("id", help="the article's id (64 hex characters)")
    cmd.add_argument("--revision", help="print this revision (id or unique prefix) instead of the current one")
    cmd.set_defaults(run=read)
    cmd = commands.add_parser("history", parents=[node_flags],
                              help="list every revision of an article, newest first (* marks the current one)")
    cmd.add_argument("id", help="the article's id (64 hex characters)")
    cmd.set_defaults(run=history)
    cmd = commands.add_parser("diff", parents=[node_flags], help="print the changes between two revisions")
    cmd.add_argument("id", help="the article's id (64 hex characters)")
    cmd.add_argument("--to", help="the newer revision, id or unique prefix (default: the current one)")
    cmd.add_argument("--from", dest="since", help="the older revision (default: the first parent of --to)")
    cmd.set_defaults(run=show_diff)
    cmd = commands.add_parser("delete", parents=[node_flags],
                              help="delete an article: only the key that created it can (--key)")
    cmd.add_argument("id", help="the article's id (64 hex characters)")
    cmd.set_defaults(run=delete)
    cmd = commands.add_parser("list", help="list the articles a running node has seen")
    cmd.add_argument("--node", required=True, type=butter.PeerAddress.parse, metavar="HOST:PORT",
                     help="the running node")
    cmd.add_argument("--host", default="127.0.0.1", help="address this client listens on (default: 127.0.0.1)")
    cmd.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the reply (default: 10)")
    cmd.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio", help="async library")
    cmd.set_defaults(run=list_articles)
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    try:
        sys.exit(anyio.run(args.run, args, backend=args.backend))
    except (butter.ButterConfigError, OSError) as exc:  # a bad setting, a taken port: say which
        sys.exit(f"error: {exc}")
    except butter.ButterError as exc:  # e.g. `list` could not reach the node
        sys.exit(f"error: {type(exc).__name__}: {exc}")


if __name__ == "__main__":
    main()
