"""The ``memory`` transport: in-process request/response with the same semantics as TCP.

Nodes on one :class:`MemoryNetwork` reach each other by :class:`~butter.peers.PeerAddress`
``(network name, port)``. Requests and replies keep the wire's rules: the frame limit is checked on both
sides, an unknown address (or a node that has stopped) is :class:`~butter.errors.PeerGone`, as a refused TCP
connection is, a node that stops while a request is open makes that request fail with ``PeerUnreachable``,
and handlers run in the serving node's task group.
Optional ``latency`` (seconds, each way) and ``loss`` (probability a request is lost, so it times out) model
links for simulation. Each request reaches the dispatcher with a :class:`~butter.wire.Caller`: the sending
transport's ``node_id`` (the node's own id when built by the plugin; ``None`` when none was given) and its
serving address.
"""

from __future__ import annotations

import itertools
import random
import weakref
from collections import Counter
from typing import ClassVar

import anyio
from anyio.abc import TaskGroup, TaskStatus
from anyio.lowlevel import checkpoint
from pydantic import BaseModel, ConfigDict, Field

from ..errors import ButterConfigError, FrameTooLarge, PeerGone, PeerUnreachable, RemoteError, RequestTimeout
from ..hookspecs import hookimpl
from ..peers import PeerAddress
from ..slots import Dispatcher, ImmediateDispatcher, NodeServices
from ..wire import Caller, ErrorInfo, Reply, Request, encode

__all__ = ["MemoryNetwork", "MemoryTransport", "MemoryTransportPlugin"]


class _ReplySlot:
    """Where a served request's outcome lands: a reply, or the reason there will be none."""

    __slots__ = ("done", "error", "reply")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.reply: Reply | None = None
        self.error: str | None = None


class _Listener:
    """A serving transport as the network sees it: where to spawn handlers for its requests."""

    __slots__ = ("answer_now", "dispatch", "task_group", "transport")

    def __init__(self, transport: MemoryTransport, dispatch: Dispatcher, task_group: TaskGroup) -> None:
        self.transport = transport
        self.dispatch = dispatch
        self.answer_now = dispatch.answer_now if isinstance(dispatch, ImmediateDispatcher) else None
        self.task_group = task_group


class MemoryNetwork:
    """A set of in-process listeners. Get a shared one by name with :meth:`named`.

    ``latency`` is seconds added each way; ``loss`` the probability (0 to 1) that a request is dropped;
    ``seed`` makes the loss deterministic. ``requests`` counts the requests sent on the network by route
    (every call of :meth:`MemoryTransport.request` once it is serving, answered or not), for simulations.
    """

    _named: ClassVar[weakref.WeakValueDictionary[str, MemoryNetwork]] = weakref.WeakValueDictionary()

    def __init__(self, name: str = "memory", *, latency: float = 0.0, loss: float = 0.0, seed: int | None = None):
        self.name = name
        self.latency = latency
        self.loss = loss
        self._random = random.Random(seed)
        self._listeners: dict[PeerAddress, _Listener] = {}
        self._ports = itertools.count(1)
        self.requests: Counter[str] = Counter()

    @classmethod
    def named(cls, name: str) -> MemoryNetwork:
        """The network called ``name``, created on first use and kept while a transport uses it."""
        network = cls._named.get(name)
        if network is None:
            network = cls(name)
            cls._named[name] = network
        return network

    @property
    def addresses(self) -> list[PeerAddress]:
        return sorted(self._listeners)

    def _reserve(self, port: int) -> PeerAddress:
        """A free address (``port`` 0: the next unused); raises ButterConfigError if ``port`` is taken."""
        if port == 0:
            port = next(p for p in self._ports if PeerAddress(self.name, p) not in self._listeners)
        address = PeerAddress(self.name, port)
        if address in self._listeners:
            raise ButterConfigError(f"memory address {address} is already in use")
        return address

    def _lost(self) -> bool:
        return self.loss > 0 and self._random.random() < self.loss


def _upper_bound(reply: Reply) -> int:
    """Bytes ``reply`` takes at most on the wire: its body or error text, 4 bytes a character, and 64 of
    framing (the wire format's fixed keys, id and headers take under 40). Only a reply this could put
    over the frame limit is encoded to check it."""
    if reply.error is None:
        return len(reply.body) + 64
    return 4 * (len(reply.error.code) + len(reply.error.message)) + 64


def _frame_checked(reply: Reply, request: Request, max_frame: int) -> Reply:
    """``reply``, or the ``frame-too-large`` error reply that takes its place when it does not fit."""
    try:
        encode(reply, max_frame)
    except FrameTooLarge as exc:
        return Reply(request.id, error=ErrorInfo(exc.code, str(exc)))
    return reply


def _body(reply: Reply) -> bytes:
    """The body of ``reply``; raises RemoteError for an error reply."""
    if reply.error is not None:
        raise RemoteError(reply.error.code, reply.error.message)
    return reply.body


