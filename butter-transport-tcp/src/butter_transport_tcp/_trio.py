"""trio's fast path: a byte stream straight on the socket, without anyio's stream wrapper or trio's checkpoints.

On trio, anyio's socket stream goes through trio's socket methods: every ``recv`` and ``send`` that succeeds
at once still yields to the scheduler (trio makes every I/O call a checkpoint), and anyio adds a resource
guard and a backend look-up around each. :class:`TrioStream` is an anyio ``ByteStream`` that calls the
non-blocking socket itself and waits (``trio.lowlevel.wait_readable`` / ``wait_writable``) only when the
kernel has nothing to give or no room to take, so a request costs fewer trips through trio's scheduler
(measured with ``benchmarks/rpc.py``: see the package README's Performance section). It yields every
``FAIR_READS`` reads that did not wait, so a peer flooding the socket cannot starve the other tasks, and
cancellation is seen there and at every wait.

:meth:`TrioStream.write_now` writes what the kernel takes at once, without waiting, as
``NativeStream.write_now`` does on asyncio; what it did not take is kept and goes first on the next
:meth:`~TrioStream.send` (:attr:`TrioStream.unsent`), so a frame is never interleaved with another.
TLS on trio is :class:`TrioTLSStream`: Python's :mod:`ssl` over memory buffers, as anyio's ``TLSStream``,
on a :class:`TrioStream`, with a ``write_now`` of its own.

The connections' other trio primitives are here too: :class:`Flag` (a one-waiter event) and
:class:`Timers` (request timeouts without a cancel scope each).

This module imports trio: it is loaded only when the event loop is trio's (trio is an optional dependency).
"""

from __future__ import annotations

import heapq
import itertools
import math
import socket
import ssl
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import trio
from anyio.abc import ByteStream

from ._native import DirectStream, socket_attributes, tls_attributes

__all__ = ["FAIR_READS", "Flag", "Timers", "TrioStream", "TrioTLSStream", "open_stream"]

FAIR_READS = 16  # reads that found data at once before the reader yields to the other tasks anyway
TLS_SOCKET_READ = 64 * 1024  # bytes of TLS records read from the socket at a time


class TrioStream(DirectStream):
    """An anyio byte stream over a connected TCP socket (made non-blocking), for trio's event loop.

    ``receive`` raises :class:`anyio.EndOfStream` once the peer has closed its side,
    :class:`anyio.BrokenResourceError` when the connection failed, and :class:`anyio.ClosedResourceError`
    after :meth:`aclose`; ``send`` raises the last two.
    """

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._unsent: memoryview | None = None  # what write_now could not write at once
        self._error: Exception | None = None  # write_now failed: the next send raises
        self._closed = False
        self._reads = 0  # reads since the last wait or yield
        self._drained = False  # the last read took less than asked: wait before reading again

    @property
    def writable(self) -> bool:
        """Whether :meth:`write_now` may be called: open, and nothing left unsent."""
        return not (self._closed or self._unsent is not None or self._error is not None)

    @property
    def unsent(self) -> int:
        """Bytes :meth:`write_now` left for the next :meth:`send` (0 when all went)."""
        return 0 if self._unsent is None else len(self._unsent)

    def write_now(self, data: bytes) -> bool:
        """Write ``data`` without waiting; only when :attr:`writable`. ``False`` when what the kernel did
        not take at once (:attr:`unsent`), or a failure, is left for the next :meth:`send`, which the
        caller must then make."""
        try:
            sent = self._sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self.write_failed(exc, data)
            return False
        if sent < len(data):
            self._unsent = memoryview(data)[sent:]
            return False
        return True

    def write_failed(self, exc: Exception, data: bytes) -> None:
        """A :meth:`write_now` of ``data`` failed with ``exc``: keep it as unsent, so the writer task is
        woken and its :meth:`send` raises :class:`anyio.BrokenResourceError` (the connection closes)."""
        self._error = exc
        self._unsent = memoryview(data)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        while True:
            if self._closed:
                raise anyio.ClosedResourceError
            if self._drained:  # the kernel had no more: wait for more (saves a read that finds nothing)
                self._drained = False
                self._reads = 0
                await self._wait(trio.lowlevel.wait_readable)
            try:
                data = self._sock.recv(max_bytes)
            except BlockingIOError:
                self._drained = True
                continue
            except OSError as exc:
                raise self._failed() from exc
            if not data:
                raise anyio.EndOfStream
            self._drained = len(data) < max_bytes
            self._reads += 1
            if self._reads >= FAIR_READS:
                self._reads = 0
                await trio.lowlevel.cancel_shielded_checkpoint()  # (a cancellation must not lose data)
            return data

    async def send(self, item: bytes) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        if self._error is not None:
            raise anyio.BrokenResourceError from self._error
        if self._unsent is not None:
            unsent, self._unsent = self._unsent, None
            await self._send_all(unsent)
        if item:
            await self._send_all(memoryview(item))

    async def _send_all(self, view: memoryview) -> None:
        while view:
            try:
                sent = self._sock.send(view)
            except BlockingIOError:
                await self._wait(trio.lowlevel.wait_writable)
                continue
            except OSError as exc:
                raise self._failed() from exc
            view = view[sent:]

    async def _wait(self, wait: Callable[[socket.socket], Any]) -> None:
        try:
            await wait(self._sock)
        except trio.ClosedResourceError:
            raise anyio.ClosedResourceError from None
        except trio.BusyResourceError:
            raise anyio.BusyResourceError("waiting on") from None

    def _failed(self) -> Exception:
        return anyio.ClosedResourceError() if self._closed else anyio.BrokenResourceError()

    async def send_eof(self) -> None:
        self._sock.shutdown(socket.SHUT_WR)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            trio.lowlevel.notify_closing(self._sock)  # wakes a task waiting on it (ClosedResourceError)
            self._sock.close()
        await trio.lowlevel.checkpoint()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return socket_attributes(self._sock)


