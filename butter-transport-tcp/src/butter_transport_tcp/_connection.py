"""One TCP connection driving a :mod:`butter.channel` channel: its read loop and its write loop.

The protocol (request ids, the reserved id 0, ``overloaded`` answers, rejected frames) is the channel's;
this module only moves its bytes and runs its requests. Rules both roles keep:

* Reading is done in chunks of ``read_chunk`` bytes, and every event the channel can produce from a chunk
  is handled before the next read, so a connection holds at most one frame (``max_frame`` bytes) plus one
  chunk.
* Frames are written whole, from the channel's queue, by one task at a time: the connection's writer task,
  or on the serving side the task that answered a request when nobody else is sending (it saves a hand-off
  per reply; such a task is only ever cancelled together with its connection). Callers of requests queue a
  frame and go on; they are never the ones inside ``send``, so a caller that is cancelled (a request timing
  out) cannot leave half a frame on the wire. Frames queued during one event-loop tick leave in one
  ``send``, which is what makes many small requests in flight cheap. A failed ``send`` closes the connection.
* Memory per connection is bounded: one frame plus one read chunk on the way in; on the way out, the batch
  being sent plus at most ``OUTBOX_HIGH_WATER`` and one frame queued (writers, and the reader answering
  rejected frames, wait beyond that); plus the requests being handled.
* The connection ends by cancelling its :attr:`Connection.scope`; the socket is then closed with a shielded
  forceful close, so cancellation never leaks a socket.

:class:`InboundConnection` answers a peer's requests, each in its own task so a slow handler does not hold
up the others. :class:`OutgoingConnection` carries this node's requests to one peer: one reader task hands
replies to waiting requests, and when the connection dies every waiting request fails at once with
:class:`~butter.errors.PeerUnreachable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import anyio
from anyio.abc import ByteStream, TaskGroup

from butter.channel import Channel, ChannelError, ClientChannel, ClientEvent, Overloaded, ServerChannel
from butter.errors import NETWORK_ERRORS, FrameTooLarge, PeerUnreachable, describe_network_error
from butter.slots import Dispatcher
from butter.wire import Caller, ErrorInfo, FrameRejected, Reply, Request

from ._limits import RateLimitedLog
from ._native import DirectStream, NativeStream, native
from ._stats import TcpStats

if TYPE_CHECKING:
    from ._trio import Timers

__all__ = ["Connection", "InboundConnection", "OutgoingConnection"]

log = logging.getLogger("butter.transport.tcp")
limits_log = RateLimitedLog(log)  # limits hit on any connection: at most one line per kind per 10 s

_CONNECTION_LOST: tuple[type[Exception], ...] = (PeerUnreachable, *NETWORK_ERRORS)
OUTBOX_HIGH_WATER = 1024 * 1024  # bytes queued for a socket before writers wait
COALESCE_LIMIT = 256 * 1024  # bytes of queued frames joined into one send
IDLE_ANSWERERS = 2  # answering tasks an incoming connection keeps waiting for its next request

C = TypeVar("C", bound=Channel)


class _Event(Protocol):
    """A one-shot event: ``anyio.Event``, ``trio.Event``, :class:`_Flag` (asyncio) or ``_trio.Flag``."""

    def set(self) -> Any: ...

    def is_set(self) -> bool: ...

    def wait(self) -> Awaitable[Any]: ...


class Connection(Generic[C]):
    """A channel over a byte stream: the writer task, waiting for room in the channel's queue, and how the
    connection ends.

    ``peer`` is a printable name for logs; ``read_chunk`` (bytes) is the most read from the socket at once;
    ``node_id`` is the node id the secure channel authenticated (``None`` in plaintext).
    """

    def __init__(
        self, stream: ByteStream, channel: C, *, peer: str, read_chunk: int, stats: TcpStats, node_id: str | None
    ) -> None:
        self.stream = stream
        self.channel = channel
        self.peer = peer
        self.node_id = node_id
        self.read_chunk = read_chunk
        self.stats = stats
        self.native = stream if isinstance(stream, NativeStream) else None  # asyncio: the fast path (_native)
        # A stream that writes without waiting (write_now): a NativeStream, or on trio a TrioStream (_trio).
        self.direct = stream if isinstance(stream, DirectStream) else None
        # The event loop's clock (seconds) and events: the event loop's own on asyncio's fast path and on
        # trio (anyio's look the backend up on every call).
        self.now: Callable[[], float] = anyio.current_time
        self.new_event: Callable[[], _Event] = anyio.Event
        self._event: Callable[[], _Event] = anyio.Event  # the writer's events (more than one task may wait)
        if self.native is not None:
            self.now, self.new_event = asyncio.get_running_loop().time, _Flag
        elif not native():  # trio (an optional dependency: imported only when running)
            import trio

            from ._trio import Flag

            self.now, self.new_event, self._event = trio.current_time, Flag, trio.Event
        self.scope = anyio.CancelScope()
        self.closed = False
        self.reason = ""
        self.last_active = self.now()  # seconds, on the event loop's clock
        self._sending = False  # the writer task is inside send()
        # Events are made only when someone waits on them (an event is not free on the hot path).
        self._wake: _Event = self._event()  # set when the channel has queued a frame
        self._space: _Event | None = None  # set when the writer takes the queue (for writers held back)
        self._drained: _Event | None = None  # set when the queue is empty and nothing is being sent

    def close(self, reason: str) -> None:
        """End the connection: stop its tasks, then the socket is closed. Safe to call repeatedly."""
        if not self.closed:
            self.closed = True
            self.reason = reason
            self._notify_space()
            self._notify_drained()
        self.scope.cancel()

    async def room(self) -> None:
        """Wait while more than :data:`OUTBOX_HIGH_WATER` bytes are queued (the peer reads slower than we
        write). Raises :class:`PeerUnreachable` when the connection is closed."""
        while self.channel.outbound_bytes >= OUTBOX_HIGH_WATER and not self.closed:
            if self._space is None:
                self._space = self._event()
            await self._space.wait()
        if self.closed:
            raise PeerUnreachable(f"connection to {self.peer} is closed ({self.reason})")

    def wake_writer(self) -> None:
        """Tell the writer task the channel has frames queued."""
        self._wake.set()

    async def flush(self) -> None:
        """Wait until every queued frame has been handed to the socket (or the connection closed)."""
        while (self._backlog or self._sending) and not self.closed:
            if self._drained is None:
                self._drained = self._event()
            await self._drained.wait()

    @property
    def _backlog(self) -> int:
        """Bytes waiting to be sent: queued in the channel, or left by a ``write_now`` (a TrioStream's)."""
        unsent = self.direct.unsent if self.direct is not None else 0
        return self.channel.outbound_bytes + unsent

    def _send_now(self) -> bool:
        """On a :attr:`direct` stream with nobody sending: write what is queued at once, from the calling
        task, without a hand-off to the writer task (a write without waiting cannot be left half done by a
        cancellation: on trio what the kernel did not take is left to the writer task, which is woken).
        ``False`` when that is not possible (then wake the writer)."""
        direct = self.direct
        if direct is None or self._sending or not self.channel.outbound_bytes or not direct.writable:
            return False
        frames = self.channel.frames_to_send()
        if not direct.write_now(frames[0] if len(frames) == 1 else b"".join(frames)):
            self.wake_writer()  # trio: the kernel did not take it all, or the write failed
        self._notify_space()
        return True

    def _notify_space(self) -> None:
        if self._space is not None:
            self._space.set()
            self._space = None

    def _notify_drained(self) -> None:
        if self._drained is not None:
            self._drained.set()
            self._drained = None

    async def _write_loop(self) -> None:
        """The task that sends what is queued whenever nobody else is sending (see :meth:`_send_queued`)."""
        try:
            while True:
                if self._sending or not self._backlog:
                    if not self._sending:
                        self._notify_drained()
                    await self._wake.wait()
                    self._wake = self._event()
                    continue
                await self._send_queued()
        except NETWORK_ERRORS as exc:
            self.close(describe_network_error(exc))

    async def _send_queued(self) -> None:
        """Send every queued frame, whole; only one task at a time is inside (``_sending``), so frames never
        interleave. Consecutive frames are joined up to COALESCE_LIMIT bytes (frames queued during one
        event-loop tick leave in one ``send``); a larger frame goes alone, as is. Raises what ``send`` raises."""
        self._sending = True
        try:  # (with no frame queued, send(b"") writes what a write_now left: it goes first anyway)
            frames = self.channel.frames_to_send()
            self._notify_space()
            batch: list[bytes] = []
            size = 0
            for frame in frames:
                if batch and size + len(frame) > COALESCE_LIMIT:
                    await self.stream.send(batch[0] if len(batch) == 1 else b"".join(batch))
                    batch, size = [], 0
                batch.append(frame)
                size += len(frame)
            await self.stream.send(batch[0] if len(batch) == 1 else b"".join(batch))
        finally:
            self._sending = False
        if self.channel.outbound_bytes:
            self.wake_writer()  # queued while this send ran
        else:
            self._notify_drained()

    async def aclose(self) -> None:
        """Close the socket at once (shielded, so it also runs while the caller is being cancelled)."""
        self.closed = True
        with anyio.CancelScope(shield=True):
            await anyio.aclose_forcefully(self.stream)


class InboundConnection(Connection[ServerChannel]):
    """A connection a peer opened to us: requests in, replies out (a :class:`~butter.channel.ServerChannel`).

    Each request runs ``dispatch`` in a task of its own while it is handled, at most ``max_concurrent`` at
    once (the channel answers more with ``overloaded``). Answering tasks are reused: one that is done takes
    the next request waiting, and up to ``IDLE_ANSWERERS`` wait for the next one to arrive, so a steady
    stream of requests does not start a task each.

    Once a frame has begun, the rest of it must arrive within ``frame_timeout`` seconds, or the connection is
    cut off as a slow peer (``on_slow`` is called, then the connection closes): a peer that sends a header
    and then trickles bytes holds a frame buffer only that long.

    Every request reaches ``dispatch`` with ``caller`` (a :class:`~butter.wire.Caller`): the node id the
    secure channel authenticated (``None`` in plaintext) and the socket's remote address (not authenticated).
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
        caller: Caller,
    ) -> None:
        channel = ServerChannel(max_frame, max_concurrent=max_concurrent, caller=caller)
        super().__init__(stream, channel, peer=peer, read_chunk=read_chunk, stats=stats, node_id=caller.node_id)
        self.dispatch = dispatch
        self.frame_timeout = frame_timeout
        self.on_slow = on_slow
        self.last_served = 0.0  # when a request was last answered (event-loop clock; 0: never): usefulness
        self._requests: deque[Request] = deque()  # received, not yet taken by an answering task
        self._idle: list[_Event] = []  # one per idle answering task: set to hand it work/stop
        self._reading = True
        self._frame_ended = False  # the delivery callback took a whole frame since the reader task last looked

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
                                await self._read_loop(reading, answers)
                            except anyio.EndOfStream:
                                pass  # the peer is done sending; answer what it asked, then stop
                            except _CONNECTION_LOST as exc:
                                self.close(describe_network_error(exc))
                        self._reading = False
                        for wake in self._idle:
                            wake.set()
                        self._idle.clear()
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

    async def _read_loop(self, reading: anyio.CancelScope, answers: TaskGroup) -> None:
        """Read and hand out requests. On a :class:`NativeStream` the chunks are handled in the event loop's
        callback as they arrive (:meth:`_delivered`), and this task only takes over, receiving ``b""``, for
        what needs a task: starting an answering task, a frame in progress, pacing a flood."""
        channel = self.channel
        delivered = functools.partial(self._delivered, reading)
        try:
            while True:
                if self.native is not None:
                    self.native.deliver(delivered)
                data = await self.stream.receive(self.read_chunk)
                now = self.last_active = self.now()
                channel.receive_data(data)
                completed, self._frame_ended = self._frame_ended, False
                while True:
                    done, flooded = self._hand_out(answers)
                    completed |= done
                    if not flooded:
                        break
                    self.wake_writer()  # a flood of bad frames: answer at its pace
                    await self.room()
                if channel.outbound_bytes:
                    self.wake_writer()
                self._frame_deadline(reading, now, completed)
        finally:
            if self.native is not None:
                self.native.deliver(None)

    def _delivered(self, reading: anyio.CancelScope, data: bytes) -> None:
        """A chunk handed over by the NativeStream, in the event loop's callback (must not raise; no anyio
        call needing a task may be made here). Requests go to idle answering tasks; whatever needs more
        (a new answering task, a frame in progress and its deadline, a flood to pace) is left in the channel
        for the reader task (:meth:`NativeStream.hand_off`)."""
        try:
            self.last_active = self.now()
            channel = self.channel
            channel.receive_data(data)
            while self._idle and (event := channel.next_event()) is not None:
                self._frame_ended = True  # for the reader task's frame deadline
                if isinstance(event, Request):
                    self._requests.append(event)
                    self._idle.pop().set()
                    continue
                self._refused(event)
                if channel.outbound_bytes >= OUTBOX_HIGH_WATER:
                    break
            if channel.outbound_bytes:
                self.wake_writer()
            if (channel.buffered or reading.deadline != math.inf) and self.native is not None:
                self.native.hand_off()
        except Exception:
            log.exception("connection from %s failed", self.peer)
            self.close("internal error")

    def _hand_out(self, answers: TaskGroup) -> tuple[bool, bool]:
        """Give every request the channel has decoded to an answering task, and count what it refused.
        Returns whether a frame ended, and whether it stopped early because the outbox is full (refused
        frames are answered at once): the caller waits for room, then calls again."""
        channel = self.channel
        completed = False
        while (event := channel.next_event()) is not None:
            completed = True
            if isinstance(event, Request):
                self._requests.append(event)
                if self._idle:
                    self._idle.pop().set()
                else:
                    answers.start_soon(self._answer_requests)
                continue
            self._refused(event)
            if channel.outbound_bytes >= OUTBOX_HIGH_WATER:
                return completed, True
        return completed, False

    def _frame_deadline(self, reading: anyio.CancelScope, now: float, completed: bool) -> None:
        """Set the reading scope's deadline: ``frame_timeout`` after a frame began, infinite between frames."""
        if self.channel.in_frame:
            if completed or reading.deadline == math.inf:
                reading.deadline = now + self.frame_timeout
        elif reading.deadline != math.inf:
            reading.deadline = math.inf

    def _refused(self, event: FrameRejected | Overloaded) -> None:
        """Count and log what the channel refused (it has queued the answer already)."""
        if isinstance(event, Overloaded):
            self.stats.requests_overloaded += 1
            limits_log.warning(
                "overloaded", "answered a request from %s 'overloaded': %d already being handled on its "
                "connection (max_concurrent_requests)", self.peer, event.active,
            )
            return
        self.stats.frames_rejected += 1
        if isinstance(event.error, FrameTooLarge):
            limits_log.warning("max_frame", "refused a frame from %s: %s (max_frame)", self.peer, event.error)
        else:
            log.debug("rejected a frame from %s: %s", self.peer, event.error)

    async def _answer_requests(self) -> None:
        """Answer the requests waiting, one at a time; then wait for the next one (unless ``IDLE_ANSWERERS``
        already wait) until the peer stops sending. Every request queued has woken or started a task that
        checks the queue after it, so none waits while a task is free."""
        while True:
            while self._requests:
                await self._answer(self._requests.popleft())
            if not self._reading or len(self._idle) >= IDLE_ANSWERERS:
                return
            wake = self.new_event()
            self._idle.append(wake)
            await wake.wait()

    async def _answer(self, request: Request) -> None:
        try:
            try:
                reply = await self.dispatch(request)
            except Exception as exc:  # a Dispatcher must not raise; answer anyway if one does
                log.exception("dispatcher raised for route %r", request.route)
                reply = Reply(request.id, error=ErrorInfo("handler-error", f"{type(exc).__name__}: {exc}"))
            if self.closed or self.channel.outbound_bytes >= OUTBOX_HIGH_WATER:
                await self.room()
            self.channel.send_reply(reply)
            self.stats.requests_served += 1
            self.last_served = self.last_active = self.now()
            if self._sending or self._wake.is_set() or (self.channel.active and self.native is None):
                self.wake_writer()  # (off asyncio's fast path, while others are being answered: one send for all)
            elif not self._send_now():  # nobody is sending: send it from here, saving the hand-off to the writer
                await self._send_queued()
        except PeerUnreachable:
            pass  # the peer left; the connection is closed
        except NETWORK_ERRORS as exc:
            self.close(describe_network_error(exc))


