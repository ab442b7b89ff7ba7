"""The route table (:mod:`butter._routes`) and the core routes (``ping``, ``fetch-block``, ``store``): error
replies, the caller handlers see, sender checks, and hostile bodies answered ``bad-request``."""

from collections.abc import Callable
from typing import Any, cast

import anyio
import pytest

import butter
from butter import SENDER_MISMATCH, RemoteError, RouteError, RouteRequest
from butter._routes import NodeStats, RouteTable
from butter.blocks import block_id_of, chunk
from butter.errors import ProtocolError
from butter.settings import ButterSettings
from butter.wire import Caller, Reply, Request, decode_payload, encode_payload

pytestmark = pytest.mark.anyio
MakeSettings = Callable[..., ButterSettings]


async def test_bad_routes_get_error_replies_and_node_keeps_serving(
    memory_settings: MakeSettings, caplog: pytest.LogCaptureFixture
) -> None:
    async with butter.open_node(memory_settings()) as a, butter.open_node(memory_settings()) as b:

        @a.route("explode")
        async def explode(request: RouteRequest) -> bytes:
            raise ValueError("kaboom")

        @a.route("refuse")
        async def refuse(request: RouteRequest) -> bytes:
            raise RouteError("not-here", "go away")

        @a.route("undecodable")
        async def undecodable(request: RouteRequest) -> bytes:
            raise ProtocolError("no sense in it")

        @a.route("wrong-type")
        async def wrong_type(request: RouteRequest) -> Any:
            return "a str, not bytes"

        for route, code in [("nope", "unknown-route"), ("explode", "handler-error"), ("refuse", "not-here"),
                            ("undecodable", "bad-request"), ("wrong-type", "handler-error")]:
            with pytest.raises(RemoteError) as info:
                await b.request(a.address, route, b"x")
            assert info.value.code == code
        assert "kaboom" in caplog.text and "explode" in caplog.text
        assert (a.stats.error_replies, a.stats.requests_served) == (5, 0)
        assert decode_payload(await b.request(a.address, "ping"))["id"] == a.node_id


async def test_route_name_validation(memory_settings: MakeSettings) -> None:
    async with butter.open_node(memory_settings()) as a:
        with pytest.raises(ValueError):
            a.route("", lambda r: r)  # type: ignore[arg-type,return-value]
        with pytest.raises(ValueError):
            a.route("x" * 129, lambda r: r)  # type: ignore[arg-type,return-value]
        with pytest.raises(ValueError):
            a.route("x" * 129)  # the decorator form checks the name at once


class Events:
    """Stands for the node in a bare route table: records what the table emits."""

    def __init__(self) -> None:
        self.emitted: list[tuple[str, dict[str, Any]]] = []

    def emit(self, event: str, **kwargs: Any) -> None:
        self.emitted.append((event, kwargs))


async def test_each_answered_request_is_reported_to_observers() -> None:
    node = Events()
    table = RouteTable(cast(Any, node), NodeStats())

    async def fine(request: RouteRequest) -> bytes:
        return b"ok"

    async def refuse(request: RouteRequest) -> bytes:
        raise RouteError("no-way", "refused")

    table.add("fine", fine)
    table.add("refuse", refuse)
    await table.dispatch(Request(1, "fine", b""))
    await table.dispatch(Request(2, "refuse", b""))
    await table.dispatch(Request(3, "nosuch", b""))  # unregistered: not reported (its name is the caller's)
    assert [(event, kw["route"], kw["error_code"]) for event, kw in node.emitted] == [
        ("butter_request_served", "fine", None), ("butter_request_served", "refuse", "no-way")]
    assert all(kw["seconds"] >= 0 for _, kw in node.emitted)


def test_plain_handlers_are_answered_now_and_async_ones_left_to_dispatch() -> None:
    node = Events()
    stats = NodeStats()
    table = RouteTable(cast(Any, node), stats)

    def plain(request: RouteRequest) -> bytes:
        return request.body[::-1]

    def plain_refusing(request: RouteRequest) -> bytes:
        raise RouteError("no-way", "refused")

    async def waiting(request: RouteRequest) -> bytes:
        return b"later"

    def returns_a_coroutine(request: RouteRequest) -> Any:  # a plain function wrapping an async one
        return waiting(request)

    for name, handler in (("plain", plain), ("plain-refusing", plain_refusing), ("waiting", waiting),
                          ("wrapped", returns_a_coroutine)):
        table.add(name, handler)
    assert table.answer_now(Request(1, "plain", b"abc")) == Reply(1, b"cba")
    refused = table.answer_now(Request(2, "plain-refusing", b""))
    assert refused is not None and refused.error is not None and refused.error.code == "no-way"
    unknown = table.answer_now(Request(3, "nosuch", b""))
    assert unknown is not None and unknown.error is not None and unknown.error.code == "unknown-route"
    assert table.answer_now(Request(4, "waiting", b"")) is None
    assert table.answer_now(Request(5, "wrapped", b"")) is None  # its coroutine closed unstarted
    assert table.answer_now(Request(6, "wrapped", b"")) is None  # and from now on left to dispatch
    assert (stats.requests_served, stats.error_replies) == (1, 2)
    assert [kw["route"] for _, kw in node.emitted] == ["plain", "plain-refusing"]


