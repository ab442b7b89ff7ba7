import logging
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

import butter
from butter import RouteRequest
from butter.settings import ButterSettings, budget_split
from butter.wire import decode_payload

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
        assert a.routes == [  # no persistence: no store
            "delete-item", "fetch-block", "get-document", "get-record", "host-quality", "known-hosts", "ping",
            "put-record", "put-revisions", "reverse"]


async def test_one_budget_split_sizes_known_hosts_and_block_storage(memory_settings: MakeSettings) -> None:
    split = budget_split(512 * 1024 * 1024)
    assert (split.known_hosts, split.host_capacity) == (53687, 8947)  # 0.01 %, 6 bytes a host
    assert split.known_hosts + split.storage == 512 * 1024 * 1024
    assert budget_split(2048 * 1024 * 1024).host_capacity == 35791 and budget_split(1).host_capacity == 1
    async with butter.open_node(memory_settings(memory_budget="64MiB")) as a:
        split = budget_split(64 * 1024 * 1024)
        assert (a.hosts.capacity, a.blocks.capacity) == (split.host_capacity, split.storage)


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
