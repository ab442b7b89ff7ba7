"""The five pluggable slots, each a small :class:`typing.Protocol` of async methods (DESIGN "Slots and plugins").

A driver's plugin class returns one of these from its factory hook (:mod:`butter.hookspecs`). The node calls
these objects directly on the hot path; pluggy is only used to find them. Every long-running service has a
``run(*, task_status)`` method that the node starts with ``await task_group.start(obj.run)``, so start-up
errors reach the caller of :func:`butter.open_node`, and that returns only when cancelled.

Conformance kits for implementations live in :mod:`butter.testing`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol, runtime_checkable

from anyio.abc import TaskStatus

from .peers import PeerAddress, PeerInfo
from .wire import Reply, Request

__all__ = ["Discovery", "Dispatcher", "HostManager", "Persistence", "Retrieval", "Transport"]

Dispatcher = Callable[[Request], Awaitable[Reply]]
"""What a transport calls for each incoming request: the node's route table. It never raises.

The transport sets the request's :attr:`~butter.wire.Request.caller` to a :class:`~butter.wire.Caller`
saying who sent it (the authenticated node id, or ``None``, and the remote address), or leaves it ``None``
when it knows nothing; the node hands both to route handlers (:class:`~butter.node.RouteRequest`)."""


@runtime_checkable
class Transport(Protocol):
    """Moves requests and replies between nodes (SPEC §2).

    ``serve`` binds, reports the address peers should dial through ``task_status.started(address)``,
    then answers incoming requests with ``dispatch`` until cancelled; it also owns the transport's
    outgoing connections, so ``request`` works only while ``serve`` runs.

    Each request given to ``dispatch`` should carry a :class:`~butter.wire.Caller` (``request.caller``):
    ``node_id`` only when the transport *authenticated* the sender's identity (as the ``tcp`` transport's
    secure channel does; plaintext: ``None``), never a node id the sender merely claimed; ``address`` the
    remote address the request came from (not authenticated), or ``None``. A transport that knows neither
    may leave ``caller`` ``None``; handlers then behave as with any unauthenticated peer.

    ``request`` sends ``body`` (bytes) to ``route`` at ``address`` and returns the reply body. It raises
    :class:`~butter.errors.PeerUnreachable`, :class:`~butter.errors.RequestTimeout` (after ``timeout``
    seconds), :class:`~butter.errors.RemoteError` (the peer answered with an error reply) or
    :class:`~butter.errors.FrameTooLarge` (the request exceeds the frame limit; nothing was sent).
    """

    async def serve(self, dispatch: Dispatcher, *, task_status: TaskStatus[PeerAddress]) -> None: ...

    async def request(self, address: PeerAddress, route: str, body: bytes, *, timeout: float) -> bytes: ...


@runtime_checkable
class Discovery(Protocol):
    """Finds peers (SPEC §3) and offers them to host management with ``await node.hosts.offer(address)``."""

    async def run(self, *, task_status: TaskStatus[None]) -> None: ...


@runtime_checkable
class HostManager(Protocol):
    """Keeps the bounded list of known hosts, the node's view of the overlay (SPEC §4).

    ``offer`` considers a candidate (it may ask it for its quality record) and returns whether it was
    admitted; ``report_dead`` removes a host another module found unreachable; ``sample`` returns up to
    ``k`` random known hosts; ``run`` does periodic maintenance (quality refresh, pruning, exchange).
    """

    @property
    def capacity(self) -> int: ...

    def peers(self) -> list[PeerInfo]: ...

    def sample(self, k: int) -> list[PeerInfo]: ...

    async def offer(self, address: PeerAddress) -> bool: ...

    def report_dead(self, address: PeerAddress) -> None: ...

    async def run(self, *, task_status: TaskStatus[None]) -> None: ...


@runtime_checkable
class Persistence(Protocol):
    """Keeps items alive on the overlay (SPEC §6).

    ``keep`` starts keeping alive the item ``content_id`` (hex SHA-256 of its manifest, see
    :mod:`butter.blocks`) whose manifest and blocks the node has just put in its block store
    (:meth:`Node.store` and the built-in ``store`` route do that); it raises
    :class:`~butter.errors.IncompleteItem` when a block is missing. ``available_storage`` is the bytes this
    node can still accept (advertised in host quality). ``hand_off`` is called on graceful exit, while the
    node still serves, to move this node's data to peers.
    """

    def available_storage(self) -> int: ...

    async def run(self, *, task_status: TaskStatus[None]) -> None: ...

    async def keep(self, content_id: str) -> None: ...

    async def hand_off(self) -> None: ...


@runtime_checkable
class Retrieval(Protocol):
    """Finds items on the overlay by content id (SPEC §7).

    ``retrieve`` returns the item's bytes, every block verified against its address; ``stream`` yields the
    verified block data in order, for items too large to hold at once. Both raise
    :class:`~butter.errors.ItemNotFound` when the search ends without the item.
    """

    async def run(self, *, task_status: TaskStatus[None]) -> None: ...

    async def retrieve(self, content_id: str) -> bytes: ...

    def stream(self, content_id: str) -> AsyncIterator[bytes]: ...