async def test_dispatch_answers_plain_and_wrapped_handlers_too() -> None:
    table = RouteTable(cast(Any, Events()), NodeStats())

    async def waiting(request: RouteRequest) -> bytes:
        await anyio.sleep(0.01)
        return b"later"

    table.add("plain", lambda request: b"now")
    table.add("wrapped", lambda request: waiting(request))
    assert (await table.dispatch(Request(1, "plain", b""))).body == b"now"
    assert (await table.dispatch(Request(2, "wrapped", b""))).body == b"later"


async def test_plain_routes_over_the_memory_transport_answer_like_async_ones(memory_settings: MakeSettings) -> None:
    async with butter.open_node(memory_settings()) as a, butter.open_node(memory_settings()) as b:
        seen: list[Caller] = []

        @a.route("plain")
        def plain(request: RouteRequest) -> bytes:
            seen.append(request.caller)
            return request.body.upper()

        @a.route("plain-explodes")
        def explodes(request: RouteRequest) -> bytes:
            raise ValueError("kaboom")

        assert await b.request(a.address, "plain", b"hi") == b"HI"
        assert seen[0].node_id == b.node_id
        with pytest.raises(RemoteError) as caught:
            await b.request(a.address, "plain-explodes")
        assert caught.value.code == "handler-error"
        with anyio.CancelScope() as scope:  # a request answered on the spot is still a checkpoint
            scope.cancel()
            await b.request(a.address, "plain", b"x")
        assert scope.cancelled_caught
        assert len(seen) == 2  # answered, though the last sender was gone before the reply


async def test_a_leaving_table_answers_shutting_down_after_the_open_requests() -> None:
    stats = NodeStats()
    table = RouteTable(cast(Any, Events()), stats)
    release = anyio.Event()

    async def slow(request: RouteRequest) -> bytes:
        await release.wait()
        return b"done"

    table.add("slow", slow)
    replies: list[butter.wire.Reply] = []
    drained = anyio.Event()

    async def ask() -> None:
        replies.append(await table.dispatch(Request(1, "slow", b"")))

    async def drain() -> None:
        await table.drain()
        drained.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(ask)
        await anyio.sleep(0.01)
        tg.start_soon(drain)
        await anyio.sleep(0.01)
        refused = await table.dispatch(Request(2, "slow", b""))
        assert refused.error is not None and refused.error.code == "shutting-down"
        assert not drained.is_set()
        release.set()
    assert drained.is_set() and replies[0].body == b"done" and stats.requests_served == 1


async def test_a_held_table_answers_starting_until_opened_and_never_reopens_once_leaving() -> None:
    table = RouteTable(cast(Any, Events()), NodeStats())

    async def echo(request: RouteRequest) -> bytes:
        return request.body

    table.add("echo", echo)
    table.hold()
    held = await table.dispatch(Request(1, "echo", b"x"))
    assert held.error is not None and held.error.code == "starting"
    table.open()
    assert (await table.dispatch(Request(2, "echo", b"x"))).body == b"x"
    table.refuse()
    table.open()  # a node that starts leaving before it is ready stays leaving
    refused = await table.dispatch(Request(3, "echo", b"x"))
    assert refused.error is not None and refused.error.code == "shutting-down"


def _whoami(node: butter.Node) -> None:
    @node.route("whoami")
    async def whoami(request: RouteRequest) -> bytes:
        address = request.caller.address.to_wire() if request.caller.address is not None else None
        return encode_payload({"id": request.caller.node_id, "address": address})


async def test_handlers_see_the_caller_the_transport_names(memory_settings: MakeSettings) -> None:
    async with butter.open_node(memory_settings()) as a, butter.open_node(memory_settings()) as b:
        _whoami(a)
        seen = decode_payload(await b.request(a.address, "whoami"))
        assert seen == {"id": b.node_id, "address": b.address.to_wire()}
        # a transport that says nothing about the caller (as third-party ones may): unknown, not refused
        reply = await a._route_table.dispatch(Request(1, "whoami", b""))
        assert decode_payload(reply.body) == {"id": None, "address": None}
        assert RouteRequest(a, "r", b"").caller == Caller()  # handlers' own constructions keep working


