"""Conformance kits: checks every implementation of a slot must pass (like ``trio.testing.check_two_way_stream``).

A transport author runs them with pytest on asyncio and trio::

    import pytest
    from butter.testing.conformance import TRANSPORT_CHECKS

    @pytest.mark.anyio
    @pytest.mark.parametrize("check", TRANSPORT_CHECKS, ids=lambda c: c.__name__)
    async def test_conformance(check):
        await check(MyTransportFactory())

A factory is any object with ``make(max_frame: int) -> Transport`` (a fresh, unstarted transport that
listens on loopback) and ``unused_address() -> PeerAddress`` (an address where nobody listens). A factory
whose transports authenticate their peers sets ``authenticates = True`` and gives each transport a
``node_id`` attribute: then :func:`check_caller` insists that every request carries its sender's id.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Protocol

import anyio

from ..errors import FrameTooLarge, PeerUnreachable, RemoteError, RequestTimeout
from ..peers import PeerAddress
from ..slots import Transport
from ..wire import ErrorInfo, Reply, Request, decode_payload, encode_payload

__all__ = ["TRANSPORT_CHECKS", "TransportFactory", "echo_dispatcher"]

SMALL_FRAME = 64 * 1024


class TransportFactory(Protocol):
    def make(self, max_frame: int) -> Transport: ...

    def unused_address(self) -> PeerAddress: ...


async def echo_dispatcher(request: Request) -> Reply:
    """Routes used by the kit: ``echo`` (body back), ``reverse``, ``fail`` (error reply ``boom``),
    ``slow`` (sleeps the number of seconds in the body, then echoes), ``grow`` (the body repeated 4 times),
    ``caller`` (``{id, addr}``: what the transport said about the sender, ``request.caller``; nil when unknown)."""
    if request.route == "echo":
        return Reply(request.id, request.body)
    if request.route == "reverse":
        return Reply(request.id, request.body[::-1])
    if request.route == "fail":
        return Reply(request.id, error=ErrorInfo("boom", "asked to fail"))
    if request.route == "slow":
        await anyio.sleep(float(request.body.decode()))
        return Reply(request.id, request.body)
    if request.route == "grow":
        return Reply(request.id, request.body * 4)
    if request.route == "caller":
        caller = request.caller
        node_id = caller.node_id if caller is not None else None
        address = caller.address.to_wire() if caller is not None and caller.address is not None else None
        return Reply(request.id, encode_payload({"id": node_id, "addr": address}))
    return Reply(request.id, error=ErrorInfo("unknown-route", request.route))


@asynccontextmanager
async def _pair(factory: TransportFactory, max_frame: int = SMALL_FRAME) -> AsyncIterator[
    tuple[Transport, PeerAddress, Transport, PeerAddress, anyio.abc.TaskGroup]
]:
    async with anyio.create_task_group() as tg:
        a, b = factory.make(max_frame), factory.make(max_frame)
        address_a = await tg.start(a.serve, echo_dispatcher)
        address_b = await tg.start(b.serve, echo_dispatcher)
        yield a, address_a, b, address_b, tg
        tg.cancel_scope.cancel()


async def check_round_trip(factory: TransportFactory) -> None:
    async with _pair(factory) as (a, address_a, b, address_b, _):
        assert await a.request(address_b, "echo", b"hello", timeout=5) == b"hello"
        assert await b.request(address_a, "reverse", b"abc", timeout=5) == b"cba"
        assert await a.request(address_b, "echo", b"", timeout=5) == b""
        binary = bytes(range(256)) * 4  # includes 0x1A, which truncated the original's frames
        assert await a.request(address_b, "echo", binary, timeout=5) == binary


async def check_multiplexing(factory: TransportFactory) -> None:
    """Many requests in flight to one peer; replies arrive out of order and are matched by id."""
    results: dict[int, bytes] = {}
    async with _pair(factory) as (a, _, _b, address_b, _tg):

        async def one(i: int) -> None:
            delay = f"{(i % 5) / 100:.2f}".encode()
            results[i] = await a.request(address_b, "slow", delay, timeout=10)

        async with anyio.create_task_group() as tg:
            for i in range(100):
                tg.start_soon(one, i)
    assert results == {i: f"{(i % 5) / 100:.2f}".encode() for i in range(100)}


async def check_error_reply(factory: TransportFactory) -> None:
    async with _pair(factory) as (a, _, _b, address_b, _):
        try:
            await a.request(address_b, "fail", b"", timeout=5)
        except RemoteError as exc:
            assert exc.code == "boom"
        else:
            raise AssertionError("an error reply must raise RemoteError")
        assert await a.request(address_b, "echo", b"still serving", timeout=5) == b"still serving"


async def check_unreachable(factory: TransportFactory) -> None:
    async with _pair(factory) as (a, *_):
        with anyio.fail_after(10):
            try:
                await a.request(factory.unused_address(), "echo", b"x", timeout=5)
            except PeerUnreachable:
                pass
            else:
                raise AssertionError("a request to a dead address must raise PeerUnreachable")


async def check_timeout(factory: TransportFactory) -> None:
    async with _pair(factory) as (a, _, _b, address_b, _):
        start = anyio.current_time()
        try:
            await a.request(address_b, "slow", b"5", timeout=0.2)
        except RequestTimeout:
            assert anyio.current_time() - start < 3
        else:
            raise AssertionError("a slow reply must raise RequestTimeout")
        assert await a.request(address_b, "echo", b"after", timeout=5) == b"after"


async def check_frame_limits(factory: TransportFactory) -> None:
    """An oversized request fails locally; an oversized reply comes back as error ``frame-too-large``."""
    async with _pair(factory, max_frame=SMALL_FRAME) as (a, _, _b, address_b, _):
        try:
            await a.request(address_b, "echo", b"x" * (SMALL_FRAME + 1), timeout=5)
        except FrameTooLarge:
            pass
        else:
            raise AssertionError("an oversized request must raise FrameTooLarge")
        try:
            await a.request(address_b, "grow", b"y" * (SMALL_FRAME // 2), timeout=5)
        except RemoteError as exc:
            assert exc.code == "frame-too-large"
        else:
            raise AssertionError("an oversized reply must come back as an error")
        assert await a.request(address_b, "echo", b"z" * 1000, timeout=5) == b"z" * 1000


async def check_large_body(factory: TransportFactory) -> None:
    body = bytes(range(256)) * 4096  # 1 MiB
    async with _pair(factory, max_frame=4 * 1024 * 1024) as (a, _, _b, address_b, _):
        assert await a.request(address_b, "echo", body, timeout=10) == body


async def check_caller(factory: TransportFactory) -> None:
    """The dispatcher learns who sent each request (``request.caller``): a node id only if it is the sender's
    own (required when the factory ``authenticates``), and an address, if any, on the sender's host."""
    async with _pair(factory) as (a, address_a, b, address_b, _):
        for sender, address_sender, receiver_address in ((a, address_a, address_b), (b, address_b, address_a)):
            seen = decode_payload(await sender.request(receiver_address, "caller", b"", timeout=5))
            expected = getattr(sender, "node_id", None)
            if getattr(factory, "authenticates", False):
                assert isinstance(expected, str) and expected, "an authenticating transport needs a node_id"
                assert seen["id"] == expected, f"the dispatcher saw caller {seen['id']!r}, not {expected!r}"
            else:
                assert seen["id"] is None or seen["id"] == expected, f"caller {seen['id']!r} is not the sender"
            if seen["addr"] is not None:
                assert PeerAddress.from_wire(seen["addr"]).host == address_sender.host, seen["addr"]
        if getattr(factory, "authenticates", False):
            assert getattr(a, "node_id", None) != getattr(b, "node_id", None), "two transports, one id"


