import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

import butter
from butter import RemoteError, RouteError, RouteRequest
from butter.node import SENDER_MISMATCH
from butter.settings import ButterSettings
from butter.wire import Request, decode_payload, encode_payload

pytestmark = pytest.mark.anyio
MakeSettings = Callable[..., ButterSettings]


async def test_request_reply_and_builtin_routes(memory_settings: MakeSettings) -> None:
    async with butter.open_node(memory_settings()) as a, butter.open_node(memory_settings()) as b:

        @a.route("reverse")
        async def reverse(request: RouteRequest) -> bytes:
            assert request.node is a and request.route == "reverse"
            return request.body[::-1]

        assert await b.request(a.address, "reverse", b"olleh") == b"hello"
        assert await b.request(str(a.address), "reverse", b"") == b""
        ping = decode_payload(await b.request(a.address, "ping"))
        assert ping == {"id": a.node_id, "addr": a.address.to_wire()}
        info = butter.PeerInfo.from_wire(decode_payload(await b.request(a.address, "host-quality")))
        assert info.node_id == a.node_id and info.quality.uptime > 0
        assert set(a.routes) >= {"ping", "host-quality", "known-hosts", "reverse"}


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

        @a.route("wrong-type")
        async def wrong_type(request: RouteRequest) -> Any:
            return "a str, not bytes"

        for route, code in [("nope", "unknown-route"), ("explode", "handler-error"), ("refuse", "not-here"),
                            ("wrong-type", "handler-error")]:
            with pytest.raises(RemoteError) as info:
                await b.request(a.address, route, b"x")
            assert info.value.code == code
        assert "kaboom" in caplog.text and "explode" in caplog.text
        assert a.stats.error_replies == 4
        assert decode_payload(await b.request(a.address, "ping"))["id"] == a.node_id


async def test_unreachable_peer(memory_settings: MakeSettings) -> None:
    async with butter.open_node(memory_settings()) as a:
        with pytest.raises(butter.PeerUnreachable):
            await a.request(butter.PeerAddress(a.address.host, 9999), "ping")
        assert a.stats.requests_failed == 1


async def test_client_behaviour_runs_and_failure_is_contained(
    memory_settings: MakeSettings, caplog: pytest.LogCaptureFixture
) -> None:
    ran = anyio.Event()
    async with butter.open_node(memory_settings()) as a:

        @a.behaviour
        async def broken(node: butter.Node) -> None:
            raise RuntimeError("behaviour broke")

        @a.behaviour
        async def works(node: butter.Node) -> None:
            assert node is a
            ran.set()

        with anyio.fail_after(5):
            await ran.wait()
        assert "behaviour broke" in caplog.text
        assert decode_payload(await a.request(a.address, "ping"))["id"] == a.node_id


class RecordingPersistence:
    """A persistence slot registered through pluggy directly; records the graceful-exit hand-off."""

    def __init__(self) -> None:
        self.handed_off = False

    def available_storage(self) -> int:
        return 12345

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        task_status.started()

    async def hand_off(self) -> None:
        await anyio.sleep(0.05)
        self.handed_off = True

    @butter.hookimpl
    def butter_persistence(self, node: butter.Node) -> "RecordingPersistence":
        return self


async def test_graceful_exit_finishes_open_requests_and_hands_off(memory_settings: MakeSettings) -> None:
    persistence = RecordingPersistence()
    results: list[object] = []
    async with butter.open_node(memory_settings()) as b:
        async with butter.open_node(memory_settings(), plugins=(persistence,)) as a:
            assert a.quality().available_storage == 12345

            @a.route("slow")
            async def slow(request: RouteRequest) -> bytes:
                await anyio.sleep(0.3)
                return b"done"

            async def ask() -> None:
                results.append(await b.request(a.address, "slow"))

            b.task_group.start_soon(ask)
            await anyio.sleep(0.05)
            await a.aclose()
            assert a.closing
            await a.aclose()  # twice is harmless
        assert persistence.handed_off
        assert results == [b"done"]
        with pytest.raises(butter.PeerUnreachable):
            await b.request(a.address, "ping")


async def test_identity_persists_in_data_dir(memory_settings: MakeSettings, tmp_path: Path) -> None:
    async with butter.open_node(memory_settings(data_dir=tmp_path)) as a:
        first = a.node_id
    async with butter.open_node(memory_settings(data_dir=tmp_path)) as a:
        assert a.node_id == first
    assert (tmp_path / "node_key.pem").stat().st_mode & 0o777 == 0o600
    async with butter.open_node(memory_settings()) as other:
        assert other.node_id != first


