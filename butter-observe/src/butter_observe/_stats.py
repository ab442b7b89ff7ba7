"""Route ``stats``: a node's snapshot for ``butter stats`` and the ``butter graph`` crawl.

Body: empty (or a map, ignored). Reply: the node's :class:`~butter_observe.Snapshot` (at most 256 groups
listed). Served only when the ``observe`` plugin's ``stats_route`` option is on: a snapshot tells a peer
everything the node knows about the overlay.
"""

from __future__ import annotations

from butter import RouteRequest, codec
from butter.peers import PeerAddress
from butter.slots import NodeServices

from ._snapshot import Snapshot, take_snapshot

__all__ = ["ROUTE", "STATS_GROUPS", "ask_stats", "serve_stats"]

ROUTE = "stats"
STATS_GROUPS = 256  # groups listed in a reply


async def serve_stats(request: RouteRequest) -> bytes:
    """The ``stats`` route's handler."""
    if request.body:
        codec.decode_map(request.body, request.node.settings.max_frame, what="stats body")
    return take_snapshot(request.node, max_groups=STATS_GROUPS).encode()


async def ask_stats(client: NodeServices, address: PeerAddress, *, timeout: float) -> Snapshot:
    """Ask the node at ``address`` for its snapshot over route ``stats``. Raises the transport's errors,
    :class:`~butter.errors.RemoteError` (``unknown-route``: the node does not serve it) and
    :class:`~butter.errors.ProtocolError` for a malformed reply."""
    return Snapshot.decode(await client.request(address, ROUTE, timeout=timeout))
