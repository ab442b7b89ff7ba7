"""The network check over real TCP on 127.0.0.1: nodes of one network talk, nodes of different networks (or
holding different keys) refuse each other, both sides saying why, in TLS and in plaintext."""

from __future__ import annotations

import logging

import anyio
import pytest

import butter
from butter.settings import ButterSettings
from butter_transport_tcp import Network, NetworkRefused

from .helpers import LOOPBACK, accept_plain, connect_plain, serving, tcp_transport

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("secure", [True, False])
async def test_one_network_talks(secure: bool) -> None:
    with anyio.fail_after(10):
        server = tcp_transport(secure=secure, network_id="a", network_key="k")
        client = tcp_transport(secure=secure, network_id="a", network_key="k")
        async with serving(server) as address, serving(client):
            assert await client.request(address, "echo", b"hi", timeout=5) == b"hi"


@pytest.mark.parametrize("secure", [True, False])
async def test_different_networks_refuse_each_other_both_ways(secure: bool, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "butter.transport.tcp")
    with anyio.fail_after(10):
        a, b = tcp_transport(secure=secure, network_id="a"), tcp_transport(secure=secure, network_id="b")
        async with serving(a) as address_a, serving(b) as address_b:
            refused = f"refused peer {address_a}: it is on network 'a', this node on 'b'"
            with pytest.raises(NetworkRefused, match=refused):
                await b.request(address_a, "echo", b"x", timeout=5)
            with pytest.raises(NetworkRefused, match="it is on network 'b', this node on 'a'"):
                await a.request(address_b, "echo", b"x", timeout=5)
            while a.stats.networks_refused < 2 or b.stats.networks_refused < 2:  # each side, in either role
                await anyio.sleep(0.01)
            assert a.stats.requests_served == b.stats.requests_served == 0
    lines = [r.getMessage() for r in caplog.records if "refused peer" in r.getMessage()]
    assert any("it is on network 'b', this node on 'a'" in line for line in lines)  # a, as the server
    assert any("it is on network 'a', this node on 'b'" in line for line in lines)  # b, as the server


@pytest.mark.parametrize("secure", [True, False])
async def test_a_wrong_or_missing_key_is_refused(secure: bool) -> None:
    with anyio.fail_after(10):
        server = tcp_transport(secure=secure, network_key="right")
        wrong = tcp_transport(secure=secure, network_key="wrong")
        keyless = tcp_transport(secure=secure)
        async with serving(server) as address, serving(wrong), serving(keyless):
            for client in (wrong, keyless):
                with pytest.raises(NetworkRefused, match="its network key differs"):
                    await client.request(address, "echo", b"x", timeout=5)
            while server.stats.networks_refused < 2:
                await anyio.sleep(0.01)
            assert server.stats.requests_served == 0


async def test_a_peer_that_skips_the_check_is_never_served() -> None:
    """Frames sent instead of the hello are not requests: the connection is refused, nothing is dispatched."""
    from butter.wire import Request, encode

    with anyio.fail_after(10):
        server = tcp_transport(secure=False)
        async with serving(server) as address:
            async with await anyio.connect_tcp(LOOPBACK, address.port) as raw:
                await raw.send(encode(Request(1, "echo", b"x" * 200)))
                with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                    while True:
                        await raw.receive()  # the server's hello, then the close
            while server.stats.networks_refused < 1:
                await anyio.sleep(0.01)
            assert server.stats.requests_served == 0


async def test_a_hello_is_bound_to_its_role_and_network() -> None:
    network = Network("a", b"key")
    hello = network.hello(server=False, binding=b"session")
    network.check(hello, server=True, binding=b"session")  # what the server accepts
    with pytest.raises(NetworkRefused, match="key differs"):
        network.check(hello, server=False, binding=b"session")  # reflected back to the client
    with pytest.raises(NetworkRefused, match="key differs"):
        network.check(hello, server=True, binding=b"another session")  # replayed on another connection
    with pytest.raises(ValueError):
        Network("x" * 33)


async def test_raw_helpers_pass_the_check() -> None:
    with anyio.fail_after(10):
        listener = await anyio.create_tcp_listener(local_host=LOOPBACK, local_port=0)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, accept_plain)
            stream = await connect_plain(port)
            await stream.aclose()
            tg.cancel_scope.cancel()


def node_settings(network_id: str, peers: list[str] | None = None) -> ButterSettings:
    return ButterSettings(
        host=LOOPBACK, port=0, network_id=network_id, peers=peers or [], discovery={"drivers": []},
        memory_budget="64MiB", request_timeout=2.0, shutdown_timeout=1.0,
        persistence={"driver": ""}, retrieval={"driver": ""},
        host_manager={"options": {"refresh_interval": 0.2, "exchange_interval": 0.2, "quality_timeout": 1.0}},
    )


async def test_a_node_given_a_peer_on_another_network_does_not_join_it() -> None:
    """Issue 17, item 10: ``--peer`` of an unrelated node (same machine, other network) is refused."""
    with anyio.fail_after(20):
        async with butter.open_node(node_settings("a")) as other:
            assert other.address is not None
            peers = [str(other.address)]
            async with butter.open_node(node_settings("b", peers)) as stray:
                async with butter.open_node(node_settings("a", peers)) as member:
                    while not member.hosts.peers():  # the same network joins
                        await anyio.sleep(0.05)
                    await anyio.sleep(1.0)  # several refresh rounds for the stray node
                    assert [p.node_id for p in member.hosts.peers()] == [other.node_id]
                    assert stray.hosts.peers() == []
                    assert all(p.node_id != stray.node_id for p in other.hosts.peers())
