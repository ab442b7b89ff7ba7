"""The five pluggable slots, each a small :class:`typing.Protocol` of async methods.

A driver's plugin class returns one of these from its factory hook (:mod:`butter.hookspecs`). The node calls
these objects directly on the hot path; pluggy is only used to find them. Every long-running service has a
``run(*, task_status)`` method that the node starts with ``await task_group.start(obj.run)``, so start-up
errors reach the caller of :func:`butter.open_node`, and that returns only when cancelled.

Conformance kits for implementations live in :mod:`butter.testing`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, runtime_checkable

from anyio.abc import TaskStatus

from .peers import HostQuality, PeerAddress, PeerInfo
from .wire import Reply, Request

if TYPE_CHECKING:
    from ._identity import Identity
    from ._routes import Handler
    from .records import RecordBook
    from .settings import ButterSettings
    from .store import BlockStore
    from .tombstones import TombstoneBook

__all__ = [
    "Discovery",
    "Dispatcher",
    "EventName",
    "HostManager",
    "ImmediateDispatcher",
    "NodeServices",
    "Persistence",
    "Retrieval",
    "Transport",
]

C = TypeVar("C")

EventName = Literal[
    "butter_node_started",
    "butter_node_stopping",
    "butter_peer_discovered",
    "butter_peer_lost",
    "butter_item_stored",
    "butter_block_served",
    "butter_request_served",
]
"""The events a node emits: the event hooks of :mod:`butter.hookspecs`, whose signatures they follow."""

Dispatcher = Callable[[Request], Awaitable[Reply]]
"""What a transport calls for each incoming request: the node's route table. It never raises.

The transport sets the request's :attr:`~butter.wire.Request.caller` to a :class:`~butter.wire.Caller`
saying who sent it (the authenticated node id, or ``None``, and the remote address), or leaves it ``None``
when it knows nothing; the node hands both to route handlers (:class:`~butter.RouteRequest`)."""


@runtime_checkable
class ImmediateDispatcher(Protocol):
    """A :data:`Dispatcher` that can answer some requests on the spot: the node's route table, whose routes
    with a plain-function handler (no I/O) need no task of their own. A transport may try
    :meth:`answer_now` before spawning one; ``None`` means: call the dispatcher."""

    async def __call__(self, request: Request) -> Reply: ...

    def answer_now(self, request: Request) -> Reply | None: ...


class NodeServices(Protocol):
    """Everything a plugin may use of the node it serves, and nothing else (the plugin contract).

    Every factory hook (:mod:`butter.hookspecs`) receives the node as ``NodeServices``; plugins in this
    repository touch no other member of :class:`~butter.Node` (import-linter and mypy keep it so). Slot
    objects may offer more than their slot's protocol through the capabilities of
    :mod:`butter.capabilities`, found with :meth:`capability`.

    Identity and address:

    * ``node_id``: this node's id (hex, derived from its Ed25519 key); ``identity``: the key itself (a
      transport's secure channel proves it).
    * ``address``: where peers dial this node; raises ``RuntimeError`` before the transport listens.
    * ``settings``: the node's validated :class:`~butter.settings.ButterSettings` (read only).
    * ``uptime`` (seconds since listening), ``closing`` (graceful exit has begun).
    * ``ambassador``: set ``True`` by a service that makes this node an ambassador; advertised in
      :meth:`quality`.

    Talking to peers:

    * ``route(name, handler)``: serve route ``name`` with ``async (RouteRequest) -> bytes``.
    * ``request(peer, route, body, timeout=...)``: one request, the reply body back; raises
      :class:`~butter.errors.TransportError` subclasses or :class:`~butter.errors.RemoteError`.
    * ``fetch_block(peer, block_id, timeout=...)``: a block from a peer, verified against its id.

    Local state:

    * ``blocks``: the node's :class:`~butter.store.BlockStore`.
    * ``tombstones``: the node's :class:`~butter.tombstones.TombstoneBook`: items deleted by their owner
      (a holder refuses to replicate them again; retrieval answers that they are deleted).
    * ``records``: the node's :class:`~butter.records.RecordBook`: the newest valid signed record of each name
      it keeps (persistence keeps a published name's holders converging on it:
      :class:`~butter.capabilities.KeepRecords`).
    * ``hosts``: the node's :class:`HostManager` (its known hosts).
    * ``introduce(addresses)``: offer addresses to host management in the background (bounded queue).
    * ``quality()`` / ``info()``: this node's host-quality record / its :class:`~butter.peers.PeerInfo`.
    * ``available_storage()``: bytes of items this node can still accept (from persistence; 0 without).

    Tasks and events:

    * ``spawn(fn, *args)``: run ``await fn(*args)`` in the node's task group (cancelled when the node
      stops); an exception escaping it is logged, never fatal to the node.
    * ``subscribe(observer)``: register an object whose ``@butter.hookimpl`` methods receive this node's
      events (:data:`EventName`; pluggy checks their names and arguments against the hook specs).
    * ``emit(event, **kwargs)``: emit an event to every subscriber and observer plugin.
    * ``capability(cls)``: the first slot object of this node implementing capability ``cls`` (a
      runtime-checkable protocol of :mod:`butter.capabilities`), or ``None``; ``capabilities(cls)``: every
      one of them implementing it, in the same order.
    """

    @property
    def node_id(self) -> str: ...

    @property
    def identity(self) -> Identity: ...

    @property
    def address(self) -> PeerAddress: ...

    @property
    def settings(self) -> ButterSettings: ...

    @property
    def uptime(self) -> float: ...

    @property
    def closing(self) -> bool: ...

    ambassador: bool

    @property
    def blocks(self) -> BlockStore: ...

    @property
    def tombstones(self) -> TombstoneBook: ...

    @property
    def records(self) -> RecordBook: ...

    @property
    def hosts(self) -> HostManager: ...

    def route(self, name: str, handler: Handler) -> Handler: ...

    async def request(
        self, peer: PeerAddress | PeerInfo | str, route: str, body: bytes = b"", *, timeout: float | None = None
    ) -> bytes: ...

    async def fetch_block(
        self, peer: PeerAddress | PeerInfo | str, block_id: str, *, timeout: float | None = None
    ) -> bytes: ...

    def introduce(self, addresses: Iterable[PeerAddress]) -> None: ...

    def quality(self) -> HostQuality: ...

    def info(self) -> PeerInfo: ...

    def available_storage(self) -> int: ...

    def spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None: ...

    def subscribe(self, observer: object) -> None: ...

    def emit(self, event: EventName, **kwargs: Any) -> None: ...

    def capability(self, cls: type[C]) -> C | None: ...

    def capabilities(self, cls: type[C]) -> list[C]: ...


@runtime_checkable
class Transport(Protocol):
    """Moves requests and replies between nodes.

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
    """Finds peers and offers them to host management with ``await node.hosts.offer(address)``."""

    async def run(self, *, task_status: TaskStatus[None]) -> None: ...


