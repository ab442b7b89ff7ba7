"""persist: store text or files on the overlay and find them again by id, watching their groups.

Each node is a full peer: it keeps replicas of others' items in Peer Content Groups (PCG) and answers
searches (BFS). At its prompt::

    add TEXT          store TEXT; prints its content id and its group's state
    file PATH         store a file
    get ID [PATH]     find an item by id, from any node; print it, or write it to PATH (the start of an id
                      is enough for an item this node keeps)
    groups            the groups this node is a member of: replicas, target, state, members
    help, quit

Three terminals on one machine, then add on one, kill it (Ctrl-C, or ``kill -9``), get on another::

    python examples/persist/persist.py --port 9001 --discovery static
    python examples/persist/persist.py --port 9002 --peer 127.0.0.1:9001
    python examples/persist/persist.py --port 9003 --peer 127.0.0.1:9001
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio

import butter
from butter.blocks import is_block_id, load_manifest
from butter.capabilities import GroupStatus, KeptItems

HELP = "Commands: add TEXT | file PATH | get ID [PATH] | groups | help | quit"
MIN_PREFIX = 4  # hexadecimal characters: the shortest start of an id that `get` accepts


# -- what the commands do ---------------------------------------------------------------------------------


class Groups:
    """What the persistence driver tells of its groups, through two optional capabilities
    (``butter.capabilities``): which items it keeps (``KeptItems``) and each one's group (``GroupStatus``).
    The ``pcg`` driver offers both; :meth:`of` refuses a node whose driver does not."""

    def __init__(self, kept: KeptItems, status: GroupStatus) -> None:
        self.kept, self.status = kept, status

    @classmethod
    def of(cls, node: butter.Node) -> Groups:
        kept, status = node.capability(KeptItems), node.capability(GroupStatus)
        if kept is None or status is None:
            raise SystemExit("this example needs a persistence driver that shows its groups (KeptItems and "
                             "GroupStatus: persistence.driver = 'pcg')")
        return cls(kept, status)

    def line(self, content_id: str) -> str:
        status = self.status.group_status(content_id)
        if status is None:
            return "not a member of its group"
        return f"group: {status.replicas} of {status.target} replicas ({status.state})"


async def add(node: butter.Node, data: bytes, media_type: str) -> None:
    try:
        content_id = await node.store(data, media_type=media_type)
    except butter.StoreFull as exc:
        print(f"not stored: {exc}")
        return
    print(f"stored {content_id} ({len(data)} bytes); {Groups.of(node).line(content_id)}")


def resolve(node: butter.Node, text: str) -> str | None:
    """The content id ``text`` names: a whole id (64 hexadecimal characters), or the start of exactly one id
    of the items this node keeps a replica of (what ``groups`` lists); ``None``, saying why, otherwise."""
    if is_block_id(text):
        return text
    if not (MIN_PREFIX <= len(text) < 64 and all(c in "0123456789abcdef" for c in text)):
        print(f"an id is 64 hexadecimal characters, or the first {MIN_PREFIX} or more of one this node keeps")
        return None
    matches = [content_id for content_id in Groups.of(node).kept.kept_items() if content_id.startswith(text)]
    if len(matches) != 1:
        print(f"{text} starts {len(matches)} of the ids this node keeps: give the whole id" if matches
              else f"no item this node keeps starts with {text}: give the whole id to search the overlay")
        return None
    return matches[0]


async def get(node: butter.Node, text: str, path: str | None) -> None:
    content_id = resolve(node, text)
    if content_id is None:
        return
    try:
        data = await node.retrieve(content_id)  # every block verified against its address
    except butter.ItemNotFound as exc:
        print(f"not found: {exc}")
        return
    if path:
        await anyio.Path(path).write_bytes(data)
        print(f"wrote {len(data)} bytes to {path}")
    else:
        print(f"found {len(data)} bytes: {data.decode('utf-8', 'replace')}")


async def groups(node: butter.Node) -> None:
    groups = Groups.of(node)
    kept = sorted(groups.kept.kept_items())
    print(f"{len(kept)} group{'' if len(kept) == 1 else 's'}; known hosts: {len(node.hosts.peers())}")
    for content_id in kept:
        status, manifest = groups.status.group_status(content_id), await node.blocks.get(content_id)
        size = f"{load_manifest(content_id, manifest).size} bytes" if manifest is not None else "?"
        members = ", ".join(str(address) for address in status.members) if status is not None else ""
        print(f"{content_id} {size}; {groups.line(content_id)}; members {members}")


async def prompt(node: butter.Node) -> None:
    """The client behaviour: one command per line from stdin."""
    print(HELP)
    async for line in stdin_lines():
        command, _, rest = line.strip().partition(" ")
        if command == "add" and rest:
            await add(node, rest.encode("utf-8"), "text/plain; charset=utf-8")
        elif command == "file" and rest:
            try:
                data = await anyio.Path(rest).read_bytes()
            except OSError as exc:
                print(f"cannot read {rest}: {exc.strerror}")
                continue
            await add(node, data, "application/octet-stream")
        elif command == "get" and rest:
            content_id, _, path = rest.partition(" ")
            await get(node, content_id, path.strip() or None)
        elif command == "groups":
            await groups(node)
        elif command == "quit":
            await node.aclose()  # leave gracefully: PCG hands this node's replicas over first
            return
        elif command:
            print(HELP)
    print("stdin closed: still serving; press Ctrl-C to leave")


async def stdin_lines() -> AsyncIterator[str]:
    """Lines from stdin until end of input, read without blocking the event loop: the loop waits until
    stdin (a terminal or a pipe; Unix) has data, so Ctrl-C works at any time. A regular file is read at once."""
    fd = sys.stdin.fileno()
    if stat.S_ISREG(os.fstat(fd).st_mode):  # `< commands.txt`: event loops cannot wait on files
        for line in sys.stdin.read().splitlines():
            yield line
        return
    pending = b""
    while True:
        await anyio.wait_readable(fd)
        data = os.read(fd, 65536)
        if not data:
            break
        *lines, pending = (pending + data).split(b"\n")
        for line in lines:
            yield line.decode("utf-8", "replace")
    if pending:
        yield pending.decode("utf-8", "replace")


# -- putting it together ----------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> int:
    async with butter.open_node(node_settings(args)) as node:
        Groups.of(node)  # fail early without a driver that shows its groups
        print(f"listening on {node.address}")
        node.behaviour(prompt)
        await node.wait_for_exit()  # Ctrl-C, SIGTERM, or `quit`
    return 0


def node_settings(args: argparse.Namespace) -> butter.ButterSettings:
    """Flags override butter.toml and BUTTER_* variables, as in `butter node`: --peer adds peers, which static
    discovery contacts beside the configured drivers (default: multicast on the LAN); --discovery replaces them."""
    overrides: dict[str, Any] = {"host": args.host, "port": args.port, "peers": [str(p) for p in args.peer]}
    if args.discovery:
        overrides["discovery"] = {"drivers": args.discovery}
    return butter.load_settings(**overrides)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Store and find data on Butter; watch its Peer Content Groups.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: 0, the OS picks)")
    parser.add_argument("--peer", action="append", default=[], type=butter.PeerAddress.parse, metavar="HOST:PORT",
                        help="a peer to contact at start, by static discovery, which runs beside the configured "
                        "discovery drivers; repeatable")
    parser.add_argument("--discovery", action="append", metavar="DRIVER",
                        help="discovery driver, repeatable; replaces the configured list (default: multicast)")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio", help="async library to run on")
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    try:
        sys.exit(anyio.run(main, arguments, backend=arguments.backend))
    except butter.ButterConfigError as exc:
        sys.exit(f"error: {exc}")
