"""One TCP connection carrying Butter frames (:mod:`butter.wire`), in either role.

Rules both roles keep:

* Reading is done in chunks of ``read_chunk`` bytes, and every event the :class:`~butter.wire.FrameDecoder`
  can produce from a chunk is handled before the next read, so a connection holds at most one frame
  (``max_frame`` bytes) plus one chunk.
* Frames are written whole, by one writer task per connection, from a bounded outbox (this serialises
  writes like a per-connection write lock would). Callers queue a frame and go on; they are never the ones
  inside ``send``, so a caller that is cancelled (a request timing out) cannot leave half a frame on the
  wire. Frames queued during one event-loop tick leave in one ``send``, which is what makes many small
  requests in flight cheap. A failed ``send`` closes the connection.
* Memory per connection is bounded: one frame plus one read chunk on the way in; on the way out, the batch
  being sent plus at most ``OUTBOX_HIGH_WATER`` and one frame queued (writers wait beyond that); plus the
  requests being handled.
* The connection ends by cancelling its :attr:`Connection.scope`; the socket is then closed with a shielded
  forceful close, so cancellation never leaks a socket.

:class:`InboundConnection` answers a peer's requests, each in its own task so a slow handler does not hold
up the others. :class:`OutgoingConnection` carries this node's requests to one peer, multiplexed by request
id: one reader task matches replies to waiting requests, and when the connection dies every waiting request
fails at once with :class:`~butter.errors.PeerUnreachable`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import anyio
from anyio.abc import ByteStream

from butter.errors import NETWORK_ERRORS, FrameTooLarge, PeerUnreachable, describe_network_error
from butter.peers import PeerAddress
from butter.slots import Dispatcher
from butter.wire import Caller, ErrorInfo, Event, FrameDecoder, FrameRejected, Reply, Request, encode

from ._limits import RateLimitedLog
from ._stats import TcpStats

__all__ = ["Connection", "InboundConnection", "OutgoingConnection"]

log = logging.getLogger("butter.transport.tcp")
limits_log = RateLimitedLog(log)  # limits hit on any connection: at most one line per kind per 10 s

CONNECTION_ERROR_ID = 0  # the id of an error reply that concerns the connection, not one request
_CONNECTION_LOST: tuple[type[Exception], ...] = (PeerUnreachable, *NETWORK_ERRORS)
OUTBOX_HIGH_WATER = 1024 * 1024  # bytes queued for a socket before writers wait
COALESCE_LIMIT = 256 * 1024  # bytes of queued frames joined into one send


class Connection:
    """A framed byte stream: the outbox and its writer task, the decoder, and how the connection ends.

    ``peer`` is a printable name for logs; ``max_frame`` (bytes) bounds one frame both ways; ``read_chunk``
    (bytes) is the most read from the socket at once.
    """

    def __init__(
        self,
        stream: ByteStream,
        *,
        peer: str,
        max_frame: int,
        read_chunk: int,
        stats: TcpStats,
        node_id: str | None = None,
    ) -> None:
        self.stream = stream
        self.peer = peer
        self.node_id = node_id  # the node id the secure channel authenticated; None in plaintext
        self.max_frame = max_frame
        self.read_chunk = read_chunk
        self.stats = stats
        self.decoder = FrameDecoder(max_frame)
        self.scope = anyio.CancelScope()
        self.closed = False
        self.reason = ""
        self.last_active = anyio.current_time()  # seconds, on the event loop's clock
        self.released = False  # set by the transport once this connection no longer counts toward its cap
        self._outbox: list[bytes] = []  # whole frames waiting for the writer task
        self._outbox_bytes = 0
        self._sending = False  # the writer task is inside send()
        # Events are made only when someone waits on them (anyio.Event() is not free on the hot path).
        self._wake = anyio.Event()  # set when the outbox gets a frame
        self._space: anyio.Event | None = None  # set when the writer takes the outbox (for writers held back)
        self._drained: anyio.Event | None = None  # set when the outbox is empty and nothing is being sent

    def close(self, reason: str) -> None:
        """End the connection: stop its tasks, then the socket is closed. Safe to call repeatedly."""
        if not self.closed:
            self.closed = True
            self.reason = reason
            self._notify_space()
            self._notify_drained()
        self.scope.cancel()

    async def write(self, frame: bytes) -> None:
        """Queue one whole frame for the writer task and return without waiting for the socket.

        Waits only while more than :data:`OUTBOX_HIGH_WATER` bytes are queued (the peer reads slower than
        we write). Raises :class:`PeerUnreachable` when the connection is closed; a frame queued on a
        connection that then fails is lost, and the reader fails the requests waiting on it.
        """
        while self._outbox_bytes >= OUTBOX_HIGH_WATER and not self.closed:
            if self._space is None:
                self._space = anyio.Event()
            await self._space.wait()
        if self.closed:
            raise PeerUnreachable(f"connection to {self.peer} is closed ({self.reason})")
        self._outbox.append(frame)
        self._outbox_bytes += len(frame)
        self._wake.set()

    async def flush(self) -> None:
        """Wait until every queued frame has been handed to the socket (or the connection closed)."""
        while (self._outbox or self._sending) and not self.closed:
            if self._drained is None:
                self._drained = anyio.Event()
            await self._drained.wait()

    def _notify_space(self) -> None:
        if self._space is not None:
            self._space.set()
            self._space = None

    def _notify_drained(self) -> None:
        if self._drained is not None:
            self._drained.set()
            self._drained = None

    async def _write_loop(self) -> None:
        """The only task that sends on this socket, so frames never interleave and a caller that is
        cancelled (a request timing out) never leaves half a frame behind. Frames queued during one
        event-loop tick leave in one ``send``."""
        try:
            while True:
                if not self._outbox:
                    self._notify_drained()
                    await self._wake.wait()
                    self._wake = anyio.Event()
                    continue
                frames = self._outbox
                self._outbox, self._outbox_bytes = [], 0
                self._notify_space()
                self._sending = True
                # Consecutive frames are joined up to COALESCE_LIMIT bytes; a larger frame goes alone, as is.
                batch: list[bytes] = []
                size = 0
                for frame in frames:
                    if batch and size + len(frame) > COALESCE_LIMIT:
                        await self.stream.send(batch[0] if len(batch) == 1 else b"".join(batch))
                        batch, size = [], 0
                    batch.append(frame)
                    size += len(frame)
                await self.stream.send(batch[0] if len(batch) == 1 else b"".join(batch))
                self._sending = False
        except NETWORK_ERRORS as exc:
            self.close(describe_network_error(exc))

    async def aclose(self) -> None:
        """Close the socket at once (shielded, so it also runs while the caller is being cancelled)."""
        self.closed = True
        with anyio.CancelScope(shield=True):
            await anyio.aclose_forcefully(self.stream)


class InboundConnection(Connection):
    """A connection a peer opened to us: requests in, replies out.

    Each request runs ``dispatch`` in its own task; at most ``max_concurrent`` at once, beyond which a
    request is answered at once with error code ``overloaded``. Once a frame has begun, the rest of it must
    arrive within ``frame_timeout`` seconds, or the connection is cut off as a slow peer (``on_slow`` is
    called, then the connection closes): a peer that sends a header and then trickles bytes holds a
    frame buffer only that long. A reply larger than ``max_frame`` is replaced
    by error ``frame-too-large``; a frame the decoder rejects gets an error reply carrying the rejection's
    code (with the request id when it could be read, else id 0) and the connection goes on.

    Every request reaches ``dispatch`` with :attr:`caller` (a :class:`~butter.wire.Caller`): ``node_id``,
    the node id the secure channel authenticated (``None`` in plaintext), and ``remote``, the socket's
    remote address (not authenticated).
    """

    def __init__(
        self,
        stream: ByteStream,
        *,
        peer: str,
        max_frame: int,
        read_chunk: int,
        stats: TcpStats,
        dispatch: Dispatcher,
        max_concurrent: int,
        frame_timeout: float = math.inf,
        on_slow: Callable[[InboundConnection], None] | None = None,
        node_id: str | None = None,
        remote: PeerAddress | None = None,
    ) -> None:
        super().__init__(
            stream, peer=peer, max_frame=max_frame, read_chunk=read_chunk, stats=stats, node_id=node_id
        )
        self.caller = Caller(node_id, remote)  # one per connection, shared by its requests
        self.dispatch = dispatch
        self.max_concurrent = max_concurrent
        self.frame_timeout = frame_timeout
        self.on_slow = on_slow
        self.active = 0  # requests being handled now

    async def run(self) -> None:
        """Serve the peer until it disconnects or :meth:`close` is called; never raises an ``Exception``.

        When the peer closes its side cleanly, requests already received are still answered.
        """
        try:
            with self.scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._write_loop)
                    async with anyio.create_task_group() as answers:
                        # The deadline of the frame in progress: infinite between frames (idleness is the
                        # sweeper's business), set when a frame begins, so only partial frames pay for it.
                        with anyio.CancelScope() as reading:
                            try:
                                while True:
                                    data = await self.stream.receive(self.read_chunk)
                                    now = self.last_active = anyio.current_time()
                                    self.decoder.feed(data)
                                    completed = False
                                    while (event := self.decoder.next_event()) is not None:
                                        completed = True
                                        await self._on_event(event, answers)
                                    if self.decoder.in_frame:
                                        if completed or reading.deadline == math.inf:
                                            reading.deadline = now + self.frame_timeout
                                    elif reading.deadline != math.inf:
                                        reading.deadline = math.inf
                            except anyio.EndOfStream:
                                pass  # the peer is done sending; answer what it asked, then stop
                            except _CONNECTION_LOST as exc:
                                self.close(describe_network_error(exc))
                        if reading.cancelled_caught:
                            if self.on_slow is not None:
                                self.on_slow(self)
                            self.close(f"slow peer: a frame took longer than {self.frame_timeout} s")
                    await self.flush()
                    tg.cancel_scope.cancel()
        except Exception:  # a bug of ours must not take the server down with it
            log.exception("connection from %s failed", self.peer)
        finally:
            await self.aclose()

    async def _on_event(self, event: Event, tg: anyio.abc.TaskGroup) -> None:
        if isinstance(event, Request):
            if self.active >= self.max_concurrent:
                self.stats.requests_overloaded += 1
                limits_log.warning(
                    "overloaded", "answered a request from %s 'overloaded': %d already being handled on its "
                    "connection (max_concurrent_requests)", self.peer, self.active,
                )
                message = f"{self.max_concurrent} requests already in progress on this connection"
                await self.write(self._error_frame(event.id, "overloaded", message))
                return
            self.active += 1
            tg.start_soon(self._answer, Request(event.id, event.route, event.body, self.caller))
        elif isinstance(event, FrameRejected):
            self.stats.frames_rejected += 1
            if isinstance(event.error, FrameTooLarge):
                limits_log.warning("max_frame", "refused a frame from %s: %s (max_frame)", self.peer, event.error)
            else:
                log.debug("rejected a frame from %s: %s", self.peer, event.error)
            request_id = CONNECTION_ERROR_ID if event.request_id is None else event.request_id
            await self.write(self._error_frame(request_id, event.error.code, str(event.error)))
        else:  # a Reply: nothing was asked on this connection
            self.stats.frames_rejected += 1
            await self.write(
                self._error_frame(event.id, "protocol-error", "unexpected reply on a connection that carries requests")
            )

    async def _answer(self, request: Request) -> None:
        try:
            try:
                reply = await self.dispatch(request)
            except Exception as exc:  # a Dispatcher must not raise; answer anyway if one does
                log.exception("dispatcher raised for route %r", request.route)
                reply = Reply(request.id, error=ErrorInfo("handler-error", f"{type(exc).__name__}: {exc}"))
            frame = self._reply_frame(request, reply)
            await self.write(frame)
            self.stats.requests_served += 1
        except PeerUnreachable:
            pass  # the peer left; write() already closed the connection
        finally:
            self.active -= 1
            self.last_active = anyio.current_time()

    def _reply_frame(self, request: Request, reply: Reply) -> bytes:
        try:
            return encode(reply, self.max_frame)
        except FrameTooLarge as exc:
            return self._error_frame(request.id, exc.code, str(exc))
        except Exception as exc:  # a reply msgpack cannot encode (wrong id or body type): a handler bug
            log.error("reply to route %r cannot be encoded: %s", request.route, exc)
            return self._error_frame(request.id, "handler-error", "the reply could not be encoded")

    def _error_frame(self, request_id: int, code: str, message: str) -> bytes:
        return encode(Reply(request_id, error=ErrorInfo(code, message[:1000])), max(self.max_frame, 4096))


class _Waiter:
    """One request waiting for its reply: set ``reply`` or ``error``, then the event."""

    __slots__ = ("error", "event", "reply")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.reply: Reply | None = None
        self.error = ""


class OutgoingConnection(Connection):
    """A connection we opened to one peer: our requests out, their replies in, multiplexed by id.

    ``on_closed`` is called once, when the reader stops, so the owner can drop the connection from its pool.
    """

    def __init__(
        self,
        stream: ByteStream,
        *,
        peer: str,
        max_frame: int,
        read_chunk: int,
        stats: TcpStats,
        on_closed: Callable[[OutgoingConnection], None],
        node_id: str | None = None,
    ) -> None:
        super().__init__(
            stream, peer=peer, max_frame=max_frame, read_chunk=read_chunk, stats=stats, node_id=node_id
        )
        self.pending: dict[int, _Waiter] = {}
        self._on_closed = on_closed

    async def call(self, request_id: int, frame: bytes) -> Reply:
        """Send ``frame`` (an encoded request with id ``request_id``) and wait for its reply.

        Raises :class:`PeerUnreachable` when the connection fails before the reply arrives. The caller
        bounds the wait (``anyio.fail_after``); a reply that arrives after the caller gave up is dropped.
        """
        waiter = _Waiter()
        self.pending[request_id] = waiter
        try:
            await self.write(frame)
            self.stats.requests_sent += 1
            await waiter.event.wait()
        finally:
            del self.pending[request_id]
            self.last_active = anyio.current_time()
        if waiter.reply is None:
            raise PeerUnreachable(f"connection to {self.peer} lost before the reply: {waiter.error}")
        return waiter.reply

    async def run(self) -> None:
        """Read replies until the connection ends, then fail every waiting request with the reason."""
        try:
            with self.scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._write_loop)
                    try:
                        while True:
                            data = await self.stream.receive(self.read_chunk)
                            self.decoder.feed(data)
                            while (event := self.decoder.next_event()) is not None:
                                self._on_event(event)
                    except NETWORK_ERRORS as exc:
                        self.close(describe_network_error(exc))
        except Exception:
            log.exception("connection to %s failed", self.peer)
            self.close("internal error")
        finally:
            self.close(self.reason or "transport stopped")
            for waiter in self.pending.values():
                waiter.error = self.reason
                waiter.event.set()
            self._on_closed(self)
            await self.aclose()

    def _on_event(self, event: Event) -> None:
        if isinstance(event, Reply):
            waiter = self.pending.get(event.id)
            if waiter is not None:
                waiter.reply = event
                waiter.event.set()
                self.last_active = anyio.current_time()
            elif event.id == CONNECTION_ERROR_ID and event.error is not None:
                log.warning("%s reported a connection error: %s: %s", self.peer, event.error.code, event.error.message)
            # else: the reply to a request whose caller gave up (timeout, cancellation)
        elif isinstance(event, FrameRejected):
            waiter = self.pending.get(event.request_id) if event.request_id is not None else None
            if waiter is not None:
                error = ErrorInfo(event.error.code, f"malformed reply from {self.peer}: {event.error}")
                waiter.reply = Reply(event.request_id or 0, error=error)
                waiter.event.set()
            else:
                # A reply over our max_frame cannot be matched: its request will time out.
                log.warning("discarded a frame from %s: %s", self.peer, event.error)
        else:
            log.warning("%s sent a request on our outgoing connection; ignored", self.peer)
