"""asyncio's native TLS behind anyio's :class:`~anyio.abc.ByteStream`.

On the asyncio backend, anyio's :class:`~anyio.streams.tls.TLSStream` runs TLS in Python over an anyio socket
stream: every record goes through a receive or send of that stream, with its checkpoints, and every
receive resumes and pauses the socket's reading (two epoll changes). asyncio has TLS of its own in the event
loop (``loop.create_connection(ssl=...)``, its ``SSLProtocol``), which moves records between the socket and
OpenSSL's memory buffers in callbacks. :class:`NativeStream` is an anyio ``ByteStream`` over such an asyncio
Transport, so admission, the pool, the connection loops and adopted streams keep speaking anyio streams.
Measured with ``benchmarks/rpc.py`` (see the package README's Performance section).

* :func:`take_socket` takes the socket from under an anyio asyncio socket stream (a duplicate of its file
  descriptor; the anyio stream is closed, which closes only the original descriptor): a dialled connection.
  Admission hands accepted sockets over before any anyio stream is made around them.
* :func:`open_stream` runs the handshake on that socket in the event loop and returns the stream (or
  makes a plaintext one: the same stream serves plaintext connections on asyncio).

Reading runs on its own: the protocol buffers what arrives and pauses the socket only once
``READ_HIGH_WATER`` bytes wait unread, so a receive is a deque pop, not two epoll changes. Writing has no
buffer of ours: a send returns once the TLS layer has encrypted and passed on every byte, else it waits for
the transport to drain (what the kernel did not take at once waits in the socket transport's buffer, which
pauses the TLS layer over 64 KiB), so "sent" means "handed to the socket" nearly as on anyio's streams.
Closing aborts the transport (no ``close_notify``: connections end with a forceful close, as with
``TLSStream(standard_compatible=False)``).

The fast path of the connections (``_connection``): :meth:`NativeStream.deliver` hands each chunk to a
callback as it arrives (no task wakes between the socket and the channel) until the callback calls
:meth:`NativeStream.hand_off` for what needs a task, and :meth:`NativeStream.write_now` writes without
waiting. asyncio's TLS layer reads the socket into one ``TLS_SOCKET_READ``-byte buffer per thread
(:class:`_SSLProtocol`), not 256 KiB per connection.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from abc import abstractmethod
from asyncio.sslproto import SSLProtocol
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import anyio
from anyio.abc import ByteStream, SocketAttribute, SocketStream
from anyio.streams.tls import TLSAttribute

__all__ = [
    "READ_HIGH_WATER", "DirectStream", "NativeStream", "native", "open_stream", "socket_attributes", "take_socket",
    "tls_attributes",
]

READ_HIGH_WATER = 256 * 1024  # bytes received and not yet read before the socket's reading is paused
TLS_SOCKET_READ = 256 * 1024  # bytes: asyncio's TLS layer reads the socket this much at a time (_SSLProtocol)
TLS_READ_CHUNK = 16 * 1024  # bytes of plaintext it takes from OpenSSL at a time (one TLS record at most)


def socket_attributes(sock: socket.socket) -> dict[Any, Callable[[], Any]]:
    """anyio's ``SocketAttribute`` values of a connected ``sock`` (for a stream's ``extra_attributes``)."""
    return {
        SocketAttribute.family: lambda: sock.family,
        SocketAttribute.local_address: lambda: sock.getsockname(),
        SocketAttribute.local_port: lambda: sock.getsockname()[1],
        SocketAttribute.remote_address: lambda: sock.getpeername(),
        SocketAttribute.remote_port: lambda: sock.getpeername()[1],
        SocketAttribute.raw_socket: lambda: sock,
    }


def tls_attributes(tls: ssl.SSLObject) -> dict[Any, Callable[[], Any]]:
    """anyio's ``TLSAttribute`` values of an established ``tls`` session, as anyio's ``TLSStream`` gives them."""
    return {
        TLSAttribute.ssl_object: lambda: tls,
        TLSAttribute.server_side: lambda: tls.server_side,
        TLSAttribute.cipher: lambda: tls.cipher(),
        TLSAttribute.tls_version: lambda: tls.version(),
        TLSAttribute.peer_certificate_binary: lambda: tls.getpeercert(True),
        TLSAttribute.channel_binding_tls_unique: lambda: tls.get_channel_binding("tls-unique"),
        TLSAttribute.standard_compatible: lambda: False,
    }


class DirectStream(ByteStream):
    """A byte stream that can also write without waiting: :class:`NativeStream` (asyncio) and trio's
    ``TrioStream`` (:mod:`._trio`). The connections write from the calling task through it (``_connection``)."""

    @property
    @abstractmethod
    def writable(self) -> bool:
        """Whether :meth:`write_now` may be called now."""

    @property
    def unsent(self) -> int:
        """Bytes a :meth:`write_now` left for the next ``send`` (the stream keeps them; 0: none)."""
        return 0

    @abstractmethod
    def write_now(self, data: bytes) -> bool:
        """Write ``data`` without waiting; only when :attr:`writable`. ``False`` when some of it (or a
        failure) is left for the next ``send``, which the caller must then have made."""


class NativeStream(DirectStream, asyncio.Protocol):
    """An anyio byte stream over an asyncio transport (TLS or plaintext); it is the transport's protocol
    too. Made by :func:`open_stream`.

    ``receive`` raises :class:`anyio.EndOfStream` once the peer has closed its side (and everything before
    was read), :class:`anyio.BrokenResourceError` when the connection failed, and
    :class:`anyio.ClosedResourceError` after :meth:`aclose`; ``send`` raises the last two.
    """

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._chunks: deque[bytes] = deque()
        self._buffered = 0  # bytes in _chunks
        self._reading_paused = False
        self._eof = False
        self._lost = False
        self._error: BaseException | None = None
        self._closed = False
        self._readable: asyncio.Future[None] | None = None  # a receive waiting for data
        self._writable: asyncio.Future[None] | None = None  # a send waiting for the transport to drain
        self._write_paused = False
        self._deliver: Callable[[bytes], None] | None = None
        self._handed_off = False  # receive() returns b"" once: see hand_off()

    # -- asyncio.Protocol ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        # Writers wait while anything is left in the TLS layer (asyncio's TLS pauses writers at size >=
        # high, so high=0 would pause them for good); the socket's own transport buffers only what the
        # kernel did not take at once.
        transport.set_write_buffer_limits(high=1, low=0)

    def data_received(self, data: bytes) -> None:
        if self._deliver is not None:
            self._deliver(data)
            return
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered >= READ_HIGH_WATER and not self._reading_paused and self._transport is not None:
            self._reading_paused = True
            self._transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake_reader()
        # Plaintext: keep the sending side open (replies to a peer that half-closed); TLS has no half-close.
        return self._transport is not None and self._transport.get_extra_info("ssl_object") is None

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._eof = True
        if exc is not None and self._error is None:
            self._error = exc
        self._wake_reader()
        self._wake_writer()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_writer()

    def _wake_reader(self) -> None:
        if self._readable is not None and not self._readable.done():
            self._readable.set_result(None)

    def _wake_writer(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    # -- the fast path: no task between the socket and the connection ----------------------------------

    def deliver(self, callback: Callable[[bytes], None] | None) -> None:
        """Hand every chunk received from now on to ``callback``, from the event loop's callback (it must
        not raise), instead of keeping it for :meth:`receive`, which then only waits for the end of the
        stream (raising as usual) or a :meth:`hand_off`. Chunks already received are handed over at once.
        ``None``: keep chunks for :meth:`receive` again."""
        self._deliver = callback
        while self._chunks and self._deliver is not None:
            chunk = self._chunks.popleft()
            self._buffered -= len(chunk)
            self._deliver(chunk)
        if self._reading_paused and self._buffered < READ_HIGH_WATER and self._transport is not None:
            self._reading_paused = False
            self._transport.resume_reading()

    def hand_off(self) -> None:
        """Called by the delivery callback when the rest needs a task (it must wait): stop delivering, and
        make the task's :meth:`receive` return ``b""`` at once (chunks are kept for it again)."""
        self._deliver = None
        self._handed_off = True
        self._wake_reader()

    @property
    def writable(self) -> bool:
        """Whether :meth:`write_now` may be called: the transport is open and takes writes (not paused)."""
        transport = self._transport
        return not (transport is None or self._write_paused or self._closed or self._lost or transport.is_closing())

    def write_now(self, data: bytes) -> bool:
        """Write ``data`` at once, without waiting; only when :attr:`writable` (else :meth:`send` it).
        Always whole (the transport buffers what the socket does not take): ``True``."""
        assert self._transport is not None
        self._transport.write(data)
        return True

    # -- anyio ByteStream --------------------------------------------------------------------------------

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if not self._chunks:
            if self._closed:
                raise anyio.ClosedResourceError
            if not self._eof and not self._handed_off:
                self._readable = asyncio.get_running_loop().create_future()
                try:
                    await self._readable
                finally:
                    self._readable = None
            if self._handed_off:
                self._handed_off = False
                return b""
            if not self._chunks:
                if self._closed:
                    raise anyio.ClosedResourceError
                if self._error is not None:
                    raise anyio.BrokenResourceError from self._error
                raise anyio.EndOfStream
        chunk = self._chunks.popleft()
        if len(chunk) > max_bytes:
            chunk, rest = chunk[:max_bytes], chunk[max_bytes:]
            self._chunks.appendleft(rest)
        self._buffered -= len(chunk)
        if self._reading_paused and self._buffered < READ_HIGH_WATER and self._transport is not None:
            self._reading_paused = False
            self._transport.resume_reading()
        return chunk

    async def send(self, item: bytes) -> None:
        transport = self._transport
        if self._closed:
            raise anyio.ClosedResourceError
        if transport is None or self._lost or transport.is_closing():
            raise anyio.BrokenResourceError from self._error
        transport.write(item)
        while self._write_paused and not self._lost:
            self._writable = asyncio.get_running_loop().create_future()
            try:
                await self._writable
            finally:
                self._writable = None
        if self._closed:
            raise anyio.ClosedResourceError
        if self._lost:
            raise anyio.BrokenResourceError from self._error

    async def send_eof(self) -> None:
        if self._transport is not None and self._transport.can_write_eof():
            self._transport.write_eof()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            if self._transport is not None:
                self._transport.abort()
            self._wake_reader()
            self._wake_writer()
        await anyio.lowlevel.checkpoint()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        transport = self._transport
        if transport is None:
            return {}
        sock: socket.socket = transport.get_extra_info("socket")
        tls: ssl.SSLObject | None = transport.get_extra_info("ssl_object")
        return socket_attributes(sock) | ({} if tls is None else tls_attributes(tls))


