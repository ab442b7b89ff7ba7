"""The wiki's command line. From the repository root::

    uv run python -m examples.wiki serve --web-port 8000                # a node with its web page
    uv run python -m examples.wiki write --title T --body-file a.md --peer 127.0.0.1:9001
    uv run python -m examples.wiki read ID --peer 127.0.0.1:9001
    uv run python -m examples.wiki list --node 127.0.0.1:9001           # what a running node has seen

``serve`` is a full node: it keeps replicas of others' articles and answers searches, and its web page
(web.py) and the ``wiki-articles`` route below share one :class:`~articles.Wiki`. ``write`` and ``read``
start a node for one command: it joins through ``--peer``, does the job, and leaves gracefully (PCG hands
its replicas over first).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import anyio

import butter
from butter.wire import decode_payload, encode_payload

from . import web
from .articles import ArticleNotFound, Wiki

ROUTE_ARTICLES = "wiki-articles"  # reply: msgpack list of {"id": content id, "title": str}


def wiki_node_settings(args: argparse.Namespace, **more: Any) -> butter.ButterSettings:
    """Flags (and ``more`` settings) override ``butter.toml`` and ``BUTTER_*`` variables, as in ``butter node``:
    ``--peer`` adds peers, which static discovery contacts beside the configured drivers (default: multicast
    on the LAN), and the node learns more from them; ``--discovery`` replaces the drivers."""
    overrides: dict[str, Any] = {"host": args.host, "port": args.port, "peers": [str(p) for p in args.peer], **more}
    if args.discovery:
        overrides["discovery"] = {"drivers": args.discovery}
    return butter.load_settings(**overrides)


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

    async with butter.open_node(wiki_node_settings(args)) as node:
        wiki = Wiki(node)

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
    async with butter.open_node(wiki_node_settings(args)) as node:
        await joined(node, args.timeout)
        wiki = Wiki(node)
        try:
            content_id = await wiki.write(args.title, body)
        except (ValueError, butter.StoreFull) as exc:
            print(f"not stored: {exc}")
            return 1
        with anyio.move_on_after(args.timeout):  # PCG recruits replicas at once; wait for a first one
            while (group := wiki.group(content_id)) and group[0] < 2:  # noqa: ASYNC110 (bounded poll)
                await anyio.sleep(0.1)
        print(f"stored {content_id}")
        if group := wiki.group(content_id):
            print("group: {} of {} replicas ({})".format(*group))
    return 0  # leaving hands this node's replica to another peer


async def read(args: argparse.Namespace) -> int:
    # A pure client: no persistence, so no group recruits this short-lived node to keep a replica.
    async with butter.open_node(wiki_node_settings(args, persistence={"driver": ""})) as node:
        await joined(node, args.timeout)
        try:
            article = await Wiki(node).read(args.id)
        except ArticleNotFound as exc:
            print(f"not found: {exc}")
            return 1
        print(f"# {article.title}\n\n{article.body}")
    return 0


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
    node_flags.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio", help="async library")

    parser = argparse.ArgumentParser(prog="python -m examples.wiki", description="A wiki with no server, on Butter.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cmd = commands.add_parser("serve", parents=[node_flags], help="run a node with the wiki's web page")
    cmd.add_argument("--web-host", default="127.0.0.1", help="address of the web page (default: 127.0.0.1)")
    cmd.add_argument("--web-port", type=int, default=8000, help="port of the web page (default: 8000; 0: any)")
    cmd.set_defaults(run=serve)
    cmd = commands.add_parser("write", parents=[node_flags], help="store an article and print its id")
    cmd.add_argument("--title", required=True)
    body = cmd.add_mutually_exclusive_group(required=True)
    body.add_argument("--body", help="the Markdown body")
    body.add_argument("--body-file", type=argparse.FileType("r", encoding="utf-8"), help="read the body from a file")
    cmd.set_defaults(run=write)
    cmd = commands.add_parser("read", parents=[node_flags], help="find an article by id and print it")
    cmd.add_argument("id", help="the article's id (64 hex characters)")
    cmd.set_defaults(run=read)
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
