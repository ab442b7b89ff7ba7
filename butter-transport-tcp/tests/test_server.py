"""The serving side with real sockets on 127.0.0.1: hostile bytes, limits and binding.

A raw client (plain anyio stream, no Butter client) sends what a broken or malicious peer would; each time
the server must stay up, answer with an error reply where the protocol allows, and keep serving a
well-behaved client.
"""

from __future__ import annotations

import functools
import re
import socket
from typing import Any

import anyio
import pytest

from butter import load_driver, load_settings
from butter.errors import ButterConfigError, RemoteError
from butter.peers import PeerAddress
from butter.testing.conformance import echo_dispatcher
from butter.wire import Reply, Request, encode, encode_payload
from butter_transport_tcp import TcpTransport

from .helpers import LOOPBACK, connect_plain, header, read_events, serving, tcp_transport, unused_port

pytestmark = pytest.mark.anyio

SMALL = 64 * 1024


def transport(**options: Any) -> TcpTransport:
    """A plaintext transport: these tests speak raw frames to it (the secure channel has its own tests)."""
    options.setdefault("secure", False)
    return tcp_transport(max_frame=SMALL, **options)


async def assert_still_serving(server: PeerAddress) -> None:
    """A fresh, well-behaved client gets an answer."""
    client = transport()
    async with serving(client):
        assert await client.request(server, "echo", b"still here", timeout=5) == b"still here"


def error_of(event: object) -> tuple[int, str]:
    assert isinstance(event, Reply) and event.error is not None, event
    return event.id, event.error.code


async def test_garbage_gets_error_replies_and_the_connection_goes_on() -> None:
    with anyio.fail_after(10):
        server = transport()
        async with serving(server) as address:
            async with await connect_plain(address.port) as raw:
                await raw.send(header(5) + b"\xc1\xc1\xc1\xc1\xc1")  # 0xc1 is never valid msgpack
                await raw.send(header(1) + b"\x01")  # valid msgpack, but not a map
                await raw.send(header(3) + b"\x81\xa1x")  # truncated map inside a whole frame
                bad_version = encode_payload({"v": 2, "id": 9, "route": "echo", "body": b""})
                await raw.send(header(len(bad_version)) + bad_version)
                await raw.send(encode(Reply(4, b"a reply, not a request")))
                await raw.send(encode(Request(7, "echo", b"fine")))
                events = await read_events(raw, 6)
            by_id = sorted((e.id, e.error.code if isinstance(e, Reply) and e.error else "ok") for e in events)
            assert by_id == [
                (0, "protocol-error"), (0, "protocol-error"), (0, "protocol-error"),
                (4, "protocol-error"), (7, "ok"), (9, "protocol-error"),
            ]
            assert [e for e in events if e.id == 7] == [Reply(7, b"fine")]
            assert server.stats.frames_rejected == 5
            await assert_still_serving(address)


