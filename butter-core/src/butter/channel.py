"""Butter's request/reply channel, sans-IO (in the manner of h11): the rules of one connection, no sockets.

A connection carries requests one way and replies the other (docs/protocol/). Each end is one
object: :class:`ClientChannel` on the side that sends requests, :class:`ServerChannel` on the side that
answers them. Bytes received go in with ``receive_data``; events come out of ``next_event``; what the
application sends (``send_request`` / ``send_reply``) and what the channel answers by itself are queued
as whole frames, taken with :meth:`Channel.frames_to_send`. The I/O around it (reading, writing, tasks,
timeouts) is the transport's; nothing here blocks, and bad input from the peer never raises.

Rules kept here:

* Request ids are the client channel's: 1, 2, 3... per connection, unique among its requests in flight.
  Id 0 is reserved for errors about the connection itself: a server answers a frame it could not read
  (no id) with an error reply of id 0, and refuses a request that uses id 0.
* A reply is matched to its request by id; a reply to a request the client gave up on
  (:meth:`ClientChannel.forget`) is dropped. A malformed reply whose id could be read answers its request
  with error ``protocol-error``.
* A server handles at most ``max_concurrent`` requests at once; one more is answered ``overloaded`` at once.
* A reply received on the serving side is a protocol error (that side asked nothing), and so is a request
  received on the client side; a frame that is too large or not a valid envelope is rejected, and framing
  goes on (:class:`~butter.wire.FrameDecoder`).
* A reply larger than ``max_frame`` is replaced by error ``frame-too-large``; a request larger than it
  raises :class:`~butter.errors.FrameTooLarge` and is not sent.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

from .errors import FrameTooLarge, ProtocolError
from .wire import (
    DEFAULT_MAX_FRAME,
    Caller,
    ErrorInfo,
    FrameDecoder,
    FrameRejected,
    Message,
    Reply,
    Request,
    encode,
)

__all__ = [
    "CONNECTION_ERROR_ID",
    "Channel",
    "ChannelError",
    "ClientChannel",
    "ClientEvent",
    "Overloaded",
    "ServerChannel",
    "ServerEvent",
]

log = logging.getLogger("butter.channel")

CONNECTION_ERROR_ID = 0  # the id of an error reply that concerns the connection, not one request
ERROR_FRAME_FLOOR = 4096  # bytes an error reply may take even under a smaller max_frame
MAX_ERROR_MESSAGE = 1000  # characters of an error reply's message


@dataclass(frozen=True, slots=True)
class Overloaded:
    """The server channel refused request ``request_id`` because ``active`` requests were already being
    handled (its ``max_concurrent``); an ``overloaded`` error reply is queued."""

    request_id: int
    active: int


@dataclass(frozen=True, slots=True)
class ChannelError:
    """The peer reported an error about the connection itself (an error reply with the reserved id 0),
    e.g. it could not read one of our frames."""

    error: ErrorInfo


ServerEvent = Request | FrameRejected | Overloaded
"""What a server channel reports: a :class:`~butter.wire.Request` to handle (its ``caller`` set), a
:class:`~butter.wire.FrameRejected` (answered already), or :class:`Overloaded` (answered already)."""

ClientEvent = Reply | FrameRejected | ChannelError
"""What a client channel reports: the :class:`~butter.wire.Reply` to a request in flight, a
:class:`~butter.wire.FrameRejected` matching no request (discarded), or a :class:`ChannelError`."""


class Channel:
    """What both roles share: the decoder of received bytes and the queue of frames to send.

    ``max_frame`` (bytes, default 4 MiB) bounds one frame both ways.
    """

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._decoder = FrameDecoder(max_frame)
        self._outbox: list[bytes] = []
        self._outbox_bytes = 0

    def receive_data(self, data: bytes) -> None:
        """Add bytes received from the peer (any chunking); then take events with ``next_event``."""
        self._decoder.feed(data)

    @property
    def in_frame(self) -> bool:
        """Whether a received frame has begun and is not complete yet."""
        return self._decoder.in_frame

    @property
    def buffered(self) -> int:
        """Received bytes held, waiting for the rest of their frame."""
        return self._decoder.buffered

    @property
    def outbound_bytes(self) -> int:
        """Bytes of frames queued and not yet taken by :meth:`frames_to_send`."""
        return self._outbox_bytes

    def frames_to_send(self) -> list[bytes]:
        """Take every queued frame, oldest first (each one whole; the list may be empty)."""
        frames = self._outbox
        self._outbox, self._outbox_bytes = [], 0
        return frames

    def _queue(self, frame: bytes) -> None:
        self._outbox.append(frame)
        self._outbox_bytes += len(frame)

    def _queue_error(self, request_id: int, code: str, message: str) -> None:
        error = ErrorInfo(code, message[:MAX_ERROR_MESSAGE])
        self._queue(encode(Reply(request_id, error=error), max(self.max_frame, ERROR_FRAME_FLOOR)))


class ServerChannel(Channel):
    """The side that answers requests.

    ``max_concurrent`` (default 256) bounds the requests being handled at once (:attr:`active`: received
    and not yet answered with :meth:`send_reply`); ``caller`` is set on every request received (who the
    transport knows the peer to be; default ``None``: unknown).
    """

    def __init__(
        self, max_frame: int = DEFAULT_MAX_FRAME, *, max_concurrent: int = 256, caller: Caller | None = None
    ) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        super().__init__(max_frame)
        self.max_concurrent = max_concurrent
        self.caller = caller
        self.active = 0

    def next_event(self) -> ServerEvent | None:
        """The next event, or ``None`` when more bytes are needed. Rejections and refusals come with their
        error reply already queued; a :class:`~butter.wire.Request` must be answered with :meth:`send_reply`."""
        while (event := self._decoder.next_event()) is not None:
            if isinstance(event, Request):
                return self._request(event)
            if isinstance(event, FrameRejected):
                request_id = CONNECTION_ERROR_ID if event.request_id is None else event.request_id
                self._queue_error(request_id, event.error.code, str(event.error))
                return event
            rejected = ProtocolError("unexpected reply on a connection that carries requests")
            self._queue_error(event.id, rejected.code, str(rejected))
            return FrameRejected(rejected, event.id)
        return None

    def _request(self, request: Request) -> ServerEvent:
        if request.id == CONNECTION_ERROR_ID:
            rejected = ProtocolError(f"request id {CONNECTION_ERROR_ID} is reserved for errors about the connection")
            self._queue_error(CONNECTION_ERROR_ID, rejected.code, str(rejected))
            return FrameRejected(rejected, CONNECTION_ERROR_ID)
        if self.active >= self.max_concurrent:
            message = f"{self.max_concurrent} requests already in progress on this connection"
            self._queue_error(request.id, "overloaded", message)
            return Overloaded(request.id, self.active)
        self.active += 1
        return Request(request.id, request.route, request.body, self.caller)

    def send_reply(self, reply: Reply) -> None:
        """Queue the answer to a request received (exactly one per request). A reply larger than
        ``max_frame`` is replaced by error ``frame-too-large``, one msgpack cannot encode (a handler bug,
        logged) by error ``handler-error``."""
        self.active -= 1
        try:
            self._queue(encode(reply, self.max_frame))
        except FrameTooLarge as exc:
            self._queue_error(reply.id, exc.code, str(exc))
        except Exception as exc:  # a body that is not bytes, an id out of range: a handler bug
            log.error("the reply to request %s cannot be encoded: %s", reply.id, exc)
            self._queue_error(reply.id, "handler-error", "the reply could not be encoded")


class ClientChannel(Channel):
    """The side that sends requests and receives their replies, multiplexed by id.

    ``peer`` names the other end in the messages of errors made up here (default ``"the peer"``).
    """

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME, *, peer: str = "the peer") -> None:
        super().__init__(max_frame)
        self.peer = peer
        self._ids = itertools.count(1)
        self._in_flight: set[int] = set()

    @property
    def in_flight(self) -> int:
        """Requests sent whose reply has not arrived and that were not forgotten."""
        return len(self._in_flight)

    def send_request(self, route: str, body: bytes) -> int:
        """Queue a request for ``route`` carrying ``body`` (bytes); return its id. Raises
        :class:`~butter.errors.FrameTooLarge` (nothing queued) when it exceeds ``max_frame``."""
        request_id = next(self._ids)
        self._queue(encode(Request(request_id, route, body), self.max_frame))
        self._in_flight.add(request_id)
        return request_id

    def forget(self, request_id: int) -> None:
        """Stop waiting for ``request_id`` (its caller gave up); a reply arriving later is dropped."""
        self._in_flight.discard(request_id)

    def next_event(self) -> ClientEvent | None:
        """The next event, or ``None`` when more bytes are needed. A :class:`~butter.wire.Reply` always
        answers a request in flight, which is then no longer in flight."""
        while (event := self._decoder.next_event()) is not None:
            matched = self._match(event)
            if matched is not None:
                return matched
        return None

    def _match(self, event: Message | FrameRejected) -> ClientEvent | None:
        if isinstance(event, Reply):
            if event.id in self._in_flight:
                self._in_flight.remove(event.id)
                return event
            if event.id == CONNECTION_ERROR_ID:
                if event.error is not None:
                    return ChannelError(event.error)
                return FrameRejected(ProtocolError("a reply with the reserved id 0 must be an error"), 0)
            return None  # the reply to a request whose caller gave up
        if isinstance(event, FrameRejected):
            if event.request_id is not None and event.request_id in self._in_flight:
                self._in_flight.remove(event.request_id)
                message = f"malformed reply from {self.peer}: {event.error}"
                return Reply(event.request_id, error=ErrorInfo(event.error.code, message))
            return event  # unmatched, e.g. a reply over max_frame: its request will time out
        return FrameRejected(ProtocolError("unexpected request on a connection that carries replies"), event.id)