async def check_peer_stops_mid_request(factory: TransportFactory) -> None:
    """A peer that stops while a request is open makes it fail with PeerUnreachable, not hang."""
    async with anyio.create_task_group() as outer:
        a, b = factory.make(SMALL_FRAME), factory.make(SMALL_FRAME)
        await outer.start(a.serve, echo_dispatcher)
        b_scope = anyio.CancelScope()

        async def serve_b(*, task_status: anyio.abc.TaskStatus[PeerAddress]) -> None:
            with b_scope:
                await b.serve(echo_dispatcher, task_status=task_status)

        address_b = await outer.start(serve_b)
        outcome: list[BaseException] = []

        async def ask() -> None:
            try:
                await a.request(address_b, "slow", b"10", timeout=8)
            except (PeerUnreachable, RequestTimeout) as exc:
                outcome.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(ask)
            await anyio.sleep(0.2)
            b_scope.cancel()
        assert outcome and isinstance(outcome[0], PeerUnreachable), outcome
        outer.cancel_scope.cancel()


TRANSPORT_CHECKS: list[Callable[[TransportFactory], Awaitable[None]]] = [
    check_round_trip,
    check_multiplexing,
    check_error_reply,
    check_unreachable,
    check_timeout,
    check_frame_limits,
    check_large_body,
    check_caller,
    check_peer_stops_mid_request,
]
