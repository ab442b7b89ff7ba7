"""A node's snapshot: what the tracker writes, the ``stats`` route answers and ``butter graph`` draws.

:func:`take_snapshot` reads it from a node through :class:`~butter.slots.NodeServices` and the capabilities
(:class:`~butter.capabilities.KeptItems`, :class:`~butter.capabilities.GroupStatus`,
:class:`~butter.capabilities.Counters` of every slot object that offers them). Snapshots are
:class:`butter.codec.Record` types: they encode to msgpack maps and decode, bounded, from untrusted bytes.
"""

from __future__ import annotations

import time
from typing import Any

from butter import codec
from butter.capabilities import Counters, GroupStatus, KeptItems
from butter.errors import ProtocolError
from butter.peers import PeerInfo
from butter.slots import NodeServices

__all__ = ["GroupView", "HostView", "Snapshot", "take_snapshot"]

MAX_HOSTS = 1024  # known hosts in one snapshot; more are cut
MAX_GROUPS = 1024  # groups in one snapshot (the items count is the full one)
MAX_MEMBERS = 64  # members listed per group
MAX_COUNTER_SOURCES = 16
MAX_COUNTERS = 256  # per source

_address = codec.string(max_length=300)
_text = codec.string(max_length=128)


def counter_table(value: Any, name: str) -> dict[str, dict[str, int]]:
    """A reader: ``{source: {counter: count}}`` with bounded sizes; counts are integers >= 0."""
    outer = codec.Fields(value, name)
    if len(outer.raw) > MAX_COUNTER_SOURCES:
        raise ProtocolError(f"{name}: more than {MAX_COUNTER_SOURCES} counter sources")
    table: dict[str, dict[str, int]] = {}
    for source in outer.raw:
        inner = outer.submap(_text(source, f"{name} key"))
        if len(inner.raw) > MAX_COUNTERS:
            raise ProtocolError(f"{inner.what}: more than {MAX_COUNTERS} counters")
        table[source] = {_text(key, f"{inner.what} key"): inner.integer(key) for key in inner.raw}
    return table


class HostView(codec.Record):
    """One known host as the snapshotting node sees it: id, address (``HOST:PORT``) and its quality record
    (seconds, bytes, counts)."""

    node_id: str = codec.wire("id", codec.node_id)
    address: str = codec.wire("addr", _address)
    uptime: float = codec.wire("uptime", codec.number(0.0))
    available_storage: int = codec.wire("storage", codec.integer())
    known_hosts: int = codec.wire("kh", codec.integer())
    known_by: int = codec.wire("kb", codec.integer())
    ambassador: bool = codec.wire("amb", codec.boolean, default=False)

    @classmethod
    def of(cls, peer: PeerInfo) -> HostView:
        """The view of a known host's :class:`~butter.peers.PeerInfo`."""
        q = peer.quality
        return cls(peer.node_id, str(peer.address), q.uptime, q.available_storage, q.known_hosts, q.known_by,
                   q.ambassador)


class GroupView(codec.Record):
    """A kept item's group: content id, ``state`` (cold, goldilocks, hot), replicas in view, target, and its
    members' addresses (at most 64)."""

    content_id: str = codec.wire("cid", codec.content_id)
    state: str = codec.wire("state", codec.string(max_length=16))
    replicas: int = codec.wire("replicas", codec.integer())
    target: int = codec.wire("target", codec.integer())
    members: tuple[str, ...] = codec.wire("members", codec.sequence(_address, max_items=MAX_MEMBERS), default=())


class Snapshot(codec.Record):
    """One node at one moment: ``taken_at`` (Unix time, seconds), its id and address, ``uptime`` (seconds),
    its own quality figures, the known hosts, ``items`` (how many items it keeps alive), their groups (at most
    1,024 listed) and ``counters`` (``{source: {name: count}}``, a source per slot object offering
    :class:`~butter.capabilities.Counters`, named by its class)."""

    node_id: str = codec.wire("id", codec.node_id)
    address: str = codec.wire("addr", _address)
    taken_at: float = codec.wire("at", codec.number(0.0))
    uptime: float = codec.wire("uptime", codec.number(0.0))
    available_storage: int = codec.wire("storage", codec.integer())
    known_by: int = codec.wire("kb", codec.integer())
    items: int = codec.wire("items", codec.integer())
    hosts: tuple[HostView, ...] = codec.wire("hosts", codec.sequence(HostView.read, max_items=MAX_HOSTS))
    groups: tuple[GroupView, ...] = codec.wire("groups", codec.sequence(GroupView.read, max_items=MAX_GROUPS))
    counters: dict[str, dict[str, int]] = codec.wire("counters", counter_table)

    def groups_by_state(self) -> dict[str, int]:
        """How many listed groups are in each state."""
        out: dict[str, int] = {}
        for group in self.groups:
            out[group.state] = out.get(group.state, 0) + 1
        return out


def take_snapshot(node: NodeServices, *, max_groups: int = MAX_GROUPS) -> Snapshot:
    """Read ``node`` now (a started node: its address must be known). Cheap: no I/O, no await."""
    kept = node.capability(KeptItems)
    status = node.capability(GroupStatus)
    content_ids = list(kept.kept_items()) if kept is not None else []
    groups = []
    for content_id in content_ids[:max_groups]:
        replica = status.group_status(content_id) if status is not None else None
        if replica is not None:
            members = tuple(str(a) for a in replica.members[:MAX_MEMBERS])
            groups.append(GroupView(content_id, replica.state, replica.replicas, replica.target, members))
    counters: dict[str, dict[str, int]] = {}
    for source in node.capabilities(Counters)[:MAX_COUNTER_SOURCES]:
        counters[type(source).__name__] = dict(list(source.counters().items())[:MAX_COUNTERS])
    quality = node.quality()
    hosts = tuple(HostView.of(p) for p in node.hosts.peers()[:MAX_HOSTS])
    return Snapshot(
        node.node_id, str(node.address), time.time(), node.uptime, quality.available_storage, quality.known_by,
        len(content_ids), hosts, tuple(groups), counters,
    )
