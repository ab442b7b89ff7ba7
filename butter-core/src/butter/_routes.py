"""The node's route table: named routes, dispatch of incoming requests, sender checks.

:class:`RouteTable` is what the node hands its transport as the :data:`~butter.slots.Dispatcher`. For each
request it calls the handler registered for the route with a :class:`RouteRequest` and turns what the
handler does into a reply: its bytes; a :class:`~butter.errors.RouteError` into an error reply with the
error's code; a :class:`~butter.errors.ProtocolError` (a body that does not decode) into ``bad-request``;
anything else into ``handler-error``, logged with its traceback. Each request a handler answered is then
reported to the node's observers as event ``butter_request_served`` (route, seconds, error code), the one
observation point for per-route metrics. A route nobody registered is answered ``unknown-route``; while the
node starts, every request ``starting`` (retry shortly), and once it leaves, ``shutting-down``. It counts
requests in flight, so a graceful exit can wait for them (:meth:`RouteTable.drain`).

A handler is an ``async`` function, or a plain function when it does no I/O (a heartbeat, a quality
record): a plain handler cannot wait for anything, so a transport may answer it where the request arrives,
without a task of its own (:meth:`RouteTable.answer_now`, the in-process ``memory`` transport's fast path).
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio

from .errors import ProtocolError, RouteError
from .wire import MAX_ROUTE_LENGTH, Caller, ErrorInfo, Reply, Request

if TYPE_CHECKING:
    from .slots import NodeServices

__all__ = [
    "SENDER_MISMATCH",
    "SHUTTING_DOWN",
    "STARTING",
    "Handler",
    "NodeStats",
    "RouteRequest",
    "RouteTable",
    "check_route_name",
]

log = logging.getLogger("butter.node")

SENDER_MISMATCH = "sender-mismatch"  # error code: a body names another sender than the authenticated caller
STARTING = "starting"  # error code: the node is still starting (its stored items not yet resumed); retry shortly
SHUTTING_DOWN = "shutting-down"  # error code: the node is leaving
MISMATCH_LOG_INTERVAL = 10.0  # seconds between two warnings about refused sender mismatches
UNKNOWN_CALLER = Caller()


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """What a route handler receives: the ``node`` serving it, the ``route`` name, the ``body`` bytes, and
    the ``caller``: who sent it, as the transport knows it (a :class:`~butter.wire.Caller`, never ``None``):

    * ``caller.node_id``: the sender's node id (hex), **authenticated** by the transport (the ``tcp``
      transport's TLS 1.3 channel with Ed25519 identities; the ``memory`` transport's in-process sender).
      ``None`` when nothing is authenticated (plaintext TCP, a transport without identities): a node id in
      the body is then only a claim. Use :meth:`check_sender` where a body names its sender.
    * ``caller.address``: the address the request came from, **not authenticated** and not where the peer
      listens (for TCP the peer's IP and an ephemeral port); ``None`` when the transport does not say.

    ``caller`` defaults to ``Caller()``: nothing known.
    """

    node: NodeServices
    route: str
    body: bytes
    caller: Caller = UNKNOWN_CALLER

    def check_sender(self, claimed: str) -> None:
        """Refuse a body that names ``claimed`` (a node id) as its sender when the transport authenticated
        another node: raises :class:`~butter.errors.RouteError` with code ``sender-mismatch``
        (:data:`SENDER_MISMATCH`), which the node answers, counts (``stats.sender_mismatches``) and logs
        (a warning at most every 10 s). Does nothing when the caller is not authenticated
        (``caller.node_id`` is ``None``). Call it before changing any state."""
        authenticated = self.caller.node_id
        if authenticated is not None and claimed != authenticated:
            raise RouteError(
                SENDER_MISMATCH,
                f"the body names sender {claimed[:64]!r}, but this connection is authenticated as node "
                f"{authenticated}",
            )


Handler = Callable[[RouteRequest], Awaitable[bytes]] | Callable[[RouteRequest], bytes]
"""A route handler: ``async (RouteRequest) -> bytes``, or ``(RouteRequest) -> bytes`` for one that does no
I/O (answered at once where the transport can: :meth:`RouteTable.answer_now`)."""


@dataclass(slots=True)
class NodeStats:
    """Counters since start: requests this node sent and answered, and error replies it gave."""

    requests_sent: int = 0
    requests_failed: int = 0
    requests_served: int = 0
    error_replies: int = 0
    introductions_dropped: int = 0
    sender_mismatches: int = 0  # requests refused: the body named another sender than the authenticated caller


def check_route_name(name: str) -> None:
    """Raise ``ValueError`` unless ``name`` is a route name: a string of 1 to 128 characters."""
    if not isinstance(name, str) or not 0 < len(name) <= MAX_ROUTE_LENGTH:
        raise ValueError(f"route name must be 1 to {MAX_ROUTE_LENGTH} characters, got {name!r}")


class RouteTable:
    """The routes of one node and their dispatch (see the module docstring). ``node`` is what handlers
    receive as :attr:`RouteRequest.node`; ``stats`` are the node's counters, updated here."""

    def __init__(self, node: NodeServices, stats: NodeStats) -> None:
        self._node = node
        self._stats = stats
        self._handlers: dict[str, Handler] = {}
        self._plain: set[str] = set()  # routes whose handler is a plain function: answer_now answers them
        self._refusal: ErrorInfo | None = None  # while set, every request is answered with it
        self._in_flight = 0
        self._idle: anyio.Event | None = None  # made when someone waits for the last request to end
        self._mismatch_logged = float("-inf")  # when the last sender-mismatch warning was logged
        self._mismatches_unlogged = 0

    def add(self, name: str, handler: Handler) -> Handler:
        """Serve route ``name`` with ``handler``, replacing any handler it had; returns the
        handler. Raises ``ValueError`` for a name that is empty or longer than 128 characters."""
        check_route_name(name)
        self._handlers[name] = handler
        if inspect.iscoroutinefunction(handler):
            self._plain.discard(name)
        else:
            self._plain.add(name)
        return handler

    @property
    def names(self) -> list[str]:
        """The registered route names, sorted."""
        return sorted(self._handlers)

    def hold(self) -> None:
        """Answer every request with ``starting`` until :meth:`open`: the node is starting."""
        self._refusal = ErrorInfo(STARTING, "node is starting; try again shortly")

    def open(self) -> None:
        """End the ``starting`` state: serve requests (no effect once the table refuses them for good)."""
        if self._refusal is not None and self._refusal.code == STARTING:
            self._refusal = None

    def refuse(self) -> None:
        """Answer every request from now on with ``shutting-down``."""
        self._refusal = ErrorInfo(SHUTTING_DOWN, "node is leaving")

    async def drain(self) -> None:
        """Refuse new requests (:meth:`refuse`) and return once no request is in flight."""
        self.refuse()
        if self._in_flight:
            if self._idle is None:
                self._idle = anyio.Event()
            await self._idle.wait()

    async def dispatch(self, request: Request) -> Reply:
        """Answer ``request`` (see the module docstring). Never raises."""
        early = self.answer_now(request)
        if early is not None:
            return early
        self._in_flight += 1
        started = time.perf_counter()
        try:
            try:
                body = self._handlers[request.route](self._route_request(request))
                if inspect.isawaitable(body):  # (a plain function may return a coroutine: see answer_now)
                    body = await body
                reply = self._reply(request, body)
            except Exception as exc:
                reply = self._error_reply(request, exc)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0 and self._idle is not None:
                self._idle.set()
                self._idle = None
        self._served(request, reply, started)
        return reply

    __call__ = dispatch  # a RouteTable is the node's Dispatcher (and an ImmediateDispatcher: answer_now)

    def answer_now(self, request: Request) -> Reply | None:
        """Answer ``request`` here and now when that needs no waiting: a refusal, an unknown route, or a route
        whose handler is a plain function (see the module docstring); ``None`` for a route whose handler is
        ``async`` (call :meth:`dispatch`). What a transport may call before spawning a task for the request;
        the reply and its report to observers are :meth:`dispatch`'s. Never raises."""
        early = self._refused(request)
        if early is not None or request.route not in self._plain:
            return early
        started = time.perf_counter()
        try:
            body = self._handlers[request.route](self._route_request(request))
            if inspect.iscoroutine(body):  # a plain function returning a coroutine: dispatch() awaits it
                body.close()  # never started: nothing of it ran
                self._plain.discard(request.route)
                return None
            reply = self._reply(request, body)
        except Exception as exc:
            reply = self._error_reply(request, exc)
        self._served(request, reply, started)
        return reply

    def _route_request(self, request: Request) -> RouteRequest:
        return RouteRequest(self._node, request.route, request.body, request.caller or UNKNOWN_CALLER)

    def _refused(self, request: Request) -> Reply | None:
        """The reply to a request answered without its handler: the node is starting or leaving, or nobody
        serves its route; ``None`` when the handler is to answer."""
        if self._refusal is not None:
            return Reply(request.id, error=self._refusal)
        if request.route not in self._handlers:
            self._stats.error_replies += 1
            return Reply(request.id, error=ErrorInfo("unknown-route", f"no route {request.route!r}"))
        return None

    def _reply(self, request: Request, body: object) -> Reply:
        if not isinstance(body, bytes | bytearray | memoryview):
            raise TypeError(f"handler returned {type(body).__name__}, not bytes")
        self._stats.requests_served += 1
        return Reply(request.id, bytes(body))

    def _error_reply(self, request: Request, exc: Exception) -> Reply:
        """The error reply for what a handler raised (see the module docstring)."""
        self._stats.error_replies += 1
        if isinstance(exc, RouteError):
            if exc.code == SENDER_MISMATCH:
                self._sender_mismatch(request.route, request.caller or UNKNOWN_CALLER, exc)
            return Reply(request.id, error=ErrorInfo(exc.code, exc.message))
        if isinstance(exc, ProtocolError):
            return Reply(request.id, error=ErrorInfo("bad-request", str(exc)))
        log.error("handler for route %r raised", request.route, exc_info=exc)
        return Reply(request.id, error=ErrorInfo("handler-error", f"{type(exc).__name__}: {exc}"))

    def _served(self, request: Request, reply: Reply, started: float) -> None:
        self._node.emit(
            "butter_request_served", route=request.route, seconds=time.perf_counter() - started,
            error_code=reply.error.code if reply.error is not None else None,
        )

    def _sender_mismatch(self, route: str, caller: Caller, exc: RouteError) -> None:
        """Count a refused sender mismatch; warn at most every ``MISMATCH_LOG_INTERVAL`` seconds."""
        self._stats.sender_mismatches += 1
        now = anyio.current_time()
        if now - self._mismatch_logged < MISMATCH_LOG_INTERVAL:
            self._mismatches_unlogged += 1
            return
        log.warning(
            "refused route %r from %s: %s (%d more refused since the last warning)",
            route, caller.address or "?", exc.message, self._mismatches_unlogged,
        )
        self._mismatch_logged, self._mismatches_unlogged = now, 0
