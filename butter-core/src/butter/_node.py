"""The Butter node: a peer that serves named routes and runs client behaviours.

A node is an async context manager owning one anyio task group::

    async with butter.open_node(settings) as node:
        @node.route("reverse")
        async def reverse(request: RouteRequest) -> bytes:
            return request.body[::-1]

        print(await node.request(peer_address, "reverse", b"olleh"))

Composition: the node builds one object per slot through the plugins' factory hooks (each gets the node
as :class:`~butter.slots.NodeServices`, and may register routes: host management serves its own protocol),
then registers the core routes: ``ping`` here, ``fetch-block`` and ``store`` in the content API
(:mod:`butter._content`), ``get-record`` and ``put-record`` in the naming API (:mod:`butter._naming`),
``delete-item`` in the delete API (:mod:`butter._deletion`), ``get-document`` and ``put-revisions`` in the
document API (:mod:`butter._documents`).
Requests reach handlers through the route table (:mod:`butter._routes`).

Start-up: start the transport (bind errors reach the caller), then host
management, persistence (which resumes the items of a durable store) and retrieval, answering every
request ``starting`` until then; then discovery and the client behaviours.

Graceful exit (the report's design rather than the original code, which only closed the
listener): new requests are refused with ``shutting-down``, persistence hands its data off, open requests
get up to ``shutdown_timeout`` seconds to finish, then every task is cancelled.
"""

from __future__ import annotations

import inspect
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import pluggy
from anyio.abc import TaskGroup, TaskStatus
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import codec
from ._content import Content
from ._deletion import Deletion
from ._documents import Documents
from ._identity import Identity
from ._logs import current_node_id
from ._naming import DEFAULT_FANOUT, DEFAULT_RECORD_EXPIRY, Naming
from ._plugins import PluginStack
from ._routes import Handler, NodeStats, RouteRequest, RouteTable, check_route_name
from .capabilities import KeptItems
from .documents import Document, DocumentBook, Revision
from .errors import ButterConfigError, ButterError
from .peers import HostQuality, PeerAddress, PeerInfo, kept_tag
from .records import RecordBook, RecordValue, SignedRecord
from .settings import ButterSettings, budget_split, load_settings
from .slots import Discovery, EventName, HostManager, NodeServices, Persistence, Retrieval, Transport
from .store import BlockStore, open_store
from .tombstones import DEFAULT_TOMBSTONE_EXPIRY, TombstoneBook

__all__ = ["ClientBehaviour", "Node", "NodeStats", "open_node"]

log = logging.getLogger("butter.node")

INTRODUCTION_QUEUE = 256  # addresses waiting to be offered to host management; more are dropped
INTRODUCTION_OFFERS = 8  # introduced addresses offered to host management at once
KEPT_TAG_INTERVAL = 1.0  # seconds: the tag of the kept items in quality() is recomputed at most this often

ClientBehaviour = Callable[["Node"], Awaitable[None]]
PeerLike = PeerAddress | PeerInfo | str
C = TypeVar("C")


def as_address(peer: PeerLike) -> PeerAddress:
    """Accept a :class:`PeerAddress`, a :class:`PeerInfo` or ``"host:port"``."""
    if isinstance(peer, PeerAddress):
        return peer
    if isinstance(peer, PeerInfo):
        return peer.address
    return PeerAddress.parse(peer)