class _Flag:
    """A one-shot event over an asyncio future: what the asyncio fast path waits on (cheaper to make, set
    and wait for than ``asyncio.Event``, let alone ``anyio.Event``). A waiter that is cancelled leaves it
    set."""

    __slots__ = ("_future",)

    def __init__(self) -> None:
        self._future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def set(self) -> None:
        if not self._future.done():
            self._future.set_result(None)

    def is_set(self) -> bool:
        return self._future.done()

    def wait(self) -> asyncio.Future[None]:
        return self._future


class _Timer(Protocol):
    """A timer that can be cancelled: ``asyncio.TimerHandle`` or :class:`~._trio.Timer`."""

    def cancel(self) -> None: ...


class _Waiter:
    """One request waiting for its reply: set ``reply`` or ``error`` (or call :meth:`expire`), then ``event``."""

    __slots__ = ("error", "event", "expired", "reply")

    def __init__(self, event: _Event) -> None:
        self.event = event
        self.reply: Reply | None = None
        self.error = ""
        self.expired = False

    def expire(self) -> None:
        if not self.event.is_set():
            self.expired = True
            self.event.set()


class OutgoingConnection(Connection[ClientChannel]):
    """A connection we opened to one peer: our requests out, their replies in
    (a :class:`~butter.channel.ClientChannel`, multiplexed by id).

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
        channel = ClientChannel(max_frame, peer=peer)
        super().__init__(stream, channel, peer=peer, read_chunk=read_chunk, stats=stats, node_id=node_id)
        self.waiters: dict[int, _Waiter] = {}  # by request id, until its caller leaves
        self._calls = 0  # calls in progress, including those waiting for room to send
        self.released = False  # set by the pool once this connection no longer counts toward max_connections
        self._on_closed = on_closed
        # How call() times out when given a timeout: asyncio's loop.call_at on the fast path, on trio one
        # timer task for the connection (_trio.Timers); else the caller bounds the wait itself.
        self._timers: Timers | None = None
        self._call_at: Callable[[float, Callable[[], None]], _Timer] | None = None
        if self.native is not None:
            self._call_at = asyncio.get_running_loop().call_at
        elif not native():
            from ._trio import Timers

            self._timers = Timers()
            self._call_at = self._timers.call_at

    @property
    def timed(self) -> bool:
        """Whether :meth:`call` takes a ``timeout`` (asyncio's fast path, and trio)."""
        return self._call_at is not None

    @property
    def pending(self) -> int:
        """Requests in progress on this connection: waiting for room to be sent, or for their reply."""
        return self._calls

    async def call(self, route: str, body: bytes, timeout: float | None = None) -> Reply:
        """Send a request for ``route`` carrying ``body`` and wait for its reply.

        Raises :class:`~butter.errors.FrameTooLarge` (nothing sent) when the request exceeds ``max_frame``,
        :class:`PeerUnreachable` when the connection fails before the reply arrives. The caller bounds the
        wait (``anyio.fail_after``), or when :attr:`timed` may pass ``timeout`` (seconds) instead: then
        ``TimeoutError`` is raised after that long (a timer: asyncio's, or the connection's timer task on
        trio; cheaper than a cancel scope). A reply that arrives after the caller gave up is dropped.
        """
        deadline = 0.0
        call_at = self._call_at if timeout is not None else None
        if timeout is not None:
            assert call_at is not None, "a timeout is only taken when the connection is timed"
            deadline = self.now() + timeout
        self._calls += 1
        try:
            if self.closed or self.channel.outbound_bytes >= OUTBOX_HIGH_WATER:
                with anyio.fail_at(deadline) if timeout is not None else contextlib.nullcontext():
                    await self.room()
            request_id = self.channel.send_request(route, body)
            waiter = self.waiters[request_id] = _Waiter(self.new_event())
            # Alone on the connection: send it now. Else the writer task sends every frame queued this tick
            # in one go (many requests in flight).
            if self._calls > 1 or not self._send_now():
                self.wake_writer()
            self.stats.requests_sent += 1
            timer = call_at(deadline, waiter.expire) if call_at is not None else None
            try:
                await waiter.event.wait()
            finally:
                if timer is not None:
                    timer.cancel()
                del self.waiters[request_id]
                self.channel.forget(request_id)
        finally:
            self._calls -= 1
            self.last_active = self.now()
        if waiter.reply is None:
            if waiter.expired:
                raise TimeoutError
            raise PeerUnreachable(f"connection to {self.peer} lost before the reply: {waiter.error}")
        return waiter.reply

    async def run(self) -> None:
        """Read replies until the connection ends, then fail every waiting request with the reason. On a
        :class:`NativeStream` the replies are handled in the event loop's callback, as they arrive (no
        task wakes in between); this task then only waits for the end."""
        try:
            with self.scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._write_loop)
                    if self._timers is not None:
                        tg.start_soon(self._timers.run)
                    try:
                        if self.native is not None:
                            self.native.deliver(self._delivered)
                        while True:
                            data = await self.stream.receive(self.read_chunk)
                            self._on_data(data)
                    except NETWORK_ERRORS as exc:
                        self.close(describe_network_error(exc))
        except Exception:
            log.exception("connection to %s failed", self.peer)
            self.close("internal error")
        finally:
            self.close(self.reason or "transport stopped")
            for waiter in self.waiters.values():
                waiter.error = self.reason
                waiter.event.set()
            self._on_closed(self)
            await self.aclose()

    def _on_data(self, data: bytes) -> None:
        self.channel.receive_data(data)
        while (event := self.channel.next_event()) is not None:
            self._on_event(event)

    def _delivered(self, data: bytes) -> None:
        """:meth:`_on_data` called by the NativeStream (it must not raise into the event loop)."""
        try:
            self._on_data(data)
        except Exception:
            log.exception("connection to %s failed", self.peer)
            self.close("internal error")

    def _on_event(self, event: ClientEvent) -> None:
        if isinstance(event, Reply):
            waiter = self.waiters.get(event.id)
            if waiter is not None:
                waiter.reply = event
                waiter.event.set()  # its caller marks the connection active when it wakes
        elif isinstance(event, ChannelError):
            log.warning("%s reported a connection error: %s: %s", self.peer, event.error.code, event.error.message)
        else:  # A reply over our max_frame cannot be matched: its request will time out.
            log.warning("discarded a frame from %s: %s", self.peer, event.error)
