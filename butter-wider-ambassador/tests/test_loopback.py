"""Real nodes over TCP on loopback, one ambassador and two clients, in one process (asyncio and trio).

Loopback has no NAT, so it is imitated: each node listens on an address of its own in 127.0.0.0/8, and
``public_prefix = 32`` makes every address its own subnetwork. A node whose connections to the ambassador
leave from *another* loopback address (``source_host``) looks to the ambassador exactly like a node behind
NAT: it is observed at an address it does not listen on, so the dial-back fails, and it takes a relay
reservation. Every packet stays on 127.0.0.0/8.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

import anyio
import pytest

import butter
from butter.capabilities import OutgoingAdoption
from butter.errors import PeerUnreachable
from butter.testing.overlay import wait_for
from butter_wider_ambassador import AmbassadorClient, AmbassadorDiscovery, AmbassadorService

pytestmark = pytest.mark.anyio

FAST_HOSTS = {"refresh_interval": 0.5, "exchange_interval": 0.3, "quality_timeout": 2.0, "max_failures": 3}


def settings(
    host: str, ambassador: dict[str, Any], peers: tuple[str, ...] = (), hosts: dict[str, Any] | None = None
) -> butter.ButterSettings:
    return butter.load_settings(
        host=host,
        port=0,
        peers=list(peers),
        discovery={"drivers": ["static", "ambassador"], "options": {"ambassador": ambassador}},
        host_manager={"driver": "diversity", "options": {**FAST_HOSTS, **(hosts or {})}},
        persistence={"driver": ""},
        retrieval={"driver": ""},
        shutdown_timeout=0.5,
    )


def ambassador_of(node: butter.Node) -> AmbassadorDiscovery:
    [discovery] = [d for d in node.discoveries if isinstance(d, AmbassadorDiscovery)]
    return discovery


def service(node: butter.Node) -> AmbassadorService:
    result = ambassador_of(node).service
    assert result is not None
    return result


def client(node: butter.Node) -> AmbassadorClient:
    result = ambassador_of(node).client
    assert result is not None
    return result



def knows(node: butter.Node, other: butter.Node) -> bool:
    return other.node_id in {p.node_id for p in node.hosts.peers()}


class World:
    def __init__(self, stack: AsyncExitStack) -> None:
        self.stack = stack

    async def ambassador(self, **options: Any) -> butter.Node:
        opts = {"serve": True, "public_prefix": 32, "exchange_timeout": 2.0, **options}
        return await self.stack.enter_async_context(butter.open_node(settings("127.0.0.1", opts)))

    async def client(self, host: str, ambassador: butter.Node, **options: Any) -> butter.Node:
        opts = {"ambassadors": [str(ambassador.address)], "interval": 0.5, "upnp": False, "exchange_timeout": 2.0,
                **options}
        # a node "behind NAT" must not gossip its own loopback address, which loopback cannot hide as NAT does
        hosts = {"exchange_interval": 3600.0} if "source_host" in options else None
        return await self.stack.enter_async_context(butter.open_node(settings(host, opts, hosts=hosts)))


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with AsyncExitStack() as stack:
        yield World(stack)


async def test_publish_tells_the_observed_address_and_introduces_other_subnets(world: World) -> None:
    amb = await world.ambassador()
    assert amb.quality().ambassador is True
    a = await world.client("127.0.0.2", amb)
    b = await world.client("127.0.0.3", amb)
    await wait_for(lambda: knows(a, b) and knows(b, a), "a and b know each other")
    assert client(a).observed is not None and client(a).observed.host == "127.0.0.2"  # type: ignore[union-attr]
    assert client(a).reachable == a.address and client(b).reachable == b.address
    assert {e.node_id for e in service(amb).index.entries(anyio.current_time())} == {a.node_id, b.node_id}
    assert not client(a).relayed  # reachable nodes take no reservation
    # the configured ambassador entered known hosts with its flag, so it spreads by the ordinary exchange
    await wait_for(lambda: any(p.quality.ambassador for p in a.hosts.peers()), "a knows an ambassador")


async def test_a_client_finds_the_ambassador_through_a_neighbour(world: World) -> None:
    amb = await world.ambassador()
    a = await world.client("127.0.0.2", amb)
    # c names no ambassador, only a as a static peer: it learns of the ambassador from a's known hosts
    options = {"interval": 0.5, "upnp": False, "exchange_timeout": 2.0}
    c = await world.stack.enter_async_context(butter.open_node(settings("127.0.0.4", options, (str(a.address),))))
    await wait_for(lambda: c.node_id in service(amb).index, "the ambassador indexes c")
    assert amb.address in client(c).ambassadors()
    assert c.capability(OutgoingAdoption) is not None  # tcp can adopt a punched connection: punching is on


async def test_an_unreachable_node_is_relayed_and_reached_through_the_relay(world: World) -> None:
    amb = await world.ambassador()
    hidden = await world.client("127.0.0.2", amb, source_host="127.0.0.5")  # looks NATed: 127.0.0.5 ≠ .2
    other = await world.client("127.0.0.3", amb, punch=False)

    @hidden.route("reverse")
    async def reverse(request: butter.RouteRequest) -> bytes:
        return request.body[::-1]

    await wait_for(lambda: bool(client(hidden).relayed), "the hidden node holds a relayed address")
    assert client(hidden).reachable is None
    [relayed] = client(hidden).relayed.values()
    assert relayed.host == "127.0.0.1" and relayed.port != amb.address.port
    await wait_for(lambda: knows(other, hidden), "the other node knows the hidden one")
    [entry] = [p for p in other.hosts.peers() if p.node_id == hidden.node_id]
    assert entry.address == relayed  # known by its relayed address
    assert await other.request(relayed, "reverse", b"olleh") == b"hello"
    assert service(amb).stats.circuits_opened >= 1


async def test_a_circuit_over_its_byte_limit_is_closed(world: World) -> None:
    amb = await world.ambassador(circuit_bytes=16 * 1024)
    hidden = await world.client("127.0.0.2", amb, source_host="127.0.0.5")
    other = await world.client("127.0.0.3", amb, punch=False)

    @hidden.route("blob")
    async def blob(request: butter.RouteRequest) -> bytes:
        return b"x" * 64 * 1024

    await wait_for(lambda: bool(client(hidden).relayed), "the hidden node holds a relayed address")
    [relayed] = client(hidden).relayed.values()
    with pytest.raises(PeerUnreachable):
        await other.request(relayed, "blob", b"", timeout=5)
    await wait_for(lambda: service(amb).stats.circuits_closed_bytes >= 1, "a circuit closed over its bytes")
    assert await other.request(relayed, "host-quality", b"", timeout=5)  # a new circuit serves small requests


async def test_a_circuit_over_its_duration_is_closed(world: World) -> None:
    amb = await world.ambassador(circuit_expiry=0.5)
    hidden = await world.client("127.0.0.2", amb, source_host="127.0.0.5")
    other = await world.stack.enter_async_context(butter.open_node(settings("127.0.0.3", {"upnp": False})))
    await wait_for(lambda: bool(client(hidden).relayed), "the hidden node holds a relayed address")
    [relayed] = client(hidden).relayed.values()
    assert await other.request(relayed, "host-quality", b"", timeout=5)
    await wait_for(lambda: service(amb).stats.circuits_closed_duration >= 1, "a circuit closed over its duration")


async def test_reservations_beyond_the_limit_are_refused(world: World) -> None:
    amb = await world.ambassador(max_reservations=1)
    first = await world.client("127.0.0.2", amb, source_host="127.0.0.5")
    await wait_for(lambda: bool(client(first).relayed), "the first client holds a relayed address")
    second = await world.client("127.0.0.3", amb, source_host="127.0.0.6")
    await wait_for(lambda: service(amb).stats.reservations_refused >= 1, "a reservation refused")
    assert not client(second).relayed


async def test_without_outgoing_adoption_hole_punching_is_off_and_said_once(
    memory_settings: Callable[..., butter.ButterSettings], caplog: pytest.LogCaptureFixture
) -> None:
    """The memory transport cannot adopt a punched connection (no OutgoingAdoption): the client says at
    start, once, that hole punching is off, and never punches."""
    caplog.set_level(logging.INFO, logger="butter.discovery.ambassador")
    options = {"ambassador": {"upnp": False, "interval": 0.1}}
    async with butter.open_node(memory_settings(discovery={"drivers": ["ambassador"], "options": options})) as node:
        await wait_for(lambda: client(node).stats.rounds >= 3, "three ambassador rounds")
        assert ambassador_of(node).counters()["rounds"] >= 3 and ambassador_of(node).counters()["punches"] == 0
    said = [r for r in caplog.records if "hole punching is off" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.INFO