async def test_a_body_naming_another_sender_is_refused_counted_and_logged_once(
    memory_settings: MakeSettings, caplog: pytest.LogCaptureFixture
) -> None:
    claims: list[str] = []
    async with butter.open_node(memory_settings()) as a, butter.open_node(memory_settings()) as b:

        @a.route("claim")
        async def claim(request: RouteRequest) -> bytes:
            request.check_sender(request.body.decode())
            claims.append(request.body.decode())
            return b""

        for _ in range(3):
            with pytest.raises(RemoteError) as info:
                await b.request(a.address, "claim", b"someone-else")
            assert info.value.code == SENDER_MISMATCH and b.node_id in info.value.message
        assert a.stats.sender_mismatches == 3 and claims == []
        assert len([r for r in caplog.records if "refused route 'claim'" in r.getMessage()]) == 1
        await b.request(a.address, "claim", b.node_id.encode())  # the honest path
        # unauthenticated (no caller known): the body is taken at its word
        reply = await a._route_table.dispatch(Request(2, "claim", b"someone-else"))
        assert reply.ok and claims == [b.node_id, "someone-else"] and a.stats.sender_mismatches == 3


class KeepingPersistence:
    """A persistence slot that only records what it is asked to keep."""

    def __init__(self) -> None:
        self.kept: list[str] = []

    def available_storage(self) -> int:
        return 0

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        task_status.started()

    async def keep(self, content_id: str) -> None:
        self.kept.append(content_id)

    async def hand_off(self) -> None:
        pass

    @butter.hookimpl
    def butter_persistence(self, node: butter.Node) -> "KeepingPersistence":
        return self


async def test_the_store_route_uploads_an_item_and_persistence_keeps_it(memory_settings: MakeSettings) -> None:
    persistence = KeepingPersistence()
    item = chunk(b"hello " * 1000, block_size=1024)
    async with butter.open_node(memory_settings(), plugins=(persistence,)) as a, \
            butter.open_node(memory_settings()) as b:
        assert await b.request(a.address, "store", encode_payload({"blocks": list(item.blocks.values())})) == b""
        reply = await b.request(a.address, "store", encode_payload({"manifest": item.manifest_block}))
        assert decode_payload(reply) == {"cid": item.content_id} and persistence.kept == [item.content_id]
        for block_id, block in item.all_blocks.items():
            assert await b.fetch_block(a.address, block_id) == block
        with pytest.raises(RemoteError) as info:
            await a.request(b.address, "store", encode_payload({"blocks": []}))
        assert info.value.code == "unknown-route"  # b keeps nothing: it serves no store route
        with pytest.raises(RemoteError) as info:
            await b.request(a.address, "fetch-block", encode_payload({"block_id": block_id_of(b"absent")}))
        assert info.value.code == "not-found"


HOSTILE = [
    ("ping", encode_payload(1)),
    ("ping", encode_payload([{"id": 1}])),
    ("ping", b"\xc1"),
    ("fetch-block", b""),
    ("fetch-block", encode_payload({})),
    ("fetch-block", encode_payload({"block_id": 1})),
    ("fetch-block", encode_payload({"block_id": "AB" * 32})),
    ("fetch-block", encode_payload({"blocks": 1})),
    ("store", b""),
    ("store", encode_payload({"blocks": 1})),
    ("store", encode_payload({"blocks": [1]})),
    ("store", encode_payload({"blocks": "abc"})),
    ("store", encode_payload({"manifest": 5})),
    ("store", encode_payload({"manifest": b"not a manifest"})),
    ("store", encode_payload([b"block"])),
]


@pytest.mark.parametrize(("route", "body"), HOSTILE, ids=[f"{r}-{i}" for i, (r, _) in enumerate(HOSTILE)])
async def test_mistyped_core_route_bodies_are_bad_requests(
    memory_settings: MakeSettings, route: str, body: bytes
) -> None:
    async with butter.open_node(memory_settings(), plugins=(KeepingPersistence(),)) as a, \
            butter.open_node(memory_settings()) as b:
        with pytest.raises(RemoteError) as info:
            await b.request(a.address, route, body)
        assert info.value.code == "bad-request", info.value
        assert decode_payload(await b.request(a.address, "ping", encode_payload({"any": "map"})))["id"] == a.node_id
