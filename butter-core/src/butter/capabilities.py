"""Optional capabilities: what one plugin may offer another, declared and checked with ``isinstance``.

A slot object (a transport, a persistence service, ...) may offer more than its slot's protocol. Another
plugin that wants such an extra asks its node for it with :meth:`NodeServices.capability
<butter.slots.NodeServices.capability>`, which returns the first of the node's slot objects that implements
the protocol, or ``None``::

    holders = node.capability(ItemHolders)
    if holders is None:
        log.info("bfs: this node's drivers offer no ItemHolders: hits will name no other holders")

A consumer whose capability is missing degrades explicitly: it logs once, at start, what is off and why,
never silently. Each capability is covered by a check in :mod:`butter.testing` for drivers that offer it.

=========================  ==============================================  ====================================
capability                 what it answers                                 offered by (in this repository)
=========================  ==============================================  ====================================
:class:`ItemHolders`       which peers hold an item this node keeps        persistence pcg
:class:`KeptItems`         which items this node keeps alive               persistence pcg
:class:`GroupStatus`       replicas, target, state of a kept item's group  persistence pcg
:class:`ForgetItems`       dropping a kept item (its owner deleted it)     persistence pcg
:class:`KeepRecords`       keeping a signed record in a group of holders   persistence pcg
:class:`LocateItems`       which peers hold an item (a search)             retrieval bfs
:class:`Counters`          a snapshot of a service's counters              pcg, bfs, multicast, ambassador, tcp
:class:`OutgoingAdoption`  adopting a connected stream (hole punching)     transport tcp
=========================  ==============================================  ====================================

butter-core's README ("The plugin contract") says who consumes each one and what happens when it is missing.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from anyio.abc import ByteStream

from .peers import PeerAddress
from .records import SignedRecord

__all__ = [
    "Counters",
    "ForgetItems",
    "GroupState",
    "GroupStatus",
    "ItemHolders",
    "KeepRecords",
    "KeptItems",
    "LocateItems",
    "OutgoingAdoption",
    "ReplicaStatus",
]

GroupState = Literal["cold", "goldilocks", "hot"]
"""A group with fewer replicas than its target is ``cold``, more is ``hot``, as many is ``goldilocks``."""


@dataclass(frozen=True, slots=True)
class ReplicaStatus:
    """A kept item's group as this node sees it: ``replicas`` in view (this node included), the ``target``
    number of replicas, the ``state``, and the ``members``' addresses."""

    replicas: int
    target: int
    state: GroupState
    members: tuple[PeerAddress, ...] = ()


@runtime_checkable
class ItemHolders(Protocol):
    """``holders(content_id)``: addresses of the peers this node knows to hold the item (itself included),
    or ``[]`` when this node does not keep it. Retrieval answers a search with them."""

    def holders(self, content_id: str) -> list[PeerAddress]: ...


@runtime_checkable
class KeptItems(Protocol):
    """``kept_items()``: the content ids this node keeps alive (a snapshot). Retrieval advertises them in its
    digests; tools count them."""

    def kept_items(self) -> Collection[str]: ...


@runtime_checkable
class GroupStatus(Protocol):
    """``group_status(content_id)``: the :class:`ReplicaStatus` of a kept item's group, or ``None`` when this
    node does not keep it. For display (examples, ``butter demo``) and tests."""

    def group_status(self, content_id: str) -> ReplicaStatus | None: ...


@runtime_checkable
class ForgetItems(Protocol):
    """``await forget_item(content_id)``: stop keeping the item and delete its blocks that no other item kept here
    uses; nothing when it is not kept. The node calls it when the item's owner deleted it
    (:mod:`butter.tombstones`); without it only the manifest block is deleted."""

    async def forget_item(self, content_id: str) -> None: ...


@runtime_checkable
class KeepRecords(Protocol):
    """``await keep_record(record)``: keep the name of ``record`` (a verified
    :class:`~butter.records.SignedRecord`, already in the node's record book) alive among several holders,
    which converge to the newest record of the name and count as holders of it (:class:`KeptItems`,
    :class:`ItemHolders`, so that a search finds them). The node calls it when it publishes; without it a
    record lives only on the nodes that published, received or resolved it."""

    async def keep_record(self, record: SignedRecord) -> None: ...


@runtime_checkable
class LocateItems(Protocol):
    """``await locate(content_id, timeout=seconds)``: the addresses of holders of the item that a search
    finds (``timeout``: ``None`` for the driver's default). Raises :class:`~butter.errors.ItemNotFound`
    (:class:`~butter.errors.ItemDeleted` when the search met only its tombstone). :meth:`butter.Node.delete`
    uses it to reach the holders."""

    async def locate(self, content_id: str, *, timeout: float | None = None) -> list[PeerAddress]: ...


@runtime_checkable
class Counters(Protocol):
    """``counters()``: a snapshot of the service's counters since start, name -> count (plain ints), for
    logs, the simulator and metrics."""

    def counters(self) -> Mapping[str, int]: ...


@runtime_checkable
class OutgoingAdoption(Protocol):
    """A transport that can take a connection made elsewhere (a TCP hole punch) as its own:

    * ``expect_identity(address, node_id)``: from now on refuse any peer at ``address`` that does not
      authenticate as node ``node_id`` (hex); does nothing on a transport that authenticates no one.
    * ``await adopt_outgoing(address, stream)``: take ``stream``, already connected to the peer at
      ``address``, as this transport's outgoing connection to it, secured as a dialled one would be (the
      identity expected at ``address`` is checked). Raises :class:`~butter.errors.PeerUnreachable` or
      :class:`~butter.errors.PeerIdentityMismatch` (``stream`` is closed then).
    """

    def expect_identity(self, address: PeerAddress, node_id: str) -> None: ...

    async def adopt_outgoing(self, address: PeerAddress, stream: ByteStream) -> None: ...