def native() -> bool:
    """Whether the running event loop is asyncio's (else trio's)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def take_socket(stream: ByteStream) -> socket.socket | None:
    """The connected socket under ``stream``, taken from it, when ``stream`` is an anyio TCP socket stream
    (on either event loop); else ``None`` (``stream`` untouched).

    The socket is a duplicate of the stream's file descriptor (same connection, same options); the stream
    is closed, which closes only its own descriptor (no FIN is sent). Only for the dialling side, before any
    byte was sent: a Butter server (TLS or not) sends nothing before the client's first bytes, so the
    stream cannot have read anything yet (an anyio stream made by ``SocketStream.from_socket`` reads
    eagerly; ``anyio.connect_tcp``'s does not).
    """
    if not isinstance(stream, SocketStream):
        return None
    sock: socket.socket = stream.extra(SocketAttribute.raw_socket)
    if sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    taken = sock.dup()
    with anyio.CancelScope(shield=True):
        await anyio.aclose_forcefully(stream)
    return taken


async def open_stream(sock: socket.socket, context: ssl.SSLContext | None, *, server_side: bool) -> ByteStream:
    """The fast stream of the running event loop over the connected ``sock``: on asyncio a
    :class:`NativeStream`, with asyncio's native TLS when ``context`` is given (returned once the handshake
    completed), else plaintext; on trio a ``TrioStream`` (:mod:`._trio`), or a ``TrioTLSStream`` over one
    when ``context`` is given.

    Raises ``OSError`` (``ssl.SSLError``, a reset, the connection closed; on trio also anyio's stream
    errors) when the handshake fails; ``sock`` is closed then, and when the caller is cancelled. The caller
    bounds the wait.
    """
    if not native():
        from ._trio import open_stream as open_trio_stream  # trio is optional: imported only when running

        return await open_trio_stream(sock, context, server_side=server_side)
    loop = asyncio.get_running_loop()
    stream = NativeStream()
    protocol: asyncio.BaseProtocol = stream
    handshake: asyncio.Future[None] | None = None
    if context is not None:  # what loop.create_connection(ssl=...) does, with a smaller read buffer
        handshake = loop.create_future()
        protocol = _SSLProtocol(loop, stream, context, handshake, server_side=server_side)
    if server_side:
        transport, _ = await loop.connect_accepted_socket(lambda: protocol, sock)
    else:
        transport, _ = await loop.create_connection(lambda: protocol, sock=sock)
    if handshake is not None:
        try:
            await handshake
        except BaseException:
            transport.abort()
            raise
    return stream


class _SSLProtocol(SSLProtocol):
    """asyncio's TLS protocol, reading the socket into one buffer shared by the connections of a thread.

    asyncio's own allocates (and zero-fills, so it is resident) a 256 KiB read buffer per connection: a
    node with many connections paid 256 KiB each where anyio's ``TLSStream`` held a few KiB. A buffered
    protocol's buffer is only used between ``get_buffer`` and ``buffer_updated``, in one call of the event
    loop (the bytes are copied into the TLS layer at once), so one buffer per thread serves them all.
    ``max_size`` (bytes) is also how much plaintext the protocol takes from OpenSSL at a time.
    """

    max_size = TLS_READ_CHUNK

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        shared = getattr(_thread, "buffer", None)
        if shared is None:
            shared = _thread.buffer = memoryview(bytearray(TLS_SOCKET_READ))
        self._ssl_buffer = shared.obj  # names of asyncio's SSLProtocol (3.11-3.13): read by get_buffer and
        self._ssl_buffer_view = shared  # buffer_updated; were they renamed, each connection keeps its own


_thread = threading.local()  # .buffer: the thread's socket read buffer for _SSLProtocol
