"""The ``memory`` transport: in-process request/response with the same semantics as TCP.

Nodes on one :class:`MemoryNetwork` reach each other by :class:`~butter.peers.PeerAddress`
``(network name, port)``. Requests and replies keep the wire's rules: the frame limit is checked on both
sides, an unknown address is :class:`~butter.errors.PeerUnreachable`, a node that stops while a request
is open makes that request fail with ``PeerUnreachable``, and handlers run in the serving node's task group.
Optional ``latency`` (seconds, each way) and ``loss`` (probability a request is lost, so it times out) model
links for simulation.
"""

from __future__ import annotations

import itertools
import random
import weakref
from typing import ClassVar

import anyio
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectSendStream
from pydantic import BaseModel, ConfigDict, Field

from ..errors import ButterConfigError, FrameTooLarge, PeerUnreachable, RemoteError, RequestTimeout
from ..hookspecs import hookimpl
from ..peers import PeerAddress
from ..slots import Dispatcher
from ..wire import ErrorInfo, Reply, Request, encode

__all__ = ["MemoryNetwork", "MemoryTransport", "MemoryTransportPlugin"]

_Inbox = MemoryObjectSendStream[tuple[Request, MemoryObjectSendStream[Reply]]]


class MemoryNetwork:
    """A set of in-process listeners. Get a shared one by name with :meth:`named`.

    ``latency`` is seconds added each way; ``loss`` the probability (0 to 1) that a request is dropped;
    ``seed`` makes the loss deterministic.
    """

    _named: ClassVar[weakref.WeakValueDictionary[str, MemoryNetwork]] = weakref.WeakValueDictionary()

    def __init__(self, name: str = "memory", *, latency: float = 0.0, loss: float = 0.0, seed: int | None = None):
        self.name = name
        self.latency = latency
        self.loss = loss
        self._random = random.Random(seed)
        self._listeners: dict[PeerAddress, _Inbox] = {}
        self._ports = itertools.count(1)

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

    def _bind(self, port: int, inbox: _Inbox) -> PeerAddress:
        if port == 0:
            port = next(p for p in self._ports if PeerAddress(self.name, p) not in self._listeners)
        address = PeerAddress(self.name, port)
        if address in self._listeners:
            raise ButterConfigError(f"memory address {address} is already in use")
        self._listeners[address] = inbox
        return address

    def _lost(self) -> bool:
        return self.loss > 0 and self._random.random() < self.loss


class MemoryTransport:
    """A :class:`~butter.slots.Transport` on a :class:`MemoryNetwork`."""

    def __init__(self, network: MemoryNetwork, *, port: int = 0, max_frame: int, inbox: int = 1024) -> None:
        self.network = network
        self.port = port
        self.max_frame = max_frame
        self.inbox = inbox
        self._ids = itertools.count(1)
        self._serving = False

    async def serve(self, dispatch: Dispatcher, *, task_status: TaskStatus[PeerAddress]) -> None:
        send, receive = anyio.create_memory_object_stream[tuple[Request, MemoryObjectSendStream[Reply]]](
            self.inbox
        )
        address = self.network._bind(self.port, send)
        self._serving = True
        try:
            async with anyio.create_task_group() as tg, receive:
                task_status.started(address)
                async for request, reply_to in receive:
                    tg.start_soon(self._answer, dispatch, request, reply_to)
        finally:
            self._serving = False
            self.network._listeners.pop(address, None)
            send.close()

    async def _answer(self, dispatch: Dispatcher, request: Request, reply_to: MemoryObjectSendStream[Reply]) -> None:
        async with reply_to:
            reply = await dispatch(request)
            try:
                encode(reply, self.max_frame)
            except FrameTooLarge as exc:
                reply = Reply(request.id, error=ErrorInfo(exc.code, str(exc)))
            if self.network.latency:
                await anyio.sleep(self.network.latency)
            try:
                reply_to.send_nowait(reply)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass  # the caller gave up (timeout or cancellation)

    async def request(self, address: PeerAddress, route: str, body: bytes, *, timeout: float) -> bytes:
        if not self._serving:
            raise PeerUnreachable("transport is not serving (the node is not started or has stopped)")
        request = Request(next(self._ids), route, body)
        encode(request, self.max_frame)  # raises FrameTooLarge before anything is sent
        reply_send, reply_receive = anyio.create_memory_object_stream[Reply](1)
        try:
            with anyio.fail_after(timeout), reply_receive:
                if self.network.latency:
                    await anyio.sleep(self.network.latency)
                inbox = self.network._listeners.get(address)
                if inbox is None:
                    raise PeerUnreachable(f"no peer listening at {address}")
                if self.network._lost():
                    reply_send.close()
                    await anyio.sleep_forever()
                try:
                    await inbox.send((request, reply_send))
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    raise PeerUnreachable(f"peer at {address} stopped") from None
                try:
                    reply = await reply_receive.receive()
                except anyio.EndOfStream:
                    raise PeerUnreachable(f"peer at {address} stopped before replying") from None
        except TimeoutError:
            raise RequestTimeout(f"no reply from {address} to {route!r} within {timeout} s") from None
        if reply.error is not None:
            raise RemoteError(reply.error.code, reply.error.message)
        return reply.body


class MemoryTransportPlugin:
    """Entry point ``butter.transport:memory``."""

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")
        network: str = Field("default", description="name of the in-process network to join")
        inbox: int = Field(1024, ge=1, description="requests queued at a node before senders wait")

    def __init__(self, options: Options) -> None:
        self.options = options

    @hookimpl
    def butter_transport(self, node: object) -> MemoryTransport:
        settings = node.settings  # type: ignore[attr-defined]
        return MemoryTransport(
            MemoryNetwork.named(self.options.network),
            port=settings.port,
            max_frame=settings.max_frame,
            inbox=self.options.inbox,
        )