class Flag:
    """A one-shot event that one task at most waits for, on trio's low-level scheduling (cheaper to make,
    set and wait for than ``trio.Event``): what a request waits for its reply on, and an idle answering
    task for its next request. ``wait`` returns at once, without a checkpoint, once it is set; a waiter
    that is cancelled leaves it unset."""

    __slots__ = ("_set", "_task")

    def __init__(self) -> None:
        self._set = False
        self._task: trio.lowlevel.Task | None = None

    def set(self) -> None:
        if not self._set:
            self._set = True
            if self._task is not None:
                task, self._task = self._task, None
                trio.lowlevel.reschedule(task)

    def is_set(self) -> bool:
        return self._set

    async def wait(self) -> None:
        if self._set:
            return
        assert self._task is None, "a Flag has one waiter at most"
        self._task = trio.lowlevel.current_task()

        def abort(_: Any) -> trio.lowlevel.Abort:
            self._task = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)


class Timer:
    """A callback due at a deadline (see :class:`Timers`); :meth:`cancel` drops it."""

    __slots__ = ("_timers", "callback")

    def __init__(self, timers: Timers, callback: Callable[[], None]) -> None:
        self._timers = timers
        self.callback: Callable[[], None] | None = callback

    def cancel(self) -> None:
        if self.callback is not None:
            self.callback = None
            self._timers.live -= 1


