"""The processes of the fault suite (``faults_kit.py``): a ``butter node`` that also reports its state, and a
watcher that polls every node and prints what it sees.

``python fault_node.py node [butter settings flags...]``
    A node like ``butter node`` (it prints ``butter node <id>`` and ``  listening on <address>`` once started,
    logs the same way, leaves gracefully on SIGTERM), serving one more route, ``fault-status``: its node id,
    the node ids of its known hosts, and for each item it keeps, the replicas its group has in its view.

``python fault_node.py watch --host IP --interval S HOST:PORT...``
    Asks every node for ``fault-status`` each ``interval`` seconds, all at once, and prints one JSON line per
    round: ``{"nodes": {address: status or {"error": text}}}``. The harness stamps each line with the time it
    arrived, which is what the suite's recovery times are measured with.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from typing import Any

import anyio

import butter
from butter import codec
from butter._cli_support import setup_logging
from butter.capabilities import GroupStatus, KeptItems
from butter.wire import decode_payload

ROUTE = "fault-status"


def status(node: butter.Node) -> dict[str, Any]:
    kept, groups = node.capability(KeptItems), node.capability(GroupStatus)
    replicas: dict[str, int] = {}
    for content_id in kept.kept_items() if kept is not None else ():
        group = groups.group_status(content_id) if groups is not None else None
        if group is not None:
            replicas[content_id] = group.replicas
    return {"id": node.node_id, "peers": sorted(p.node_id for p in node.hosts.peers()), "groups": replicas}


async def run_node(argv: list[str]) -> None:
    settings = butter.load_settings(cli_args=argv)
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with butter.open_node(settings) as node:

            async def fault_status(request: butter.RouteRequest) -> bytes:
                return codec.encode(status(node))

            node.route(ROUTE, fault_status)
            print(f"butter node {node.node_id}", flush=True)
            print(f"  listening on {node.address}", flush=True)
            async for _ in signals:
                break


async def watch(addresses: list[str], host: str, interval: float, timeout: float) -> None:
    settings = butter.ButterSettings(
        host=host, port=0, discovery={"drivers": []}, persistence={"driver": ""}, retrieval={"driver": ""},
        connect_timeout=timeout, request_timeout=timeout, shutdown_timeout=0.5,
    )
    async with butter.open_node(settings) as observer:
        seen: dict[str, Any] = {}

        async def ask(address: str) -> None:
            try:
                seen[address] = decode_payload(await observer.request(address, ROUTE, timeout=timeout))
            except (butter.ButterError, ValueError) as exc:
                seen[address] = {"error": f"{type(exc).__name__}: {exc}"}

        while True:
            async with anyio.create_task_group() as tg:
                for address in addresses:
                    tg.start_soon(ask, address)
            print(json.dumps({"nodes": seen}), flush=True)
            seen = {}
            await anyio.sleep(interval)


def main() -> None:
    if sys.argv[1:2] == ["node"]:
        setup_logging("INFO")
        anyio.run(run_node, sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["watch"])
    parser.add_argument("addresses", nargs="+", metavar="HOST:PORT")
    parser.add_argument("--host", required=True, help="address the watcher listens on")
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between rounds")
    parser.add_argument("--timeout", type=float, default=1.5, help="seconds per request")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    anyio.run(watch, args.addresses, args.host, args.interval, args.timeout)


if __name__ == "__main__":
    main()