class MemoryTransport:
    """A :class:`~butter.slots.Transport` on a :class:`MemoryNetwork`.

    A request spawns its handler straight into the serving transport's task group (no queue, no copy of
    the body), which keeps simulations of thousands of nodes cheap; ``inbox`` bounds the requests a node
    handles at once, further ones wait.

    ``node_id`` is the id this transport's requests carry to the receiving dispatcher
    (``request.caller.node_id``). In one process there is no one to authenticate against: the id is taken
    as given, as trustworthy as the code that built the transport. ``None`` (the default): requests carry
    no node id, like plaintext TCP.
    """

    def __init__(
        self, network: MemoryNetwork, *, port: int = 0, max_frame: int, inbox: int = 1024, node_id: str | None = None
    ) -> None:
        self.network = network
        self.port = port
        self.max_frame = max_frame
        self.inbox = inbox
        self.node_id = node_id
        self._ids = itertools.count(1)
        self._serving = False
        self._caller = Caller(node_id)  # what requests from this transport carry; the address is set in serve()
        self._slots = anyio.Semaphore(inbox)

    async def serve(self, dispatch: Dispatcher, *, task_status: TaskStatus[PeerAddress]) -> None:
        address = self.network._reserve(self.port)
        try:
            async with anyio.create_task_group() as tg:
                self.network._listeners[address] = _Listener(self, dispatch, tg)
                self._caller = Caller(self.node_id, address)
                self._serving = True
                task_status.started(address)
                await anyio.sleep_forever()
        finally:
            self._serving = False
            self.network._listeners.pop(address, None)

    async def _answer(self, dispatch: Dispatcher, request: Request, slot: _ReplySlot) -> None:
        try:
            try:
                self._slots.acquire_nowait()  # a free slot: no extra trip through the scheduler
            except anyio.WouldBlock:
                await self._slots.acquire()
            try:
                reply = await dispatch(request)
            finally:
                self._slots.release()
            if _upper_bound(reply) > self.max_frame:
                reply = _frame_checked(reply, request, self.max_frame)
            if self.network.latency:
                await anyio.sleep(self.network.latency)
            slot.reply = reply
        finally:
            if slot.reply is None:
                slot.error = "stopped before replying"
            slot.done.set()

    async def request(self, address: PeerAddress, route: str, body: bytes, *, timeout: float) -> bytes:
        if not self._serving:
            raise PeerUnreachable("transport is not serving (the node is not started or has stopped)")
        self.network.requests[route] += 1
        request = Request(next(self._ids), route, body, self._caller)
        if len(body) + len(route) + 64 > self.max_frame:
            encode(request, self.max_frame)  # raises FrameTooLarge before anything is sent
        if not self.network.latency:
            reply = self._answer_now(address, request)
            if reply is not None:
                await checkpoint()  # a request is a checkpoint, even one answered on the spot
                return _body(reply)
        slot = _ReplySlot()
        try:
            with anyio.fail_after(timeout):
                if self.network.latency:
                    await anyio.sleep(self.network.latency)
                listener = self._listener(address)
                if self.network._lost():
                    await anyio.sleep_forever()
                try:
                    listener.task_group.start_soon(listener.transport._answer, listener.dispatch, request, slot)
                except RuntimeError:  # its task group is closing
                    raise PeerGone(f"peer at {address} stopped") from None
                await slot.done.wait()
        except TimeoutError:
            raise RequestTimeout(f"no reply from {address} to {route!r} within {timeout} s") from None
        if slot.reply is None:
            raise PeerUnreachable(f"peer at {address} {slot.error}")
        return _body(slot.reply)

    def _listener(self, address: PeerAddress) -> _Listener:
        """The live listener at ``address``; raises PeerGone when there is none."""
        listener = self.network._listeners.get(address)
        if listener is None or listener.task_group.cancel_scope.cancel_called:
            raise PeerGone(f"no peer listening at {address}")
        return listener

    def _answer_now(self, address: PeerAddress, request: Request) -> Reply | None:
        """The reply, when the listener at ``address`` can give it on the spot (its route table's
        :meth:`~butter.slots.ImmediateDispatcher.answer_now`, with a free inbox slot and the request not
        lost); ``None``: spawn a handler. Raises PeerGone as :meth:`_listener`. On a lossy network every
        request takes the spawning path, which draws the loss."""
        listener = self._listener(address)
        served = listener.transport
        if listener.answer_now is None or served._slots.value == 0 or self.network.loss:
            return None
        reply = listener.answer_now(request)
        if reply is not None and _upper_bound(reply) > served.max_frame:
            reply = _frame_checked(reply, request, served.max_frame)
        return reply


class MemoryTransportPlugin:
    """Entry point ``butter.transport:memory``."""

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")
        network: str = Field("default", description="name of the in-process network to join")
        inbox: int = Field(1024, ge=1, description="requests a node handles at once; further ones wait")

    def __init__(self, options: Options) -> None:
        self.options = options

    @hookimpl
    def butter_transport(self, node: NodeServices) -> MemoryTransport:
        return MemoryTransport(
            MemoryNetwork.named(self.options.network),
            port=node.settings.port,
            max_frame=node.settings.max_frame,
            inbox=self.options.inbox,
            node_id=node.node_id,
        )
