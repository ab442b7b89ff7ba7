"""Ask running nodes who they know, all at once, and print JSON (run by :meth:`harness.Lab.query`).

Usage: ``python probe.py [--host IP] [--timeout S] HOST:PORT...``. For each address: its node id, how many
hosts it says it knows and who they are (route ``known-hosts`` returns a random sample of at most 16, so it
is asked up to 8 times until every known host has been seen). The probe is a node with no discovery; its
requests carry empty bodies, so the nodes it asks neither learn of it nor count it in ``known_by``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

import anyio

import butter
from butter.wire import decode_payload

ROUNDS = 8


async def ask(node: butter.Node, address: str, timeout: float) -> dict[str, Any]:
    try:
        me = butter.PeerInfo.from_wire(decode_payload(await node.request(address, "host-quality", timeout=timeout)))
        seen: dict[str, str] = {}
        for _ in range(ROUNDS):
            reply = decode_payload(await node.request(address, "known-hosts", timeout=timeout))
            for entry in reply.get("sample", []) if isinstance(reply, dict) else []:
                info = butter.PeerInfo.from_wire(entry)
                seen[info.node_id] = str(info.address)
            if len(seen) >= me.quality.known_hosts:
                break
    except (butter.ButterError, ValueError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {
        "id": me.node_id,
        "known_hosts": me.quality.known_hosts,
        "known_by": me.quality.known_by,
        "peers": [{"id": node_id, "address": addr} for node_id, addr in sorted(seen.items())],
    }


async def main(addresses: list[str], host: str, timeout: float) -> dict[str, Any]:
    settings = butter.ButterSettings(
        host=host, port=0, discovery={"drivers": []}, connect_timeout=timeout, request_timeout=timeout,
        shutdown_timeout=0.5,
    )
    results: dict[str, Any] = {}
    async with butter.open_node(settings) as node, anyio.create_task_group() as tg:

        async def one(address: str) -> None:
            results[address] = await ask(node, address, timeout)

        for address in addresses:
            tg.start_soon(one, address)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("addresses", nargs="+", metavar="HOST:PORT")
    parser.add_argument("--host", default="127.0.0.1", help="address the probe node listens on")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds per request")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    json.dump(anyio.run(main, args.addresses, args.host, args.timeout), sys.stdout)
