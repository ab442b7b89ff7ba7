"""chat: a chat room with no server. Every line you type goes to every peer your node knows.

What it shows, beyond ohce:

* structured messages: the body is a msgpack map, built with ``butter.wire.encode_payload``;
* sending to all peers at once, in a task group;
* an event hook (a tiny pluggy plugin) that announces peers joining and leaving.

Two terminals on one machine::

    python examples/chat/chat.py --port 9001 --name alice --discovery static
    python examples/chat/chat.py --port 9002 --name bob --peer 127.0.0.1:9001

Or say one thing to every peer found and exit (what the tests do)::

    python examples/chat/chat.py --peer 127.0.0.1:9001 --name carol --say "hello all"
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel

import butter
from butter.wire import decode_payload, encode_payload

ROUTE = "message"


# -- server side: print what arrives, acknowledge it --------------------------------------------------------


async def on_message(request: butter.RouteRequest) -> bytes:
    message = decode_payload(request.body)  # a body that is not msgpack gets a "bad-request" error reply
    if not (isinstance(message, dict) and isinstance(message.get("from"), str)
            and isinstance(message.get("text"), str)):
        raise butter.RouteError("bad-request", 'expected {"from": str, "text": str}')
    print(f"{message['from']}: {message['text']}")
    return b"received"


# -- event hooks: host management tells us who comes and goes ----------------------------------------------


class Announcer:
    """A plugin object; each method marked ``@butter.hookimpl`` implements the hook of the same name
    (see ``butter.hookspecs``). Passed to ``open_node(plugins=...)``."""

    def __init__(self) -> None:
        self.someone_joined = anyio.Event()

    @butter.hookimpl
    def butter_peer_discovered(self, node: butter.Node, peer: butter.PeerInfo) -> None:
        print(f"* {peer.address} joined")
        self.someone_joined.set()

    @butter.hookimpl
    def butter_peer_lost(self, node: butter.Node, peer: butter.PeerInfo) -> None:
        print(f"* {peer.address} left")


# -- client side ------------------------------------------------------------------------------------------


async def broadcast(node: butter.Node, name: str, text: str, timeout: float) -> int:
    """Send ``text`` to every known peer concurrently; return how many acknowledged it."""
    body = encode_payload({"from": name, "text": text})
    delivered = 0

    async def send_to(peer: butter.PeerInfo) -> None:
        nonlocal delivered
        try:
            reply = await node.request(peer, ROUTE, body, timeout=timeout)
        except butter.ButterError as exc:  # one unreachable peer must not stop the others
            print(f"unable to send to {peer.address}: {exc}")
        else:
            print(f"{peer.address}: {reply.decode('utf-8', 'replace')}")
            delivered += 1

    async with anyio.create_task_group() as tg:  # returns when every send has finished
        for peer in node.hosts.peers():
            tg.start_soon(send_to, peer)
    return delivered


async def stdin_lines() -> AsyncIterator[str]:
    """Lines typed on stdin, until end of input.

    Reading stdin blocks, so a thread does it and hands each line over to the event loop. It is a daemon
    thread, so Ctrl-C can end the process while it still waits for a line (an ``anyio.to_thread`` worker
    would hold the exit until Enter is pressed).
    """
    token = anyio.lowlevel.current_token()
    send, receive = anyio.create_memory_object_stream[str | None](1)

    def read_in_thread() -> None:
        try:
            for line in sys.stdin:
                anyio.from_thread.run(send.send, line, token=token)
            anyio.from_thread.run(send.send, None, token=token)  # end of input
        except BaseException:  # the event loop finished or cancelled the hand-over: the node has left
            return

    threading.Thread(target=read_in_thread, daemon=True).start()
    with receive:
        while (line := await receive.receive()) is not None:
            yield line.rstrip("\n")


# -- putting it together ----------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> int:
    settings = node_settings(args)
    announcer = Announcer()
    async with butter.open_node(settings, plugins=(announcer,)) as node:
        node.route(ROUTE, on_message)
        name = args.name or f"node-{node.node_id[:6]}"
        print(f"listening on {node.address} as {name}")

        if args.say is not None:  # one-shot mode
            with anyio.move_on_after(args.wait):  # until discovery finds someone (the hook fires)
                await announcer.someone_joined.wait()
            if not node.hosts.peers():
                print(f"no peers found within {args.wait} s")
                return 1
            return 0 if await broadcast(node, name, args.say, args.timeout) else 1

        async def chat(node: butter.Node) -> None:  # the client behaviour
            print("Type a message and press Enter (Ctrl-C to leave):")
            async for line in stdin_lines():
                if line and not await broadcast(node, name, line, args.timeout):
                    print("nobody received it (no known peers yet?)")
            print("stdin closed: still receiving; press Ctrl-C to leave")

        node.behaviour(chat)
        await node.wait_for_exit()
    return 0


def node_settings(args: argparse.Namespace) -> butter.ButterSettings:
    """As in ohce and `butter node`: the flags override butter.toml and BUTTER_* variables; --peer adds peers
    (static discovery, beside the configured drivers), --discovery replaces the drivers."""
    discovery: dict[str, Any] = {"discovery": {"drivers": args.discovery}} if args.discovery else {}
    return butter.load_settings(host=args.host, port=args.port, transport={"driver": args.transport},
                                peers=[str(peer) for peer in args.peer], **discovery)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Chat over Butter: lines you type go to every known peer.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: 0, the OS picks)")
    parser.add_argument("--peer", action="append", default=[], type=butter.PeerAddress.parse, metavar="HOST:PORT",
                        help="a peer to contact at start, by static discovery, which runs beside the configured "
                        "discovery drivers; repeatable")
    parser.add_argument("--discovery", action="append", metavar="DRIVER",
                        help="discovery driver, repeatable; replaces the configured list (default: multicast)")
    parser.add_argument("--transport", default="tcp", help="transport driver (default: tcp)")
    parser.add_argument("--name", default="", help="name shown with your messages (default: from the node id)")
    parser.add_argument("--say", metavar="TEXT", help="send TEXT to every peer found, print replies, exit")
    parser.add_argument("--wait", type=float, default=10.0,
                        help="with --say: seconds to wait for a first peer (default: 10)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for each reply (default: 5)")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio", help="async library to run on")
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    try:
        sys.exit(anyio.run(main, arguments, backend=arguments.backend))
    except butter.ButterConfigError as exc:
        sys.exit(f"error: {exc}")
