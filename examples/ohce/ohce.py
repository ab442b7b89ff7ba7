"""ohce: reverse echo over Butter, the smallest complete decentralised app.

Every node is a server and a client at once:

* server side: it answers the route ``reverse`` with the text it was sent, reversed;
* client side: it reads lines from stdin and asks every peer it knows to reverse them.

Two terminals on one machine::

    python examples/ohce/ohce.py --port 9001 --discovery static
    python examples/ohce/ohce.py --port 9002 --peer 127.0.0.1:9001

Or send once and exit (what the tests do)::

    python examples/ohce/ohce.py --send hello --to 127.0.0.1:9001 --discovery static
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

ROUTE = "reverse"


# -- server side: a route handler -------------------------------------------------------------------------
# A handler gets a RouteRequest (the serving node, the route name and the body bytes) and returns bytes.
# Raising butter.RouteError sends the caller an error reply with that code; the node keeps serving.


async def reverse(request: butter.RouteRequest) -> bytes:
    try:
        text = request.body.decode("utf-8")
    except UnicodeDecodeError:
        raise butter.RouteError("bad-request", "send UTF-8 text") from None
    return text[::-1].encode("utf-8")  # reversed code point by code point


# -- client side: a behaviour, which runs beside the server for the node's whole life ----------------------


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


async def type_and_reverse(node: butter.Node) -> None:
    print("Type a message and press Enter (Ctrl-C to leave):")
    async for line in stdin_lines():
        peers = node.hosts.peers()  # the known hosts that host management keeps for us
        if not peers:
            print("no known peers yet: start another node with --peer", node.address)
        for peer in peers:
            try:
                reply = await node.request(peer, ROUTE, line.encode("utf-8"), timeout=5)
            except butter.ButterError as exc:  # unreachable, timed out, or an error reply
                print(f"unable to send to {peer.address}: {exc}")
            else:
                print(f"{peer.address} responded with: {reply.decode('utf-8')}")
    print("stdin closed: still serving; press Ctrl-C to leave")


# -- putting it together ----------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> int:
    settings = node_settings(args)
    async with butter.open_node(settings) as node:  # listening from here; leaves gracefully on exit
        node.route(ROUTE, reverse)
        print(f"listening on {node.address}")

        if args.send is not None:  # one-shot mode: ask each --to address once, then leave
            failures = 0
            for address in args.to:
                try:
                    reply = await node.request(address, ROUTE, args.send.encode("utf-8"), timeout=args.timeout)
                except butter.ButterError as exc:
                    print(f"unable to send to {address}: {exc}")
                    failures += 1
                else:
                    print(f"{address} responded with: {reply.decode('utf-8')}")
            return 1 if failures else 0

        node.behaviour(type_and_reverse)
        await node.wait_for_exit()  # until Ctrl-C or SIGTERM
    return 0


def node_settings(args: argparse.Namespace) -> butter.ButterSettings:
    """Settings also come from butter.toml and BUTTER_* variables; the flags override them, as in `butter node`:
    --peer adds peers, which static discovery contacts beside the configured discovery drivers (default:
    multicast on the LAN), and the node learns more hosts from them; --discovery replaces the drivers."""
    overrides: dict[str, Any] = {"host": args.host, "port": args.port, "transport": {"driver": args.transport},
                                 "peers": [str(peer) for peer in args.peer]}
    if args.discovery:
        overrides["discovery"] = {"drivers": args.discovery}
    return butter.load_settings(**overrides)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Reverse echo over Butter: peers answer with your text reversed.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: 0, the OS picks)")
    parser.add_argument("--peer", action="append", default=[], type=butter.PeerAddress.parse, metavar="HOST:PORT",
                        help="a peer to contact at start, by static discovery, which runs beside the configured "
                        "discovery drivers; repeatable")
    parser.add_argument("--discovery", action="append", metavar="DRIVER",
                        help="discovery driver, repeatable; replaces the configured list (default: multicast)")
    parser.add_argument("--transport", default="tcp", help="transport driver (default: tcp)")
    parser.add_argument("--send", metavar="TEXT", help="send TEXT to each --to address once, print replies, exit")
    parser.add_argument("--to", action="append", default=[], type=butter.PeerAddress.parse, metavar="HOST:PORT",
                        help="target of --send; repeatable")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for each reply (default: 5)")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio", help="async library to run on")
    args = parser.parse_args(argv)
    if args.send is not None and not args.to:
        parser.error("--send needs at least one --to HOST:PORT")
    return args


if __name__ == "__main__":
    arguments = parse_args()
    try:
        sys.exit(anyio.run(main, arguments, backend=arguments.backend))
    except butter.ButterConfigError as exc:  # a bad flag value or setting: say which, no traceback
        sys.exit(f"error: {exc}")
