"""The ``diversity`` driver's protocol: routes ``host-quality`` and ``known-hosts``.

* ``host-quality``, body optional ``{"id": node id, "holds": bool, "hold_timeout": seconds}``; reply: the
  node's :class:`~butter.peers.PeerInfo`. A caller naming its ``id`` with ``holds: true`` says it keeps
  this node in its known hosts and will poll again within ``hold_timeout`` seconds (default 30, at most
  3,600): it counts toward ``known_by`` until then. With ``holds: false`` (a probe, or a release after an
  eviction; the default) it stops counting at once. An empty body is a plain probe.
* ``known-hosts``, body optional ``{"from": PeerInfo, "sample": [PeerInfo]}``; reply
  ``{"sample": [PeerInfo]}``, up to 16 random known hosts. The caller and its sample (at most 16 entries
  are read) are introduced to host management in the background.

An authenticated caller whose ``id`` (or ``from``) names another node is refused (``sender-mismatch``), so
it can neither count as others nor release their holds. Both halves of the protocol live here: the
:class:`HostRoutes` that serve it and the functions the manager uses to ask.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from .. import codec
from ..peers import PeerAddress, PeerInfo

if TYPE_CHECKING:
    from .._routes import RouteRequest
    from ..slots import HostManager, NodeServices

__all__ = ["EXCHANGE_SAMPLE", "HostRoutes", "exchange_body", "quality_body", "read_exchange_reply",
           "read_quality_reply"]

EXCHANGE_SAMPLE = 16  # known hosts sent per known-hosts exchange, and most read from one
DEFAULT_HOLD_TIMEOUT = 30.0  # seconds a hold counts toward known_by when the holder names no hold_timeout
MAX_HOLD_TIMEOUT = 3600.0  # seconds; a longer hold_timeout is cut to this
PRUNE_INTERVAL = 1.0  # seconds between two sweeps of lapsed holds


class HostRoutes:
    """Serves ``host-quality`` and ``known-hosts`` for ``node`` (registered when built) and keeps the holds
    behind :meth:`known_by`; ``hosts`` answers the samples."""

    def __init__(self, node: NodeServices, hosts: HostManager) -> None:
        self._node = node
        self._hosts = hosts
        self._holds: dict[str, float] = {}  # node id of a peer holding this node -> when that lapses
        self._pruned = float("-inf")
        node.route("host-quality", self._serve_quality)
        node.route("known-hosts", self._serve_known_hosts)

    def known_by(self) -> int:
        """How many peers hold this node: distinct ids whose hold has not lapsed (swept once a second)."""
        now = anyio.current_time()
        if now - self._pruned >= PRUNE_INTERVAL:
            self._holds = {node_id: lapse for node_id, lapse in self._holds.items() if lapse >= now}
            self._pruned = now
        return len(self._holds)

    def _serve_quality(self, request: RouteRequest) -> bytes:
        if request.body:
            fields = codec.Fields.decode(request.body, self._node.settings.max_frame, what="host-quality body")
            holder = fields.value("id", codec.node_id, default=None)
            holds = fields.boolean("holds", default=False)
            hold_timeout = fields.number("hold_timeout", low=0.0, default=DEFAULT_HOLD_TIMEOUT)
            if holder is not None:
                request.check_sender(holder)
                if not holds:
                    self._holds.pop(holder, None)
                elif holder != self._node.node_id:
                    self._holds[holder] = anyio.current_time() + min(hold_timeout, MAX_HOLD_TIMEOUT)
        return codec.encode(self._node.info().to_wire())

    def _serve_known_hosts(self, request: RouteRequest) -> bytes:
        if request.body:
            fields = codec.Fields.decode(request.body, self._node.settings.max_frame, what="known-hosts body")
            sender = fields.value("from", codec.peer_info, default=None)
            sample = fields.sequence("sample", codec.peer_info, max_items=EXCHANGE_SAMPLE, default=[], truncate=True)
            if sender is not None:
                request.check_sender(sender.node_id)
            self._node.introduce([p.address for p in ([sender] if sender is not None else []) + sample])
        return codec.encode({"sample": [p.to_wire() for p in self._hosts.sample(EXCHANGE_SAMPLE)]})


def quality_body(node_id: str, *, holds: bool, hold_timeout: float) -> bytes:
    """A ``host-quality`` request body from node ``node_id``."""
    return codec.encode({"id": node_id, "holds": holds, "hold_timeout": hold_timeout})


def read_quality_reply(body: bytes, max_frame: int) -> PeerInfo:
    """The peer record of a ``host-quality`` reply. Raises :class:`~butter.errors.ProtocolError`."""
    return codec.peer_info(codec.decode_map(body, max_frame, what="host-quality reply"), "host-quality reply")


def exchange_body(me: PeerInfo, sample: list[PeerInfo]) -> bytes:
    """A ``known-hosts`` request body: this node's record and a sample of its known hosts."""
    return codec.encode({"from": me.to_wire(), "sample": [p.to_wire() for p in sample]})


def read_exchange_reply(body: bytes, max_frame: int) -> list[PeerAddress]:
    """The addresses of a ``known-hosts`` reply (at most 16 read). Raises
    :class:`~butter.errors.ProtocolError`."""
    fields = codec.Fields.decode(body, max_frame, what="known-hosts reply")
    return [p.address for p in fields.sequence("sample", codec.peer_info, max_items=EXCHANGE_SAMPLE, truncate=True)]