async def test_text_garbage_is_refused_as_an_oversized_frame() -> None:
    with anyio.fail_after(10):
        server = transport()
        async with serving(server) as address:
            async with await connect_plain(address.port) as raw:
                await raw.send(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n")  # "GET " reads as a ~1.2 GB length
                assert error_of((await read_events(raw, 1))[0]) == (0, "frame-too-large")
            await assert_still_serving(address)


async def test_truncated_frame_then_disconnect() -> None:
    with anyio.fail_after(10):
        server = transport()
        async with serving(server) as address:
            async with await connect_plain(address.port) as raw:
                await raw.send(header(100) + b"only ten b")
            await assert_still_serving(address)
            while server.open_connections:  # both clients left; the server let go of their connections
                await anyio.sleep(0.01)
            assert server.stats.connections_accepted == 2


async def test_100_mib_header_is_refused_at_once_without_buffering() -> None:
    with anyio.fail_after(10):
        server = transport()
        async with serving(server) as address:
            async with await connect_plain(address.port) as raw:
                await raw.send(header(100 * 1024 * 1024) + b"x" * 1000)
                # The error arrives before the body was sent: the frame is judged by its header.
                assert error_of((await read_events(raw, 1))[0]) == (0, "frame-too-large")
                await raw.send(b"y" * SMALL)
                await anyio.sleep(0.05)
                assert all(c.channel.buffered == 0 for c in server._inbound)
            await assert_still_serving(address)


async def test_oversized_frame_is_skipped_and_the_connection_goes_on() -> None:
    with anyio.fail_after(10):
        server = transport()
        async with serving(server) as address, await connect_plain(address.port) as raw:
            big = 4 * SMALL
            await raw.send(header(big) + b"z" * big + encode(Request(3, "reverse", b"abc")))
            first, second = await read_events(raw, 2)
            assert error_of(first) == (0, "frame-too-large")
            assert second == Reply(3, b"cba")


async def test_requests_are_answered_after_the_client_half_closes() -> None:
    with anyio.fail_after(10):
        server = transport()
        async with serving(server) as address, await connect_plain(address.port) as raw:
            await raw.send(encode(Request(1, "slow", b"0.2")) + encode(Request(2, "echo", b"e")))
            await raw.send_eof()
            events = await read_events(raw, 2)
            assert sorted(events, key=lambda e: e.id) == [Reply(1, b"0.2"), Reply(2, b"e")]
            with pytest.raises(anyio.EndOfStream):  # then the server closes its side
                await raw.receive()


async def test_slow_handler_does_not_block_the_connection() -> None:
    with anyio.fail_after(10):
        server, client = transport(), transport()
        async with serving(server) as address, serving(client):
            async with anyio.create_task_group() as tg:
                tg.start_soon(functools.partial(client.request, address, "slow", b"3", timeout=5))
                await anyio.sleep(0.05)
                start = anyio.current_time()
                assert await client.request(address, "echo", b"quick", timeout=5) == b"quick"
                assert anyio.current_time() - start < 1
                assert client.stats.connections_opened == 1  # both went over the same connection
                tg.cancel_scope.cancel()


async def test_too_many_concurrent_requests_are_answered_overloaded() -> None:
    with anyio.fail_after(10):
        server, client = transport(max_concurrent_requests=2), transport()
        outcomes: list[str] = []

        async def ask() -> None:
            try:
                outcomes.append((await client.request(address, "slow", b"0.3", timeout=5)).decode())
            except RemoteError as exc:
                outcomes.append(exc.code)

        async with serving(server) as address, serving(client):
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(ask)
        assert sorted(outcomes) == ["0.3", "0.3", "overloaded"]
        assert server.stats.requests_overloaded == 1


async def test_requests_held_by_their_handlers_never_hold_up_the_next_ones() -> None:
    # Answering tasks are reused (a few wait for the next request): after sequential requests leave idle
    # ones behind, more requests blocked in their handler than there are idle tasks must not delay a later
    # request, which here is the one that releases them.
    released = anyio.Event()
    waiting = 0

    async def dispatch(request: Request) -> Reply:
        nonlocal waiting
        if request.route == "wait":
            waiting += 1
            await released.wait()
        elif request.route == "release":
            released.set()
        return Reply(request.id, request.body)

    with anyio.fail_after(30):
        server, client = transport(), transport()
        async with serving(server, dispatch) as address, serving(client):
            for i in range(5):
                assert await client.request(address, "echo", b"%d" % i, timeout=30) == b"%d" % i
            answers: list[bytes] = []

            async def wait() -> None:
                answers.append(await client.request(address, "wait", b"w", timeout=30))

            async with anyio.create_task_group() as tg:
                for _ in range(6):
                    tg.start_soon(wait)
                while waiting < 6:
                    await anyio.sleep(0.01)
                assert await client.request(address, "release", b"r", timeout=30) == b"r"
            assert answers == [b"w"] * 6
            assert client.stats.connections_opened == 1


async def test_connection_cap_refuses_extra_incoming_connections() -> None:
    with anyio.fail_after(10):
        server = transport(max_connections=2)
        async with serving(server) as address:
            first = await connect_plain(address.port)
            second = await connect_plain(address.port)
            async with first, second:
                for i, raw in enumerate((first, second), start=1):
                    await raw.send(encode(Request(i, "echo", b"in")))
                    assert await read_events(raw, 1) == [Reply(i, b"in")]
                async with await connect_plain(address.port) as third:
                    await third.send(encode(Request(3, "echo", b"over the cap")))
                    with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                        await read_events(third, 1)
                assert server.stats.connections_refused == 1
                await first.send(encode(Request(4, "echo", b"still served")))
                assert await read_events(first, 1) == [Reply(4, b"still served")]


async def test_bind_to_a_port_in_use_raises_config_error() -> None:
    with anyio.fail_after(5), socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with anyio.create_task_group() as tg:
            with pytest.raises(ButterConfigError, match=re.escape(f"127.0.0.1:{port}")):
                await tg.start(tcp_transport(port=port).serve, echo_dispatcher)


async def test_bind_to_an_address_not_on_this_machine_raises_config_error() -> None:
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            with pytest.raises(ButterConfigError, match=re.escape("192.0.2.1:")):  # TEST-NET-1: never a local address
                await tg.start(tcp_transport(host="192.0.2.1", port=unused_port()).serve, echo_dispatcher)


async def test_serve_reports_the_bound_port_and_the_advertise_host() -> None:
    with anyio.fail_after(5):
        plain = transport()
        async with serving(plain) as address:
            assert address.host == LOOPBACK and address.port > 0 and plain.address == address
        assert plain.address is None
        advertised = tcp_transport(advertise_host="203.0.113.7")
        async with serving(advertised) as address:
            assert address.host == "203.0.113.7" and address.port > 0


async def test_stopping_closes_every_socket() -> None:
    with anyio.fail_after(10):
        server, client = transport(), transport()
        async with serving(server) as address:
            async with serving(client):
                assert await client.request(address, "echo", b"x", timeout=5) == b"x"
                assert client.open_connections == 1
            assert client.open_connections == 0
            while server.open_connections:  # the server saw the client's socket close
                await anyio.sleep(0.01)
        with pytest.raises(OSError):
            await anyio.connect_tcp(LOOPBACK, address.port)  # the listener is gone


@pytest.mark.parametrize(
    ("settings", "options"),
    [({"max_frame": 100}, {}), ({"connect_timeout": 0}, {}), ({}, {"max_connections": 0}), ({}, {"idle_timeout": -1})],
)
def test_invalid_settings_raise_config_error(settings: dict[str, float], options: dict[str, float]) -> None:
    """Each value is validated once, where it is declared: node settings by ButterSettings, the driver's
    options by TcpOptions (through the plugin loader)."""
    with pytest.raises(ButterConfigError):
        load_settings(**settings)
        load_driver("butter.transport", "tcp", options)