async def test_event_hooks_see_peers(memory_settings: MakeSettings) -> None:
    seen: list[str] = []

    class Observer:
        @butter.hookimpl
        def butter_peer_discovered(self, node: butter.Node, peer: butter.PeerInfo) -> None:
            seen.append(peer.node_id)

    async with butter.open_node(memory_settings()) as a:
        async with butter.open_node(memory_settings(peers=[str(a.address)]), plugins=(Observer(),)) as b:
            with anyio.fail_after(5):
                while not seen:
                    await anyio.sleep(0.01)
            assert seen == [a.node_id]
            assert [p.node_id for p in b.hosts.peers()] == [a.node_id]


async def test_route_name_validation(memory_settings: MakeSettings) -> None:
    async with butter.open_node(memory_settings()) as a:
        with pytest.raises(ValueError):
            a.route("", lambda r: r)  # type: ignore[arg-type,return-value]
        with pytest.raises(ValueError):
            a.route("x" * 129, lambda r: r)  # type: ignore[arg-type,return-value]


async def test_logs_say_what_happened(memory_settings: MakeSettings, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with butter.open_node(memory_settings()) as a:
        pass
    assert f"node {a.node_id[:8]} listening on {a.address}" in caplog.text
    assert "leaving" in caplog.text


async def test_bind_conflict_reaches_the_caller(memory_settings: MakeSettings) -> None:
    async with butter.open_node(memory_settings(port=7)) as a:
        assert a.address.port == 7
        with pytest.raises(butter.ButterConfigError, match="already in use"):
            async with butter.open_node(memory_settings(port=7)):
                pass


async def test_closing_does_not_cancel_the_callers_code(memory_settings: MakeSettings) -> None:
    async with butter.open_node(memory_settings()) as a:
        await a.aclose()
        await anyio.sleep(0.01)  # would raise Cancelled if aclose() had cancelled this body
        reached = True
    assert reached


def _whoami(node: butter.Node) -> None:
    @node.route("whoami")
    async def whoami(request: RouteRequest) -> bytes:
        remote = request.remote.to_wire() if request.remote is not None else None
        return encode_payload({"id": request.caller_id, "remote": remote})


async def test_handlers_see_the_caller_the_transport_names(memory_settings: MakeSettings) -> None:
    async with butter.open_node(memory_settings()) as a, butter.open_node(memory_settings()) as b:
        _whoami(a)
        seen = decode_payload(await b.request(a.address, "whoami"))
        assert seen == {"id": b.node_id, "remote": b.address.to_wire()}
        # a transport that says nothing about the caller (as third-party ones may): unknown, not refused
        reply = await a._dispatch(Request(1, "whoami", b""))
        assert decode_payload(reply.body) == {"id": None, "remote": None}
        assert RouteRequest(a, "r", b"").caller_id is None  # handlers' own constructions keep working


async def test_a_body_naming_another_sender_is_refused_counted_and_logged_once(
    memory_settings: MakeSettings, caplog: pytest.LogCaptureFixture
) -> None:
    async with butter.open_node(memory_settings()) as a, butter.open_node(memory_settings()) as b:
        posing = encode_payload({"id": "someone-else", "holds": True, "ttl": 60})
        for _ in range(3):
            with pytest.raises(RemoteError) as info:
                await b.request(a.address, "host-quality", posing)
            assert info.value.code == SENDER_MISMATCH and b.node_id in info.value.message
        assert a.quality().known_by == 0 and a.stats.sender_mismatches == 3
        assert len([r for r in caplog.records if "refused route 'host-quality'" in r.getMessage()]) == 1
        other = butter.PeerInfo("someone-else", b.address, butter.HostQuality(), 0.0).to_wire()
        with pytest.raises(RemoteError, match=SENDER_MISMATCH):
            await b.request(a.address, "known-hosts", encode_payload({"from": other, "sample": []}))
        await b.request(a.address, "host-quality", encode_payload({"id": b.node_id, "holds": True, "ttl": 60}))
        assert a.quality().known_by == 1  # the honest path
        # unauthenticated (no caller known): the body is taken at its word, as before
        reply = await a._dispatch(Request(2, "host-quality", posing))
        assert reply.ok and a.quality().known_by == 2 and a.stats.sender_mismatches == 4
