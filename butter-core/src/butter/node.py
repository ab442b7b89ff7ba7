"""The Butter node: a peer that serves named routes and runs client behaviours.

A node is an async context manager owning one anyio task group::

    async with butter.open_node(settings) as node:
        @node.route("reverse")
        async def reverse(request: RouteRequest) -> bytes:
            return request.body[::-1]

        print(await node.request(peer_address, "reverse", b"olleh"))

Start-up (structured): load the configured drivers, register the built-in routes
(``ping``, ``host-quality``, ``known-hosts``), start the transport (bind errors reach the caller), then host
management, persistence, retrieval and discovery, then the client behaviours.

Graceful exit (the report's design rather than the original code, which only closed the
listener): new requests are refused with ``shutting-down``, persistence hands its data off, open requests
get up to ``shutdown_timeout`` seconds to finish, then every task is cancelled.
"""

from __future__ import annotations

import inspect
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import pluggy
from anyio.abc import TaskGroup, TaskStatus

from ._identity import Identity
from ._plugins import PluginStack
from .blocks import block_id_of, chunk, is_block_id, load_manifest, verify
from .errors import (
    BlockCorrupted,
    ButterConfigError,
    ButterError,
    IncompleteItem,
    ProtocolError,
    RouteError,
    StoreFull,
)
from .peers import HostQuality, PeerAddress, PeerInfo
from .settings import ButterSettings, load_settings
from .slots import Discovery, EventName, HostManager, Persistence, Retrieval, Transport
from .store import BlockStore, open_store
from .wire import MAX_ROUTE_LENGTH, ErrorInfo, Reply, Request, decode_payload, encode_payload

__all__ = ["SENDER_MISMATCH", "ClientBehaviour", "Handler", "Node", "NodeStats", "RouteRequest", "open_node"]

log = logging.getLogger("butter.node")

EXCHANGE_SAMPLE = 16  # known hosts sent per known-hosts exchange
KNOWN_BY_DEFAULT_TTL = 30.0  # seconds a holder's poll counts toward ``known_by`` when it names no ttl
KNOWN_BY_MAX_TTL = 3600.0
SLOTS = ("transport", "discovery", "host_manager", "persistence", "retrieval")
INTRODUCTION_QUEUE = 256  # addresses waiting to be offered to host management; more are dropped
INTRODUCTION_OFFERS = 8  # introduced addresses offered to host management at once
SENDER_MISMATCH = "sender-mismatch"  # error code: a body names another sender than the authenticated caller
MISMATCH_LOG_INTERVAL = 10.0  # seconds between two warnings about refused sender mismatches


def storage_budget(settings: ButterSettings) -> int:
    """Bytes of block storage: the memory budget less the known-host share (0.01 %)."""
    return int(settings.memory_budget) - int(0.0001 * int(settings.memory_budget))


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """What a route handler receives: the ``node`` serving it, the ``route`` name and the ``body`` bytes,
    and who sent it, as the transport knows it (:class:`~butter.wire.Caller`):

    * ``caller_id``: the sender's node id (hex), **authenticated** by the transport (the ``tcp`` transport's
      TLS 1.3 channel with Ed25519 identities; the ``memory`` transport's in-process sender). ``None`` when
      nothing is authenticated (plaintext TCP, a transport without identities): a node id in the body is
      then only a claim, as it always was. Use :meth:`check_sender` where a body names its sender.
    * ``remote``: the address the request came from, **not authenticated** and not where the peer listens
      (for TCP the peer's IP and an ephemeral port); ``None`` when the transport does not say.
    """

    node: Node
    route: str
    body: bytes
    caller_id: str | None = None
    remote: PeerAddress | None = None

    def check_sender(self, claimed: str) -> None:
        """Refuse a body that names ``claimed`` (a node id) as its sender when the transport authenticated
        another node: raises :class:`~butter.errors.RouteError` with code ``sender-mismatch``
        (:data:`SENDER_MISMATCH`), which the node answers, counts (``stats.sender_mismatches``) and logs
        (a warning at most every 10 s). Does nothing when the caller is not authenticated (``caller_id`` is
        ``None``). Call it before changing any state."""
        if self.caller_id is not None and claimed != self.caller_id:
            raise RouteError(
                SENDER_MISMATCH,
                f"the body names sender {claimed[:64]!r}, but this connection is authenticated as node "
                f"{self.caller_id}",
            )