@runtime_checkable
class HostManager(Protocol):
    """Keeps the bounded list of known hosts, the node's view of the overlay, and owns its
    protocol: the driver registers its own routes (``diversity``: ``host-quality``, ``known-hosts``).

    ``offer`` considers a candidate (it may ask it for its quality record) and returns whether it was
    admitted; ``report_dead`` removes a host another module found unreachable; ``sample`` returns up to
    ``k`` random known hosts; ``known_by`` is how many peers currently hold this node in their lists, as far
    as this driver can tell (0 when it cannot); ``run`` does periodic maintenance (quality refresh, pruning,
    exchange).
    """

    @property
    def capacity(self) -> int: ...

    def peers(self) -> list[PeerInfo]: ...

    def sample(self, k: int) -> list[PeerInfo]: ...

    async def offer(self, address: PeerAddress) -> bool: ...

    def report_dead(self, address: PeerAddress) -> None: ...

    def known_by(self) -> int: ...

    async def run(self, *, task_status: TaskStatus[None]) -> None: ...


@runtime_checkable
class Persistence(Protocol):
    """Keeps items alive on the overlay.

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
    """Finds items on the overlay by content id.

    ``retrieve`` returns the item's bytes, every block verified against its address; ``stream`` yields the
    verified block data in order, for items too large to hold at once. Both raise
    :class:`~butter.errors.ItemNotFound` when the search ends without the item, with its fields saying how
    far the search went (hosts asked, rings, hops, holders found, whether the deadline ended it).

    ``timeout`` is a deadline in seconds (``None``: the driver's default; ``math.inf``: none). ``retrieve``
    returns or raises within ``timeout`` of the call, search and fetching together; a missing item is
    reported :class:`~butter.errors.ItemNotFound` then, never later. ``stream`` finds the item within
    ``timeout``, and then gets each batch of blocks it fetches within ``timeout`` (the consumer's own time
    between blocks is not counted).
    """

    async def run(self, *, task_status: TaskStatus[None]) -> None: ...

    async def retrieve(self, content_id: str, *, timeout: float | None = None) -> bytes: ...

    def stream(self, content_id: str, *, timeout: float | None = None) -> AsyncIterator[bytes]: ...
