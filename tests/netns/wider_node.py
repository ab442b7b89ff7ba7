"""A ``butter node`` that can also be told to retrieve an item, for the wider-discovery tests.

Usage: ``python wider_node.py NAME [butter settings flags...]``. It prints the same start lines as
``butter node`` (id, address), logs like it, and every 0.2 s looks for ``NAME.get`` in its working
directory: a file holding a content id. It then retrieves the item *through this node's own connections*
(which is what a hole-punched connection changes) and writes ``NAME.out``, logging
``retrieved <cid> <bytes>`` or ``retrieve failed: <reason>``. SIGTERM leaves gracefully.
"""

from __future__ import annotations

import logging
import signal
import sys

import anyio

import butter
from butter._cli_support import setup_logging

log = logging.getLogger("wider_node")


async def main(name: str, argv: list[str]) -> None:
    settings = butter.load_settings(cli_args=argv)
    request, output = anyio.Path(f"{name}.get"), anyio.Path(f"{name}.out")
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with butter.open_node(settings) as node, anyio.create_task_group() as tg:
            print(f"butter node {node.node_id}", flush=True)
            print(f"  listening on {node.address}", flush=True)

            async def serve_requests() -> None:
                while True:
                    await anyio.sleep(0.2)
                    if not await request.exists():
                        continue
                    cid = (await request.read_text()).strip()
                    await request.unlink()
                    try:
                        data = await node.retrieve(cid)
                    except butter.ButterError as exc:
                        log.warning("retrieve failed: %s", exc)
                        continue
                    await output.write_bytes(data)
                    log.info("retrieved %s %d", cid, len(data))

            async def leave() -> None:
                async for _ in signals:
                    break
                tg.cancel_scope.cancel()

            tg.start_soon(serve_requests)
            tg.start_soon(leave)


if __name__ == "__main__":
    setup_logging("INFO")
    anyio.run(main, sys.argv[1], sys.argv[2:])
