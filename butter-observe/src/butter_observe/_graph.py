"""The overlay as a graph: gathered by crawling from one node, or read from the tracker's database.

A crawl walks the known-host lists breadth first from one node: each node is asked for its snapshot on route
``stats`` (a node that does not serve it is asked ``host-quality`` and ``known-hosts`` samples instead, so it
has no item count or groups), up to ``max_nodes`` nodes and ``time_limit`` seconds, ``concurrency`` requests
at a time. :func:`overlay_graph` turns snapshots into a :class:`networkx.DiGraph`: an edge ``a -> b`` when
``a`` has ``b`` in its known hosts. Every node carries ``address``, ``uptime``, ``storage``, ``known_hosts``,
``known_by``, ``items``, ``groups`` (space-separated content ids it keeps), ``seen`` (``True`` for a node
whose own snapshot is in, ``False`` for one only named by others) and ``quality_class``: one of the 8
classes of the diversity host manager (uptime, storage, known hosts each ``high`` when at least the mean over
the graph).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from statistics import fmean

import anyio
import networkx as nx

from butter import codec
from butter.errors import ButterError, RemoteError
from butter.peers import PeerAddress, PeerInfo
from butter.slots import NodeServices

from ._snapshot import HostView, Snapshot
from ._stats import ask_stats

__all__ = ["crawl", "overlay_graph", "quality_class", "to_dot"]

log = logging.getLogger("butter.observe.graph")

FALLBACK_ROUNDS = 8  # known-hosts samples asked of a node that does not serve `stats`


def quality_class(uptime: float, storage: int, known_hosts: int, means: tuple[float, float, float]) -> str:
    """The diversity class name, e.g. ``"highUptimeLowStorageHighKH"``: each figure against its mean."""
    u, s, k = (("high" if value >= mean else "low") for value, mean in zip((uptime, storage, known_hosts), means,
                                                                            strict=True))
    return f"{u}Uptime{s.capitalize()}Storage{k.capitalize()}KH"


def overlay_graph(snapshots: Iterable[Snapshot]) -> nx.DiGraph:
    """The graph of ``snapshots`` (see the module docstring)."""
    graph: nx.DiGraph = nx.DiGraph()
    seen = {s.node_id: s for s in snapshots}
    for s in seen.values():
        graph.add_node(s.node_id, address=s.address, uptime=s.uptime, storage=s.available_storage,
                       known_hosts=len(s.hosts), known_by=s.known_by, items=s.items,
                       groups=" ".join(g.content_id for g in s.groups), seen=True)
    for s in seen.values():
        for host in s.hosts:
            if host.node_id not in graph:
                graph.add_node(host.node_id, address=host.address, uptime=host.uptime,
                               storage=host.available_storage, known_hosts=host.known_hosts,
                               known_by=host.known_by, items=0, groups="", seen=False)
            graph.add_edge(s.node_id, host.node_id)
    if graph:
        data = graph.nodes.values()
        means = (fmean(d["uptime"] for d in data), fmean(d["storage"] for d in data),
                 fmean(d["known_hosts"] for d in data))
        for d in data:
            d["quality_class"] = quality_class(d["uptime"], d["storage"], d["known_hosts"], means)
    return graph


def to_dot(graph: nx.DiGraph, *, colours: dict[str, str]) -> str:
    """``graph`` in Graphviz's DOT language (a ``digraph``): every node with its attributes, filled with its
    quality class's colour from ``colours`` and labelled by the first 8 characters of its id; a node only
    named by others is dashed. Written here rather than through pydot or pygraphviz (each an extra
    dependency) for these few lines."""

    def quoted(value: object) -> str:
        text = str(value).lower() if isinstance(value, bool) else str(value)
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'

    lines = ["digraph butter {", '  node [shape=circle, style=filled, fontsize=8];']
    for node, data in sorted(graph.nodes(data=True)):
        attributes = {"label": node[:8], "fillcolor": colours.get(data.get("quality_class", ""), "#999999"),
                      **data}
        if not data.get("seen", True):
            attributes["style"] = "filled,dashed"
        lines.append(f"  {quoted(node)} [{', '.join(f'{key}={quoted(value)}' for key, value in attributes.items())}];")
    lines.extend(f"  {quoted(a)} -> {quoted(b)};" for a, b in sorted(graph.edges))
    lines.append("}")
    return "\n".join(lines) + "\n"


async def crawl(
    client: NodeServices,
    start: PeerAddress,
    *,
    max_nodes: int = 500,
    time_limit: float = 60.0,
    timeout: float = 5.0,
    concurrency: int = 8,
    on_progress: Callable[[int, int], None] | None = None,
) -> list[Snapshot]:
    """Snapshots of the nodes reachable from ``start`` (see the module docstring); ``on_progress(done,
    queued)`` is called after each node asked. Unreachable nodes are skipped (logged at debug level). Returns
    what was gathered when ``time_limit`` seconds pass."""
    found: list[Snapshot] = []
    queued: set[PeerAddress] = {start}
    pending: list[PeerAddress] = [start]
    done = 0
    wakeup = anyio.Event()
    in_flight = 0
    limiter = anyio.Semaphore(concurrency)

    async def visit(address: PeerAddress) -> None:
        nonlocal done, in_flight, wakeup
        try:
            snapshot = await _snapshot_of(client, address, timeout=timeout)
        except (ButterError, ValueError) as exc:
            log.debug("crawl: %s: %s", address, exc)
        else:
            if len(found) < max_nodes:
                found.append(snapshot)
                for host in snapshot.hosts:
                    try:
                        address_of = PeerAddress.parse(host.address)
                    except ValueError:
                        continue
                    if address_of not in queued and len(queued) < max_nodes:
                        queued.add(address_of)
                        pending.append(address_of)
        finally:
            done += 1
            in_flight -= 1
            limiter.release()
            wakeup.set()
            if on_progress is not None:
                on_progress(done, len(queued))

    with anyio.move_on_after(time_limit):
        async with anyio.create_task_group() as tg:
            while pending or in_flight:
                if not pending:
                    await wakeup.wait()
                    wakeup = anyio.Event()
                    continue
                await limiter.acquire()
                in_flight += 1
                tg.start_soon(visit, pending.pop(0))
    return found


async def _snapshot_of(client: NodeServices, address: PeerAddress, *, timeout: float) -> Snapshot:
    try:
        return await ask_stats(client, address, timeout=timeout)
    except RemoteError as exc:
        if exc.code != "unknown-route":
            raise
    reply = await client.request(address, "host-quality", timeout=timeout)
    me = codec.peer_info(codec.decode_map(reply, client.settings.max_frame, what="host-quality reply"))
    hosts: dict[str, PeerInfo] = {}
    for _ in range(FALLBACK_ROUNDS):
        body = codec.Fields.decode(await client.request(address, "known-hosts", timeout=timeout),
                                   client.settings.max_frame, what="known-hosts reply")
        for info in body.sequence("sample", codec.peer_info, max_items=64, truncate=True):
            hosts.setdefault(info.node_id, info)
        if len(hosts) >= me.quality.known_hosts:
            break
    q = me.quality
    views = tuple(HostView.of(p) for p in hosts.values())
    return Snapshot(me.node_id, str(address), time.time(), q.uptime, q.available_storage, q.known_by, 0, views, (), {})