class Timers:
    """Callbacks run at deadlines (trio's clock, seconds) by one task, :meth:`run`: what asyncio's
    ``loop.call_at`` gives, for the timeouts of requests, instead of a trio cancel scope per request
    (entering and leaving one was about 7 % of the CPU of a round trip). The task wakes only when the
    earliest deadline passes or comes nearer. Cancelled timers are dropped when they reach the top, or all
    at once when they outnumber the live ones (so memory follows the requests in flight, not the rate)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()
        self._sleep: trio.CancelScope | None = None  # the task's sleep until the earliest deadline
        self.live = 0  # timers neither run nor cancelled

    def call_at(self, deadline: float, callback: Callable[[], None]) -> Timer:
        """Call ``callback`` (it must not raise) at ``deadline`` unless the returned timer is cancelled."""
        timer = Timer(self, callback)
        heap = self._heap
        if len(heap) > 64 and len(heap) > 2 * self.live:
            heap[:] = [entry for entry in heap if entry[2].callback is not None]
            heapq.heapify(heap)
        heapq.heappush(heap, (deadline, next(self._order), timer))
        self.live += 1
        if self._sleep is not None and deadline < self._sleep.deadline:
            self._sleep.deadline = deadline
        return timer

    async def run(self) -> None:
        """Run the callbacks as they fall due, until cancelled."""
        heap = self._heap
        while True:
            now = trio.current_time()
            while heap and (heap[0][2].callback is None or heap[0][0] <= now):
                timer = heapq.heappop(heap)[2]
                callback = timer.callback
                if callback is not None:
                    timer.cancel()
                    callback()
            with trio.CancelScope(deadline=heap[0][0] if heap else math.inf) as self._sleep:
                await trio.sleep_forever()
            self._sleep = None


class TrioTLSStream(DirectStream):
    """TLS over a :class:`TrioStream`: Python's :mod:`ssl` (OpenSSL) through memory buffers
    (``SSLContext.wrap_bio``), as anyio's :class:`~anyio.streams.tls.TLSStream` does, with fewer steps per
    record: a read asks the socket only when OpenSSL holds nothing more, and :meth:`write_now` encrypts and
    writes without waiting. Made by :func:`open_stream` (which runs the handshake). No ``close_notify`` is
    sent or awaited (connections end with a forceful close, as ``TLSStream(standard_compatible=False)``);
    TLS 1.3 has no half-close, so :meth:`send_eof` does nothing. Raises as :class:`TrioStream` does; a bad
    record is :class:`anyio.BrokenResourceError`, the peer closing without ``close_notify``
    :class:`anyio.EndOfStream` (as ``TLSStream(standard_compatible=False)``).
    """

    def __init__(self, raw: TrioStream, ssl_object: ssl.SSLObject, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO):
        self._raw = raw
        self._ssl = ssl_object
        self._in = incoming
        self._out = outgoing

    async def handshake(self) -> None:
        """Run the TLS handshake. Raises ``ssl.SSLError`` or the socket's errors."""
        while True:
            try:
                self._ssl.do_handshake()
            except ssl.SSLWantReadError:
                await self._flush()
                self._in.write(await self._raw.receive(TLS_SOCKET_READ))
                continue
            await self._flush()
            return

    async def _flush(self) -> None:
        if self._out.pending:
            await self._raw.send(self._out.read())

    @property
    def writable(self) -> bool:
        return self._raw.writable

    @property
    def unsent(self) -> int:
        return self._raw.unsent

    def write_now(self, data: bytes) -> bool:
        try:
            self._ssl.write(data)  # into a memory buffer: whole
        except ssl.SSLError as exc:
            self._raw.write_failed(exc, data)
            return False
        return self._raw.write_now(self._out.read())

    async def receive(self, max_bytes: int = 65536) -> bytes:
        starved = not (self._in.pending or self._ssl.pending())  # OpenSSL holds nothing: read the socket
        while True:
            if starved:
                try:
                    self._in.write(await self._raw.receive(TLS_SOCKET_READ))
                except anyio.EndOfStream:
                    self._in.write_eof()
            try:
                data = self._ssl.read(max_bytes)
            except ssl.SSLWantReadError:
                starved = True  # an incomplete record, or one carrying no data
                continue
            except ssl.SSLZeroReturnError:
                raise anyio.EndOfStream from None
            except ssl.SSLError as exc:
                if isinstance(exc, ssl.SSLEOFError) or "UNEXPECTED_EOF_WHILE_READING" in (exc.strerror or ""):
                    raise anyio.EndOfStream from None  # the peer closed without close_notify: as TLSStream does
                raise anyio.BrokenResourceError from exc  # a bad record
            # What TLS answers by itself while reading (a key update) stays in the outgoing buffer and
            # leaves, in order, with the next write: the reader never sends (the writer may be sending).
            if not data:
                raise anyio.EndOfStream
            return data

    async def send(self, item: bytes) -> None:
        if item:
            self._ssl.write(item)
        await self._raw.send(self._out.read() if self._out.pending else b"")

    async def send_eof(self) -> None:
        pass

    async def aclose(self) -> None:
        await self._raw.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return {**self._raw.extra_attributes, **tls_attributes(self._ssl)}


async def open_stream(sock: socket.socket, context: ssl.SSLContext | None, *, server_side: bool) -> ByteStream:
    """A :class:`TrioStream` over the connected ``sock``, or with ``context`` a :class:`TrioTLSStream` over
    one (returned once the handshake completed).

    Raises what the handshake raises (``ssl.SSLError``, :class:`anyio.EndOfStream`, ...); ``sock`` is
    closed then, and when the caller is cancelled. The caller bounds the wait.
    """
    stream = TrioStream(sock)
    if context is None:
        return stream
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = TrioTLSStream(stream, context.wrap_bio(incoming, outgoing, server_side=server_side), incoming, outgoing)
    try:
        await tls.handshake()
    except BaseException:
        with anyio.CancelScope(shield=True):
            await stream.aclose()
        raise
    return tls