Handler = Callable[[RouteRequest], Awaitable[bytes]]
ClientBehaviour = Callable[["Node"], Awaitable[None]]


@dataclass(slots=True)
class NodeStats:
    """Counters since start: requests this node sent and answered, and error replies it gave."""

    requests_sent: int = 0
    requests_failed: int = 0
    requests_served: int = 0
    error_replies: int = 0
    protocol_errors: int = 0
    introductions_dropped: int = 0
    sender_mismatches: int = 0  # requests refused: the body named another sender than the authenticated caller


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
        self._routes: dict[str, Handler] = {}
        self._behaviours: list[ClientBehaviour] = []
        self._tg: TaskGroup | None = None
        self._address: PeerAddress | None = None
        self._started_at = 0.0
        self._closing = False
        self._refusing = False
        self._closed = anyio.Event()
        self._in_flight = 0
        self._idle = anyio.Event()
        self._pollers: dict[str, float] = {}  # node id of a peer holding this node -> when that lapses
        self._pollers_pruned = float("-inf")
        self._mismatch_logged = float("-inf")  # when the last sender-mismatch warning was logged
        self._mismatches_unlogged = 0
        self._introductions_send, self._introductions = anyio.create_memory_object_stream[PeerAddress](
            INTRODUCTION_QUEUE
        )
        self.blocks: BlockStore = open_store(
            settings.store, data_dir=settings.data_dir, default_capacity=storage_budget(settings)
        )
        hook = plugins.hook
        self.transport: Transport = self._required(hook.butter_transport(node=self), "transport")
        self.hosts: HostManager = self._required(hook.butter_host_manager(node=self), "host_manager")
        self.persistence: Persistence | None = hook.butter_persistence(node=self)
        self.retrieval: Retrieval | None = hook.butter_retrieval(node=self)
        self.discoveries: list[Discovery] = list(hook.butter_discovery(node=self))
        self.route("ping", self._serve_ping)
        self.route("host-quality", self._serve_host_quality)
        self.route("known-hosts", self._serve_known_hosts)
        self.route("fetch-block", self._serve_fetch_block)
        self.route("store", self._serve_store)

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
        """Register ``handler`` (``async (RouteRequest) -> bytes``) for route ``name``; usable as a decorator.

        Registering a name again replaces the handler. Raises ``ValueError`` for a name that is
        empty or longer than 128 characters.
        """
        if not isinstance(name, str) or not 0 < len(name) <= MAX_ROUTE_LENGTH:
            raise ValueError(f"route name must be 1 to {MAX_ROUTE_LENGTH} characters, got {name!r}")

        def register(fn: Handler) -> Handler:
            self._routes[name] = fn
            return fn

        return register if handler is None else register(handler)

    @property
    def routes(self) -> list[str]:
        return sorted(self._routes)

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

    async def store(self, data: bytes, *, media_type: str = "application/octet-stream") -> str:
        """Store ``data`` (bytes) on the overlay; returns its content id (hex).

        The data is cut into blocks (``settings.store.block_size``), put in this node's block
        store, then handed to the persistence slot, which keeps it alive (PCG recruits replicas at once).
        Raises :class:`~butter.errors.ButterConfigError` when no persistence driver is configured and
        :class:`~butter.errors.StoreFull` when this node has no room for it (nothing is stored then).
        """
        persistence = self._persistence()
        item = chunk(bytes(data), block_size=int(self.settings.store.block_size), media_type=media_type)
        new = {a: b for a, b in item.all_blocks.items() if not await self.blocks.has(a)}
        needed = sum(len(b) for b in new.values())
        if needed > self.blocks.free:
            raise StoreFull(needed=needed, free=self.blocks.free)
        for address, block in new.items():
            await self.blocks.put(address, block)
        await persistence.keep(item.content_id)
        self.emit("butter_item_stored", content_id=item.content_id)
        return item.content_id

    def _persistence(self) -> Persistence:
        if self.persistence is None:
            raise ButterConfigError("no persistence driver is configured (set persistence.driver, e.g. 'pcg')")
        return self.persistence

    async def retrieve(self, content_id: str) -> bytes:
        """Find and return the item ``content_id`` (hex) through the retrieval slot, verified block by block.

        Raises :class:`~butter.errors.ButterConfigError` when no retrieval driver is configured and
        :class:`~butter.errors.ItemNotFound` when the search fails.
        """
        return await self._retrieval().retrieve(content_id)

    def retrieve_stream(self, content_id: str) -> AsyncIterator[bytes]:
        """Like :meth:`retrieve`, but yield the verified blocks in order, for large items."""
        return self._retrieval().stream(content_id)

    def _retrieval(self) -> Retrieval:
        if self.retrieval is None:
            raise ButterConfigError("no retrieval driver is configured (set retrieval.driver, e.g. 'bfs')")
        return self.retrieval

    def quality(self) -> HostQuality:
        """This node's host-quality record."""
        now = anyio.current_time()
        if now - self._pollers_pruned >= 1.0:
            self._pollers = {k: expiry for k, expiry in self._pollers.items() if expiry >= now}
            self._pollers_pruned = now
        return HostQuality(
            uptime=self.uptime,
            available_storage=self.available_storage(),
            known_hosts=len(self.hosts.peers()),
            known_by=len(self._pollers),
            ambassador=self.ambassador,
        )

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
        try:
            results = getattr(self.plugins.hook, event)(node=self, **kwargs)
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
        candidates: list[object] = [self.persistence, self.retrieval, self.transport, self.hosts, *self.discoveries]
        for candidate in candidates:
            if candidate is not None and isinstance(candidate, cls):
                return candidate
        return None

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
        log.info("node %s leaving%s", self.node_id[:8], "" if graceful else " (abruptly)")
        if graceful:
            with anyio.CancelScope(shield=True), anyio.move_on_after(self.settings.shutdown_timeout):
                self.emit("butter_node_stopping")
                if self.persistence is not None:
                    try:
                        await self.persistence.hand_off()
                    except Exception:
                        log.exception("persistence hand-off failed")
                self._refusing = True
                if self._in_flight:
                    await self._idle.wait()
        self._refusing = True
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
        try:
            with unwrap_single_error():
                async with anyio.create_task_group() as tg:
                    self._tg = tg
                    await self._start_services(tg, task_status)
        finally:
            with anyio.CancelScope(shield=True):
                await self.blocks.aclose()

    async def _start_services(self, tg: TaskGroup, task_status: TaskStatus[None]) -> None:
        self._address = await tg.start(self.transport.serve, self._dispatch)
        self._started_at = anyio.current_time()
        await tg.start(self.hosts.run)
        if self.persistence is not None:
            await tg.start(self.persistence.run)
        if self.retrieval is not None:
            await tg.start(self.retrieval.run)
        tg.start_soon(self._offer_introductions)
        for discovery in self.discoveries:
            await tg.start(discovery.run)
        for fn in self._behaviours:
            tg.start_soon(self._run_behaviour, fn)
        log.info(
            "node %s listening on %s (transport %s, discovery %s, host manager %s, persistence %s, "
            "retrieval %s)",
            self.node_id[:8],
            self._address,
            *(",".join(self.plugins.selected(slot)) or "-" for slot in SLOTS),
        )
        self.emit("butter_node_started")
        task_status.started()

    async def _dispatch(self, request: Request) -> Reply:
        if self._refusing:
            return Reply(request.id, error=ErrorInfo("shutting-down", "node is leaving"))
        handler = self._routes.get(request.route)
        if handler is None:
            self.stats.error_replies += 1
            return Reply(request.id, error=ErrorInfo("unknown-route", f"no route {request.route!r}"))
        self._in_flight += 1
        self._idle = anyio.Event() if self._in_flight == 1 else self._idle
        try:
            caller = request.caller
            route_request = (
                RouteRequest(self, request.route, request.body)
                if caller is None
                else RouteRequest(self, request.route, request.body, caller.node_id, caller.address)
            )
            body = await handler(route_request)
            if not isinstance(body, bytes | bytearray | memoryview):
                raise TypeError(f"handler returned {type(body).__name__}, not bytes")
            self.stats.requests_served += 1
            return Reply(request.id, bytes(body))
        except RouteError as exc:
            self.stats.error_replies += 1
            if exc.code == SENDER_MISMATCH:
                self._sender_mismatch(request, exc)
            return Reply(request.id, error=ErrorInfo(exc.code, exc.message))
        except ProtocolError as exc:
            self.stats.error_replies += 1
            return Reply(request.id, error=ErrorInfo("bad-request", str(exc)))
        except Exception as exc:
            self.stats.error_replies += 1
            log.exception("handler for route %r raised", request.route)
            return Reply(request.id, error=ErrorInfo("handler-error", f"{type(exc).__name__}: {exc}"))
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    def _sender_mismatch(self, request: Request, exc: RouteError) -> None:
        """Count a refused sender mismatch; warn at most every ``MISMATCH_LOG_INTERVAL`` seconds."""
        self.stats.sender_mismatches += 1
        now = anyio.current_time()
        if now - self._mismatch_logged < MISMATCH_LOG_INTERVAL:
            self._mismatches_unlogged += 1
            return
        address = request.caller.address if request.caller is not None else None
        log.warning(
            "refused route %r from %s: %s (%d more refused since the last warning)",
            request.route, address or "?", exc.message, self._mismatches_unlogged,
        )
        self._mismatch_logged, self._mismatches_unlogged = now, 0

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
        must not hold up the offers queued behind it."""
        offers = anyio.Semaphore(INTRODUCTION_OFFERS)
        async with self._introductions, anyio.create_task_group() as tg:
            async for address in self._introductions:
                if self.hosts.capacity and address not in {p.address for p in self.hosts.peers()}:
                    await offers.acquire()
                    tg.start_soon(self._offer_one, address, offers)

    async def _offer_one(self, address: PeerAddress, offers: anyio.Semaphore) -> None:
        try:
            await self.hosts.offer(address)
        except ButterError as exc:
            log.debug("offer of %s failed: %s", address, exc)
        finally:
            offers.release()

    # -- built-in routes --------------------------------------------------------------------------------

    async def _serve_ping(self, request: RouteRequest) -> bytes:
        return encode_payload({"id": self.node_id, "addr": self.address.to_wire()})

    async def _serve_host_quality(self, request: RouteRequest) -> bytes:
        """Body: optional ``{"id": caller node id, "holds": bool, "ttl": seconds}``; reply: this node's
        :class:`PeerInfo`.

        A caller that says it ``holds`` this node in its known hosts counts toward ``known_by`` for ``ttl``
        seconds (default 30, at most 3,600): it promises to poll again before then. One that says it does not
        (``holds: false``: a probe, or a release after eviction) stops counting at once. An authenticated
        caller naming another ``id`` is refused (``sender-mismatch``), so it can neither count as others nor
        release their holds.
        """
        if request.body:
            caller = decode_payload(request.body, self.settings.max_frame)
            if isinstance(caller, dict) and isinstance(caller.get("id"), str):
                request.check_sender(caller["id"])
            if isinstance(caller, dict) and caller.get("holds") is False and isinstance(caller.get("id"), str):
                self._pollers.pop(caller["id"], None)
            if isinstance(caller, dict) and caller.get("holds") is True:
                caller_id, ttl = caller.get("id"), caller.get("ttl", KNOWN_BY_DEFAULT_TTL)
                if not isinstance(ttl, int | float) or isinstance(ttl, bool) or not ttl >= 0:
                    ttl = KNOWN_BY_DEFAULT_TTL
                if isinstance(caller_id, str) and 0 < len(caller_id) <= 128 and caller_id != self.node_id:
                    self._pollers[caller_id] = anyio.current_time() + min(float(ttl), KNOWN_BY_MAX_TTL)
        return encode_payload(self.info().to_wire())

    async def _serve_fetch_block(self, request: RouteRequest) -> bytes:
        """Body ``{"block_id": hex}``; reply: the block's bytes, verified on read, or error ``not-found``."""
        body = decode_payload(request.body, self.settings.max_frame)
        address = body.get("block_id") if isinstance(body, dict) else None
        if not isinstance(address, str) or not is_block_id(address):
            raise ProtocolError("fetch-block body must be {block_id: 64 lowercase hex characters}")
        data = await self.blocks.get(address)
        if data is None:
            raise RouteError("not-found", f"no block {address}")
        self.emit("butter_block_served", block_id=address)
        return data

    async def _serve_store(self, request: RouteRequest) -> bytes:
        """Body ``{"blocks": [bytes], "manifest": bytes | None}``: upload blocks (each verified); with the
        manifest the item is complete and persistence keeps it; reply ``{"cid": hex}`` then, else empty.
        Errors: ``store-full``, ``incomplete``, ``bad-request``."""
        body = decode_payload(request.body, self.settings.max_frame)
        blocks = body.get("blocks", []) if isinstance(body, dict) else None
        manifest = body.get("manifest") if isinstance(body, dict) else None
        if not isinstance(blocks, list) or not all(isinstance(b, bytes) for b in blocks):
            raise ProtocolError("store body must be {blocks: [bytes], manifest: bytes | nil}")
        if manifest is not None and not isinstance(manifest, bytes):
            raise ProtocolError("manifest must be bytes")
        persistence = self._persistence()
        try:
            for block in blocks:
                await self.blocks.put(block_id_of(block), block)
            if manifest is None:
                return b""
            content_id = block_id_of(manifest)
            load_manifest(content_id, manifest)
            await self.blocks.put(content_id, manifest)
            await persistence.keep(content_id)
        except StoreFull as exc:
            raise RouteError("store-full", str(exc)) from None
        except IncompleteItem as exc:
            raise RouteError("incomplete", str(exc)) from None
        self.emit("butter_item_stored", content_id=content_id)
        return encode_payload({"cid": content_id})

    async def fetch_block(self, peer: PeerLike, block_id: str, *, timeout: float | None = None) -> bytes:
        """Fetch one block from ``peer`` and verify it against ``block_id``.

        Raises :class:`~butter.errors.BlockCorrupted` when the bytes do not match (they are discarded),
        :class:`~butter.errors.RemoteError` with code ``not-found``, or a transport error.
        """
        data = await self.request(peer, "fetch-block", encode_payload({"block_id": block_id}), timeout=timeout)
        if not verify(block_id, data):
            raise BlockCorrupted(block_id, f"block from {as_address(peer)} does not match its id {block_id[:16]}")
        return data

    async def _serve_known_hosts(self, request: RouteRequest) -> bytes:
        """Body: optional ``{"from": PeerInfo, "sample": [PeerInfo]}``; reply ``{"sample": [PeerInfo]}``.

        The caller and its sample are offered to host management in the background (made a
        two-way exchange). An authenticated caller whose ``from`` names another node is refused
        (``sender-mismatch``).
        """
        if request.body:
            offer = decode_payload(request.body, self.settings.max_frame)
            if not isinstance(offer, dict):
                raise ProtocolError("known-hosts body must be a map")
            sender = offer["from"].get("id") if isinstance(offer.get("from"), dict) else None
            if isinstance(sender, str):
                request.check_sender(sender)
            entries = ([offer["from"]] if "from" in offer else []) + list(offer.get("sample") or [])[:EXCHANGE_SAMPLE]
            addresses = []
            for entry in entries:
                try:
                    addresses.append(PeerInfo.from_wire(entry).address)
                except ValueError:
                    continue
            self.introduce(addresses)
        sample = self.hosts.sample(EXCHANGE_SAMPLE)
        return encode_payload({"sample": [p.to_wire() for p in sample]})


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