class Node:
    """One peer. Build it with :func:`open_node`; do not instantiate directly."""

    def __init__(self, settings: ButterSettings, identity: Identity, plugins: PluginStack) -> None:
        self.settings = settings
        self.identity = identity
        self.node_id = identity.node_id
        self.plugins = plugins
        self.stats = NodeStats()
        self.ambassador = False  # set by an ambassador role (butter-wider-ambassador); advertised in quality()
        self._route_table = RouteTable(self, self.stats)
        self._behaviours: list[ClientBehaviour] = []
        self._tg: TaskGroup | None = None
        self._address: PeerAddress | None = None
        self._started_at = 0.0
        self._kept_tag_at, self._kept_tag_value = float("-inf"), ""
        self._closing = False
        self._closed = anyio.Event()
        self._introductions_send, self._introductions = anyio.create_memory_object_stream[PeerAddress](
            INTRODUCTION_QUEUE
        )
        storage = budget_split(int(settings.memory_budget)).storage
        self.blocks: BlockStore = open_store(settings.store, data_dir=settings.data_dir, default_capacity=storage)
        hook = plugins.hook
        self.transport: Transport = self._required(hook.butter_transport(node=self), "transport")
        self.hosts: HostManager = self._required(hook.butter_host_manager(node=self), "host_manager")
        self.persistence: Persistence | None = hook.butter_persistence(node=self)
        self.retrieval: Retrieval | None = hook.butter_retrieval(node=self)
        self.discoveries: list[Discovery] = list(hook.butter_discovery(node=self))
        self._capabilities: dict[type, list[Any]] = {}  # capability class -> slot objects (cached once all exist)
        self._route_table.hold()  # every request is answered ``starting`` until the services have started
        self.route("ping", self._serve_ping)
        self._deletion = Deletion(self, identity.private_key)
        self._content = Content(self, self.persistence, self.retrieval, self._deletion)
        self._naming = Naming(self, identity.private_key)
        self._documents = Documents(self, identity.private_key, self._deletion.book)

    def _required(self, obj: Any, slot: str) -> Any:
        if obj is None:
            raise ButterConfigError(f"the {slot} driver {self.plugins.selected(slot)} built no {slot} object")
        return obj

    # -- public API -------------------------------------------------------------------------------------

    @property
    def address(self) -> PeerAddress:
        """The address peers dial to reach this node. Raises ``RuntimeError`` before start."""
        if self._address is None:
            raise RuntimeError("node is not started")
        return self._address

    @property
    def uptime(self) -> float:
        """Seconds since the node started listening."""
        return anyio.current_time() - self._started_at if self._address else 0.0

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def task_group(self) -> TaskGroup:
        """The node's task group, for services that spawn their own tasks."""
        if self._tg is None:
            raise RuntimeError("node is not started")
        return self._tg

    def route(self, name: str, handler: Handler | None = None) -> Any:
        """Register ``handler`` (``async (RouteRequest) -> bytes``, or a plain ``(RouteRequest) -> bytes`` for
        one that does no I/O: answered without a task of its own where the transport can) for route ``name``;
        usable as a decorator.

        Registering a name again replaces the handler. Raises ``ValueError`` for a name that is
        empty or longer than 128 characters.
        """
        check_route_name(name)  # now, not only when a decorator is applied

        def register(fn: Handler) -> Handler:
            return self._route_table.add(name, fn)

        return register if handler is None else register(handler)

    @property
    def routes(self) -> list[str]:
        """The names of the routes this node serves, sorted."""
        return self._route_table.names

    def behaviour(self, fn: ClientBehaviour) -> ClientBehaviour:
        """Register a client behaviour, ``async (node) -> None``, run for the node's lifetime.

        Usable as a decorator. Registered after start, it starts at once. An exception escaping it is
        logged; the node keeps running.
        """
        self._behaviours.append(fn)
        if self._tg is not None and not self._closing:
            self._tg.start_soon(self._run_behaviour, fn)
        return fn

    async def request(self, peer: PeerLike, route: str, body: bytes = b"", *, timeout: float | None = None) -> bytes:
        """Send ``body`` to ``route`` on ``peer`` and return the reply body.

        ``timeout`` is in seconds (default ``settings.request_timeout``). Raises
        :class:`~butter.errors.PeerUnreachable`, :class:`~butter.errors.RequestTimeout`,
        :class:`~butter.errors.RemoteError` (an error reply, e.g. code ``unknown-route``) or
        :class:`~butter.errors.FrameTooLarge`.
        """
        address = as_address(peer)
        self.stats.requests_sent += 1
        try:
            return await self.transport.request(
                address, route, bytes(body), timeout=self.settings.request_timeout if timeout is None else timeout
            )
        except ButterError:
            self.stats.requests_failed += 1
            raise

    async def store(self, data: bytes, *, media_type: str = "application/octet-stream", encrypt: bool = False,
                    owner: Ed25519PrivateKey | None = None) -> str:
        """Store ``data`` (bytes) on the overlay; returns its content id (hex), or with ``encrypt`` a capability.

        The data is cut into blocks (``settings.store.block_size``), put in this node's block
        store, then handed to the persistence slot, which keeps it alive (PCG recruits replicas at once).
        With ``encrypt=True`` the data is first encrypted here under a fresh key (ChaCha20-Poly1305, see
        :mod:`butter.encryption`): holders only ever see ciphertext, and the return value is the capability
        ``"bcap1:<content id>:<key>"``, the one string that reads the item back with :meth:`retrieve`.
        With ``owner`` (an Ed25519 key, e.g. ``node.identity.private_key`` or
        :func:`butter.records.load_owner_key`'s) the manifest names its public key, and that key alone can
        :meth:`delete` the item; without one the item cannot be deleted.
        Raises :class:`~butter.errors.ButterConfigError` when no persistence driver is configured,
        :class:`~butter.errors.StoreFull` when this node has no room for it (nothing is stored then),
        :class:`~butter.errors.ItemDeleted` when this node keeps a tombstone of the same item and
        ``ValueError`` for a ``media_type`` with ``encrypt`` (holders would read it).
        """
        return await self._content.store(data, media_type=media_type, encrypt=encrypt, owner=owner)

    async def retrieve(self, content_id: str, *, timeout: float | None = None) -> bytes:
        """Find and return the item ``content_id`` (hex) through the retrieval slot, verified block by block,
        within ``timeout`` seconds (``None``: the driver's default, 30 s for ``bfs``; ``math.inf``: no limit).
        Given a capability (``"bcap1:..."``, from ``store(..., encrypt=True)``) instead, it retrieves the
        encrypted item and returns its decrypted, authenticated plaintext.

        Raises :class:`~butter.errors.ButterConfigError` when no retrieval driver is configured,
        :class:`~butter.errors.ItemNotFound` (its fields say how far the search went) when the search fails
        or the deadline passes (:class:`~butter.errors.ItemDeleted`, a subclass, when this node or a node
        searched keeps the owner's tombstone of it and no holder served it),
        :class:`~butter.errors.InvalidCapability` for a malformed capability and
        :class:`~butter.errors.DecryptionFailed` when the item does not authenticate under its key.
        """
        return await self._content.retrieve(content_id, timeout=timeout)

    def retrieve_stream(self, content_id: str, *, timeout: float | None = None) -> AsyncIterator[bytes]:
        """Like :meth:`retrieve`, but yield the verified blocks in order, for large items: finding the item,
        then each batch of blocks, takes at most ``timeout`` seconds (see :class:`~butter.slots.Retrieval`).
        An encrypted item (a capability) is authenticated as a whole, so it comes as one chunk, at the end."""
        return self._content.retrieve_stream(content_id, timeout=timeout)

    async def fetch_block(self, peer: PeerLike, block_id: str, *, timeout: float | None = None) -> bytes:
        """Fetch one block from ``peer`` and verify it against ``block_id``.

        Raises :class:`~butter.errors.BlockCorrupted` when the bytes do not match (they are discarded),
        :class:`~butter.errors.RemoteError` with code ``not-found``, or a transport error.
        """
        return await self._content.fetch_block(as_address(peer), block_id, timeout=timeout)

    async def publish(
        self,
        label: str,
        value: RecordValue,
        *,
        owner: Ed25519PrivateKey | None = None,
        record_expiry: float = DEFAULT_RECORD_EXPIRY,
        fanout: int = DEFAULT_FANOUT,
        timeout: float | None = None,
    ) -> SignedRecord:
        """Point the name of (``owner``, ``label``) at ``value``: a content id, a capability or at most 1 KiB
        of bytes. Returns the signed record; its ``name`` (64 hex) is what :meth:`resolve` takes.

        ``owner`` is the Ed25519 key that signs (default: this node's identity key; a key file moves with its
        user, see :func:`butter.records.load_owner_key`). The record's sequence is above every one this node,
        up to ``fanout`` peers and up to ``fanout`` of the name's holders that a search finds hold for the name
        (and above the clock in milliseconds); it expires ``record_expiry`` seconds from now (default one
        day). It is kept here and pushed to those peers and holders, each request within ``timeout`` seconds
        (default ``settings.request_timeout``); peers that cannot be reached are skipped. When no holder took
        it, persistence keeps the name in a group of holders (pcg: docs/protocol/records.md). Raises
        ``ValueError`` for a label over 128 characters or a value that is not one
        of the three kinds (see :mod:`butter.records`).
        """
        return await self._naming.publish(label, value, owner=owner, record_expiry=record_expiry, fanout=fanout,
                                          timeout=timeout)

    async def resolve(self, name: str, *, fanout: int = DEFAULT_FANOUT, timeout: float | None = None) -> SignedRecord:
        """The newest valid record of ``name`` (64 hex): asks up to ``fanout`` peers at once, each within
        ``timeout`` seconds, verifies every answer (forged, expired, older and misnamed records are refused and
        counted in :attr:`records`), and returns the highest sequence among theirs and this node's own; peers
        that answered an older one are sent the newest. Its ``value`` is what the name points at.

        When persistence keeps names in groups and retrieval searches (pcg and bfs), the holders that the
        search finds are asked too, at the same time, so a name published far away is found; the search takes
        at most ``timeout`` seconds in all (default: the retrieval driver's, bfs ``retrieve_timeout``).

        Raises :class:`~butter.errors.RecordNotFound` when neither this node nor a peer asked has a valid one,
        :class:`~butter.errors.RecordDeleted` (a subclass) when the newest is the owner's deletion record
        (:meth:`unpublish`), and ``ValueError`` for a name that is not 64 lowercase hex characters.
        """
        return await self._naming.resolve(name, fanout=fanout, timeout=timeout)

    async def unpublish(
        self,
        label: str,
        *,
        owner: Ed25519PrivateKey | None = None,
        tombstone_expiry: float = DEFAULT_TOMBSTONE_EXPIRY,
        fanout: int = DEFAULT_FANOUT,
        timeout: float | None = None,
    ) -> SignedRecord:
        """Delete the name of (``owner``, ``label``): publish its deletion record
        (:func:`butter.records.sign_deletion`), signed by ``owner`` (default: this node's identity key), with a
        sequence above every one found, kept ``tombstone_expiry`` seconds (default 30 days), the same way as
        :meth:`publish` (kept here, handed to persistence, pushed to up to ``fanout`` peers, each request within
        ``timeout`` seconds). Holders that take it drop the name's record and refuse its older ones until it
        expires; :meth:`resolve` of the name then raises :class:`~butter.errors.RecordDeleted`. Returns the
        deletion record. Raises ``ValueError`` for a label over 128 characters. Publishing the name again
        (a higher sequence) brings it back."""
        return await self._naming.publish(label, b"", owner=owner, record_expiry=tombstone_expiry, fanout=fanout,
                                          timeout=timeout, deleted=True)

    async def delete(
        self,
        content_id: str,
        *,
        owner: Ed25519PrivateKey | None = None,
        tombstone_expiry: float = DEFAULT_TOMBSTONE_EXPIRY,
        timeout: float | None = None,
    ) -> int:
        """Delete item ``content_id`` (64 hex, or a capability ``bcap1:...``: its item) as its owner: sign a
        tombstone with ``owner`` (default: this node's identity key), drop the item here and send the
        tombstone to every holder that this node knows or retrieval's search finds (each forwards it once to
        the holders it knows). Holders that accept it drop the item's blocks (those no other item uses), keep
        the tombstone ``tombstone_expiry`` seconds (default 30 days) and answer retrieval with
        :class:`~butter.errors.ItemDeleted`. Each request takes at most ``timeout`` seconds (default
        ``settings.request_timeout``). Returns how many holders besides this node accepted it.

        Raises :class:`~butter.errors.TombstoneRejected` when the item has no owner or ``owner`` is not it,
        :class:`~butter.errors.ItemDeleted` when it is already deleted,
        :class:`~butter.errors.ItemNotFound` when neither this node nor the search finds its manifest, and
        ``ValueError`` for a ``content_id`` that is neither a content id nor a capability. A peer that
        ignores the protocol keeps its copy: deletion is honoured by honest holders only
        (docs/protocol/delete.md)."""
        return await self._deletion.delete(content_id, owner=owner, tombstone_expiry=tombstone_expiry,
                                           timeout=timeout)

    async def create_document(
        self,
        body: bytes,
        *,
        writers: Iterable[bytes] | None = None,
        owner: Ed25519PrivateKey | None = None,
        fanout: int = DEFAULT_FANOUT,
        timeout: float | None = None,
    ) -> str:
        """Create a multi-writer document whose first version is ``body`` (at most 16 KiB); returns its id
        (64 hex), which :meth:`append`, :meth:`read_document` and :meth:`delete_document` take.

        ``owner`` (default: this node's identity key) signs the genesis revision and is the document's
        creator, the one key that may delete it. ``writers`` (raw 32-byte Ed25519 public keys, at most 63
        besides the creator's, which is always on it) restricts who may append; ``None`` lets anyone. The
        revision is kept here and pushed to up to ``fanout`` peers, each request within ``timeout`` seconds
        (default ``settings.request_timeout``). Raises ``ValueError`` for a body over 16 KiB or too many
        writers, and :class:`~butter.errors.RevisionRefused` when this node's document book is full (1,000
        documents or 64 MiB). The format and merge rule: :mod:`butter.documents`.
        """
        return await self._documents.create(body, writers=writers, owner=owner, fanout=fanout, timeout=timeout)

    async def append(
        self,
        document_id: str,
        body: bytes,
        *,
        owner: Ed25519PrivateKey | None = None,
        fanout: int = DEFAULT_FANOUT,
        timeout: float | None = None,
    ) -> Revision:
        """Add a new version ``body`` (at most 16 KiB) to document ``document_id``, signed by ``owner``
        (default: this node's identity key); returns the revision. It first reads the document like
        :meth:`read_document`, so the revision follows every head found (it merges concurrent versions:
        its ``parents`` are the heads, its ``clock`` their highest plus one); it is kept here and pushed to
        up to ``fanout`` peers.

        Raises :class:`~butter.errors.RevisionRefused` when ``owner`` is not on the creator's writers list
        (or this node's document book is full),
        :class:`~butter.errors.DocumentNotFound` when neither this node nor a peer asked knows the document,
        :class:`~butter.errors.DocumentDeleted` when its creator deleted it, and ``ValueError`` for a
        malformed id or a body over 16 KiB.
        """
        return await self._documents.append(document_id, body, owner=owner, fanout=fanout, timeout=timeout)

    async def read_document(self, document_id: str, *, fanout: int = DEFAULT_FANOUT,
                            timeout: float | None = None) -> Document:
        """Read document ``document_id`` (64 hex): ask up to ``fanout`` peers at once (each asks its own
        peers once first), each within ``timeout`` seconds, merge every valid revision into this node's
        replica (forged ones, those of writers not on the list and wrong clocks are refused and counted in
        :attr:`documents`; those whose parents are missing are held until they arrive), send each peer what
        it lacked, and return the merged :class:`~butter.documents.Document`: its ``body`` (the current
        version: the head with the greatest Lamport clock, then author key, then revision id), ``heads``,
        ``history``, and how many peers were ``asked`` and ``answered`` (few or none: it may be stale).

        Raises :class:`~butter.errors.DocumentNotFound` when neither this node nor a peer asked knows it,
        :class:`~butter.errors.DocumentDeleted` (a subclass) when its creator deleted it, and ``ValueError``
        for an id that is not 64 lowercase hex characters.
        """
        return await self._documents.read(document_id, fanout=fanout, timeout=timeout)

    async def delete_document(
        self,
        document_id: str,
        *,
        owner: Ed25519PrivateKey | None = None,
        tombstone_expiry: float = DEFAULT_TOMBSTONE_EXPIRY,
        fanout: int = DEFAULT_FANOUT,
        timeout: float | None = None,
    ) -> int:
        """Delete document ``document_id`` as its creator: read it (to learn its creator), sign a tombstone
        (:mod:`butter.tombstones`, kept ``tombstone_expiry`` seconds, default 30 days) with ``owner``
        (default: this node's identity key), drop the document here and push the tombstone to up to
        ``fanout`` peers; every node that accepts it drops its revisions and answers reads with
        :class:`~butter.errors.DocumentDeleted`. Returns how many peers accepted it.

        Raises :class:`~butter.errors.TombstoneRejected` when ``owner`` is not the creator,
        :class:`~butter.errors.DocumentDeleted` when it is already deleted,
        :class:`~butter.errors.DocumentNotFound` when it is not found, and ``ValueError`` for a malformed
        id. A peer that ignores the protocol keeps its copy: deletion is honoured by honest nodes only.
        """
        return await self._documents.delete(document_id, owner=owner, tombstone_expiry=tombstone_expiry,
                                            fanout=fanout, timeout=timeout)

    @property
    def documents(self) -> DocumentBook:
        """The documents this node keeps replicas of, and the counts of the revisions it refused."""
        return self._documents.book

    @property
    def tombstones(self) -> TombstoneBook:
        """The tombstones this node keeps (deleted items, until each expires) and the counts of those it
        refused."""
        return self._deletion.book

    @property
    def records(self) -> RecordBook:
        """The signed records this node keeps (the newest of each name) and the counts of those it refused."""
        return self._naming.book

    def quality(self) -> HostQuality:
        """This node's host-quality record: its uptime, available storage, the sizes of its
        known-host list and of the set of peers holding it (as host management counts them), whether
        it is an ambassador, and the tag of the items it keeps (recomputed at most once a second)."""
        return HostQuality(
            uptime=self.uptime,
            available_storage=self.available_storage(),
            known_hosts=len(self.hosts.peers()),
            known_by=self.hosts.known_by(),
            ambassador=self.ambassador,
            kept=self._kept_tag(),
        )

    def _kept_tag(self) -> str:
        """:func:`~butter.peers.kept_tag` of the kept items (capability ``KeptItems``), ``""`` without one;
        recomputed at most every ``KEPT_TAG_INTERVAL`` seconds."""
        now = anyio.current_time()
        if now - self._kept_tag_at >= KEPT_TAG_INTERVAL:
            kept = self.capability(KeptItems)
            self._kept_tag_value = kept_tag(kept.kept_items()) if kept is not None else ""
            self._kept_tag_at = now
        return self._kept_tag_value

    def info(self) -> PeerInfo:
        """This node as peers see it: id, address and quality."""
        return PeerInfo(self.node_id, self.address, self.quality(), anyio.current_time())

    def introduce(self, addresses: Iterable[PeerAddress]) -> None:
        """Queue addresses to be offered to host management in the background, without waiting.

        Used by discovery and by the known-hosts exchange. When the queue (256) is full the rest are
        dropped and counted in ``stats.introductions_dropped``.
        """
        for address in addresses:
            if self._address is not None and address == self._address:
                continue
            try:
                self._introductions_send.send_nowait(address)
            except (anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
                self.stats.introductions_dropped += 1

    def emit(self, event: EventName, **kwargs: Any) -> None:
        """Call event hook ``event`` (e.g. ``"butter_peer_lost"``, see :mod:`butter.hookspecs`) on every
        subscriber and observer plugin, and await any awaitable results in the node's task group. An
        observer's exception is logged, never raised."""
        hook = getattr(self.plugins.hook, event)
        if not hook.get_hookimpls():  # nobody listens (every served request emits one: skip pluggy's call)
            return
        try:
            results = hook(node=self, **kwargs)
        except Exception:
            log.exception("event hook %s failed", event)
            return
        if self._tg is None:
            return
        for result in results or ():
            if inspect.isawaitable(result):
                self._tg.start_soon(self._await_observer, event, result)

    def subscribe(self, observer: object) -> None:
        """Register ``observer``, an object with ``@butter.hookimpl`` event methods, for this node's events.

        Raises ``ValueError`` when one of its hook implementations names no event or takes arguments the
        event does not have (pluggy's validation)."""
        try:
            self.plugins.pm.register(observer, name=f"subscriber:{id(observer)}")
        except pluggy.PluginValidationError as exc:
            raise ValueError(f"cannot subscribe {type(observer).__qualname__}: {exc}") from None

    def spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run ``await fn(*args)`` in the node's task group; it is cancelled when the node stops. An
        exception escaping it is logged, never fatal. Raises ``RuntimeError`` before start."""
        self.task_group.start_soon(self._run_task, fn, args)

    async def _run_task(self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> None:
        try:
            await fn(*args)
        except Exception:
            log.exception("task %s failed", getattr(fn, "__qualname__", fn))

    def capability(self, cls: type[C]) -> C | None:
        """The first of this node's slot objects (persistence, retrieval, transport, host manager, then
        discoveries) implementing capability ``cls`` (see :mod:`butter.capabilities`), or ``None``."""
        return next(iter(self.capabilities(cls)), None)

    def capabilities(self, cls: type[C]) -> list[C]:
        """Every one of this node's slot objects implementing capability ``cls``, in :meth:`capability`'s
        order (for instance each service's :class:`~butter.capabilities.Counters`). Found once per ``cls``
        (an ``isinstance`` check against a runtime protocol is slow, and the slot objects never change)."""
        found = self._capabilities.get(cls)
        if found is None:
            candidates = [self.persistence, self.retrieval, self.transport, self.hosts, *self.discoveries]
            found = self._capabilities[cls] = [c for c in candidates if c is not None and isinstance(c, cls)]
        return list(found)

    def available_storage(self) -> int:
        """Bytes of items this node can still accept: the persistence driver's figure, 0 without one."""
        return self.persistence.available_storage() if self.persistence is not None else 0

    async def wait_for_exit(
        self, signals: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)
    ) -> None:
        """Return when one of ``signals`` arrives or :meth:`aclose` is called; for long-running processes."""
        async with anyio.create_task_group() as tg:

            async def on_signal() -> None:
                with anyio.open_signal_receiver(*signals) as received:
                    async for signum in received:
                        log.info("received %s, leaving gracefully", signal.Signals(signum).name)
                        break
                tg.cancel_scope.cancel()

            async def on_close() -> None:
                await self._closed.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(on_signal)
            tg.start_soon(on_close)

    async def aclose(self, *, graceful: bool = True) -> None:
        """Leave. Gracefully (the default): persistence hands its data off while the node still serves,
        then new requests are refused with ``shutting-down`` and open ones get to finish, all within
        ``shutdown_timeout`` seconds; then every task is cancelled. With ``graceful=False`` the node just
        stops, as a crash would (for churn simulation). Calling it twice is harmless."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        log.info("node %s leaving%s", self.node_id[:8], "" if graceful else " (abruptly)",
                 extra={"event": "node_leaving", "node_id": self.node_id})
        if graceful:
            with anyio.CancelScope(shield=True), anyio.move_on_after(self.settings.shutdown_timeout):
                self.emit("butter_node_stopping")
                if self.persistence is not None:
                    try:
                        await self.persistence.hand_off()
                    except Exception:
                        log.exception("persistence hand-off failed")
                await self._route_table.drain()
        self._route_table.refuse()
        self._introductions_send.close()
        if self._tg is not None:
            self._tg.cancel_scope.cancel()
        self._closed.set()

    # -- internals --------------------------------------------------------------------------------------

    async def _run(self, *, task_status: TaskStatus[None]) -> None:
        """Own the services' task group: start them in order, then wait until :meth:`aclose` cancels it.

        The services live in this inner task group, not in the one running the ``async with`` body, so
        closing the node never cancels the caller's own code.
        """
        current_node_id.set(self.node_id)  # this task's context: every task of the node inherits it
        try:
            with unwrap_single_error():
                async with anyio.create_task_group() as tg:
                    self._tg = tg
                    await self._start_services(tg, task_status)
        finally:
            with anyio.CancelScope(shield=True):
                await self.blocks.aclose()

    async def _start_services(self, tg: TaskGroup, task_status: TaskStatus[None]) -> None:
        self._address = await tg.start(self.transport.serve, self._route_table)
        self._started_at = anyio.current_time()
        await tg.start(self.hosts.run)
        if self.persistence is not None:
            await tg.start(self.persistence.run)
        if self.retrieval is not None:
            await tg.start(self.retrieval.run)
        self._route_table.open()
        tg.start_soon(self._offer_introductions)
        for discovery in self.discoveries:
            await tg.start(discovery.run)
        for fn in self._behaviours:
            tg.start_soon(self._run_behaviour, fn)
        log.info("node %s listening on %s (%s)", self.node_id[:8], self._address, self.plugins.describe(),
                 extra={"event": "node_started"})
        self.emit("butter_node_started")
        task_status.started()

    async def _run_behaviour(self, fn: ClientBehaviour) -> None:
        try:
            await fn(self)
        except Exception:
            log.exception("client behaviour %s failed", getattr(fn, "__qualname__", fn))

    async def _await_observer(self, event: str, awaitable: Awaitable[Any]) -> None:
        try:
            await awaitable
        except Exception:
            log.exception("event hook %s failed", event)

    async def _offer_introductions(self) -> None:
        """Offer introduced addresses to host management, up to ``INTRODUCTION_OFFERS`` at once: an address
        that does not answer (a private address of another LAN, a dead peer) costs a connect timeout, and
        must not hold up the offers queued behind it. The addresses queued together (an exchange brings up
        to 17) are checked against one copy of the known-host list, not one copy each."""
        offers = anyio.Semaphore(INTRODUCTION_OFFERS)
        async with self._introductions, anyio.create_task_group() as tg:
            async for address in self._introductions:
                batch = [address]
                with suppress(anyio.WouldBlock, anyio.EndOfStream):
                    while len(batch) < INTRODUCTION_QUEUE:
                        batch.append(self._introductions.receive_nowait())
                if not self.hosts.capacity:
                    continue
                known = {p.address for p in self.hosts.peers()}
                for candidate in dict.fromkeys(batch):
                    if candidate not in known:
                        await offers.acquire()
                        tg.start_soon(self._offer_one, candidate, offers)

    async def _offer_one(self, address: PeerAddress, offers: anyio.Semaphore) -> None:
        try:
            await self.hosts.offer(address)
        except ButterError as exc:
            log.debug("offer of %s failed: %s", address, exc)
        finally:
            offers.release()

    # -- built-in routes --------------------------------------------------------------------------------

    def _serve_ping(self, request: RouteRequest) -> bytes:
        """Body: empty, or a map (its fields are ignored); reply ``{"id": node id, "addr": [host, port]}``."""
        if request.body:
            codec.decode_map(request.body, self.settings.max_frame, what="ping body")
        return codec.encode({"id": self.node_id, "addr": self.address.to_wire()})


@asynccontextmanager
async def open_node(
    settings: ButterSettings | None = None,
    *,
    identity: Identity | None = None,
    plugins: tuple[object, ...] = (),
) -> AsyncIterator[Node]:
    """Start a node with the configured stack and yield it; leave gracefully on exit.

    ``settings`` default to :func:`~butter.settings.load_settings` (``butter.toml``, ``BUTTER_*``).
    ``identity`` defaults to the key in ``settings.data_dir`` (created on first use), or a fresh
    ephemeral one when no data directory is set. ``plugins`` are extra pluggy plugin objects.

    Raises :class:`~butter.errors.ButterConfigError` for a missing driver, invalid options or a port that
    cannot be bound.
    """
    settings = settings if settings is not None else load_settings()
    if identity is None:
        identity = Identity.load_or_create(settings.data_dir) if settings.data_dir else Identity.generate()
    node = Node(settings, identity, PluginStack(settings, plugins))
    with unwrap_single_error():
        async with anyio.create_task_group() as tg:
            await tg.start(node._run)
            try:
                yield node
            finally:
                await node.aclose()


@contextmanager
def unwrap_single_error() -> Iterator[None]:
    """Let a lone error out of a task group as itself, not wrapped in an ``ExceptionGroup``, so that a
    start-up failure (a port that is taken) or an error in the caller's own code reads as it was raised."""
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1 and isinstance(group.exceptions[0], Exception):
            raise group.exceptions[0] from None
        raise


if TYPE_CHECKING:

    def _node_keeps_the_contract(node: Node) -> NodeServices:
        """Never called: mypy checks here that :class:`Node` implements :class:`~butter.slots.NodeServices`."""
        return node
