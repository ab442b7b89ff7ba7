"""The discovery conformance kit: checks every :class:`butter.slots.Discovery` driver must pass
(the discovery protocol is described in the docs, docs/protocol/).

The kit starts real nodes one after another (on the ``tcp`` transport by default, each listening on the
host the factory names, port 0), all running the driver under test, selected by its entry-point name, and a
real host manager (``diversity``, its own timers slowed so that all the traffic the kit sees is the
driver's) wrapped so the kit records every address offered to it. Node ``i`` gets the driver's options from
the factory, given the addresses of the nodes started before it: that is how a driver that needs to be
told where to look (``static``'s peers, ``ambassador``'s ambassadors) is configured. A discovery author
names the driver and how to configure it::

    import pytest
    from butter.testing.conformance_discovery import DISCOVERY_CHECKS, DiscoveryFactory

    def peers(index, earlier):  # node i is told the addresses of the nodes started before it
        return {"peers": [str(a) for a in earlier]}

    @pytest.mark.anyio
    @pytest.mark.parametrize("check", DISCOVERY_CHECKS, ids=lambda c: c.__name__)
    async def test_conformance(check):
        await check(DiscoveryFactory("static", {"interval": 0.2}, configure=peers))

What the checks hold a driver to, beyond the slot's docstring:

* a lonely node started after another finds it: within ``bound`` its host manager is offered the other's
  address and admits it;
* once a node knows a peer (and ``settle`` seconds more), the whole network sends at most ``messages``
  messages in ``window`` seconds (requests sent by any node, plus addresses offered to host management):
  a node that has peers stops looking;
* no node's host manager is ever offered the node's own address;
* once a peer known for ``settle`` seconds dies (abruptly, and host management has dropped it) and
  ``forget_timeout`` seconds have passed, no node is offered its address again during ``window`` seconds:
  a dead peer is not offered forever (to a node that still knows other peers, so it is not lonely);
* the driver stops with its node: every node closes within ``bound``, and once they have, the process has
  no more running tasks, nor open sockets (Linux: ``/proc/self/fd``), than before the kit started them.

Multicast is never sent by the kit itself; a multicast driver's kit run belongs in a network namespace
the test creates.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskStatus

from .._node import Node, open_node
from ..hookspecs import hookimpl
from ..peers import PeerAddress, PeerInfo
from ..settings import ButterSettings
from ..slots import Discovery, HostManager

__all__ = ["DISCOVERY_CHECKS", "DiscoveryFactory", "Offers", "World"]

QUIET_HOSTS = {"refresh_interval": 3600.0, "exchange_interval": 3600.0, "quality_timeout": 2.0}
"""The kit's host-manager options: no refresh nor exchange, so the only traffic is the driver's."""

Configure = Callable[[int, Sequence[PeerAddress]], Mapping[str, Any]]


def _no_configuration(index: int, earlier: Sequence[PeerAddress]) -> Mapping[str, Any]:
    return {}


def _loopback(index: int) -> str:
    return "127.0.0.1"


@dataclass(frozen=True)
class DiscoveryFactory:
    """What the kit needs to know about a discovery driver.

    * ``driver``: its entry-point name in ``butter.discovery`` (an entry of ``discovery.drivers``).
    * ``options``: its options for every node (``discovery.options[driver]``).
    * ``configure(index, earlier)``: node ``index``'s options over ``options``, given the addresses of the
      nodes ``0 .. index - 1`` (default: none).
    * ``host(index)``: the address node ``index`` listens on (default ``127.0.0.1``).
    * ``bound``: seconds a lonely node may take to find a peer, and each node to close (default 10).
    * ``settle``, ``window``: seconds after a node found a peer before traffic is counted (or a peer is
      killed), and seconds it is counted (defaults 1 and 2); ``window`` is also how long a dead peer is
      watched for.
    * ``messages``: messages the network may send in ``window`` once a node knows a peer (default 0; a
      driver that republishes periodically allows for it).
    * ``forget_timeout``: seconds after a peer's death during which it may still be offered (default 0;
      e.g. until an ambassador's index entry expires).
    * ``settings``: other :class:`~butter.settings.ButterSettings` fields for every node, over the kit's
      (e.g. ``transport``).
    * ``plugin(options)``: with ``driver=""``, builds a pluggy plugin answering ``butter_discovery`` for one
      node, given that node's options: a driver not installed as an entry point.
    """

    driver: str
    options: Mapping[str, Any] = field(default_factory=dict)
    configure: Configure = _no_configuration
    host: Callable[[int], str] = _loopback
    bound: float = 10.0
    settle: float = 1.0
    window: float = 2.0
    messages: int = 0
    forget_timeout: float = 0.0
    settings: Mapping[str, Any] = field(default_factory=dict)
    plugin: Callable[[Mapping[str, Any]], object] | None = None

    def __post_init__(self) -> None:
        if self.bound <= 0 or self.window <= 0 or min(self.settle, self.messages, self.forget_timeout) < 0:
            raise ValueError("bound and window must be positive; settle, messages and forget_timeout not negative")
        if not self.driver and self.plugin is None:
            raise ValueError("a factory with driver='' needs a plugin")

    def node_settings(self, index: int, options: Mapping[str, Any]) -> ButterSettings:
        """Node ``index``'s settings: the transport on its host, the driver with ``options``, the kit's
        host manager, nothing else; the factory's ``settings`` over that."""
        values: dict[str, Any] = {
            "host": self.host(index),
            "port": 0,
            "transport": {"driver": "tcp"},
            "discovery": {"drivers": [self.driver], "options": {self.driver: dict(options)}} if self.driver
            else {"drivers": []},
            "host_manager": {"driver": "diversity", "options": QUIET_HOSTS},
            "persistence": {"driver": ""},
            "retrieval": {"driver": ""},
            "shutdown_timeout": 0.5,
            **self.settings,
        }
        return ButterSettings(**values)

    @asynccontextmanager
    async def open_world(self) -> AsyncIterator[World]:
        """A :class:`World` with no node yet; its nodes are closed on exit."""
        async with AsyncExitStack() as stack:
            yield World(self, stack)


class Offers:
    """A host manager wrapping the node's own, recording each address offered to it (``offered``: pairs
    of ``anyio.current_time()`` and address)."""

    def __init__(self, inner: HostManager) -> None:
        self.inner = inner
        self.offered: list[tuple[float, PeerAddress]] = []

    @property
    def capacity(self) -> int:
        return self.inner.capacity

    def peers(self) -> list[PeerInfo]:
        return self.inner.peers()

    def sample(self, k: int) -> list[PeerInfo]:
        return self.inner.sample(k)

    async def offer(self, address: PeerAddress) -> bool:
        self.offered.append((anyio.current_time(), address))
        return await self.inner.offer(address)

    def report_dead(self, address: PeerAddress) -> None:
        self.inner.report_dead(address)

    def known_by(self) -> int:
        return self.inner.known_by()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        await self.inner.run(task_status=task_status)

    def since(self, start: float) -> list[PeerAddress]:
        return [address for at, address in self.offered if at >= start]


class _RecordOffers:
    @hookimpl(wrapper=True)
    def butter_host_manager(self, node: Node) -> Generator[None, HostManager, Offers]:
        return Offers((yield))


@dataclass
class World:
    """The kit's running nodes, in the order they started."""

    factory: DiscoveryFactory
    stack: AsyncExitStack
    nodes: list[Node] = field(default_factory=list)
    dead: list[Node] = field(default_factory=list)

    async def start(self) -> Node:
        """Start the next node, configured with the addresses of the nodes started before it."""
        index, factory = len(self.nodes), self.factory
        options = {**factory.options, **factory.configure(index, [n.address for n in self.nodes])}
        plugins = (_RecordOffers(),) + ((factory.plugin(options),) if factory.plugin is not None else ())
        node = await self.stack.enter_async_context(open_node(factory.node_settings(index, options), plugins=plugins))
        assert node.discoveries and all(isinstance(d, Discovery) for d in node.discoveries), (
            f"driver {factory.driver!r} built no Discovery object")
        self.nodes.append(node)
        return node

    def alive(self) -> list[Node]:
        return [n for n in self.nodes if n not in self.dead]

    async def kill(self, node: Node) -> None:
        """``node`` stops abruptly, as a crash would, and every live node's host management drops it."""
        self.dead.append(node)
        await node.aclose(graceful=False)
        for other in self.alive():
            other.hosts.report_dead(node.address)

    def traffic(self) -> int:
        """Requests sent by every node so far, plus the addresses offered to their host managers."""
        return sum(n.stats.requests_sent + len(offers(n).offered) for n in self.nodes)

    async def wait_until(self, predicate: Callable[[], bool], what: str) -> None:
        with anyio.move_on_after(self.factory.bound):
            while True:
                if predicate():
                    return
                await anyio.sleep(0.02)
        raise AssertionError(f"{what} within {self.factory.bound} s")


def offers(node: Node) -> Offers:
    assert isinstance(node.hosts, Offers), "the kit's nodes run the kit's recording host manager"
    return node.hosts


def knows(node: Node, others: Sequence[Node]) -> bool:
    """Whether ``node`` knows each of ``others`` (by node id)."""
    return {o.node_id for o in others} <= {p.node_id for p in node.hosts.peers()}


def _open_sockets() -> int | None:
    """Sockets this process has open (Linux), or ``None`` where that cannot be told."""
    fds = Path("/proc/self/fd")
    if not fds.is_dir():
        return None
    count = 0
    for fd in fds.iterdir():
        try:
            count += os.readlink(fd).startswith("socket:")
        except OSError:
            continue
    return count


# -- the checks --------------------------------------------------------------------------------------------


async def check_lonely_node_finds_a_peer(factory: DiscoveryFactory) -> None:
    """A node started after another, knowing nobody, is offered the other's address and admits it."""
    async with factory.open_world() as world:
        first = await world.start()
        lonely = await world.start()
        await world.wait_until(lambda: knows(lonely, [first]), "the lonely node found no peer")
        assert first.address in [a for _, a in offers(lonely).offered], (
            "the peer entered known hosts without being offered to host management")


async def check_quiet_once_a_peer_is_known(factory: DiscoveryFactory) -> None:
    """Once a node knows a peer (and ``settle`` s more), the network sends at most ``messages`` messages in
    ``window`` seconds."""
    async with factory.open_world() as world:
        first = await world.start()
        second = await world.start()
        await world.wait_until(lambda: knows(second, [first]), "the second node found no peer")
        await anyio.sleep(factory.settle)
        before = world.traffic()
        await anyio.sleep(factory.window)
        sent = world.traffic() - before
        assert sent <= factory.messages, (
            f"{sent} messages (requests and offers) in {factory.window} s once the nodes knew a peer, "
            f"at most {factory.messages} allowed: a node that has peers must stop looking")


async def check_never_offers_the_node_itself(factory: DiscoveryFactory) -> None:
    """Across three nodes finding each other, no host manager is offered its own node's address."""
    async with factory.open_world() as world:
        for _ in range(3):
            await world.start()
        last = world.nodes[-1]
        await world.wait_until(lambda: bool(last.hosts.peers()), "the last node found no peer")
        await anyio.sleep(factory.window)
        for node in world.nodes:
            assert node.address not in [a for _, a in offers(node).offered], (
                f"the node at {node.address} was offered its own address")


async def check_dead_peer_is_not_offered_forever(factory: DiscoveryFactory) -> None:
    """A node knowing two peers (for ``settle`` seconds) loses one (abrupt death; host management drops it):
    ``forget_timeout`` seconds later, no node is offered the dead peer's address during ``window`` seconds."""
    async with factory.open_world() as world:
        for _ in range(3):
            await world.start()
        first, doomed, subject = world.nodes
        await world.wait_until(lambda: knows(subject, [first, doomed]), "the third node did not find both others")
        await anyio.sleep(factory.settle)  # what was under way before the death (answers, samples) lands
        await world.kill(doomed)
        await anyio.sleep(factory.forget_timeout)
        start = anyio.current_time()
        await anyio.sleep(factory.window)
        for node in world.alive():
            again = offers(node).since(start).count(doomed.address)
            assert not again, (f"a dead peer's address was offered {again} time(s) to a node that knows "
                               f"another peer, {factory.forget_timeout + factory.window} s after its death")


async def check_stops_with_the_node(factory: DiscoveryFactory) -> None:
    """Every node closes within ``bound``; then no task nor socket the nodes had is left (compared with
    before they started)."""
    tasks, sockets = len(anyio.get_running_tasks()), _open_sockets()
    async with factory.open_world() as world:
        first = await world.start()
        second = await world.start()
        await world.wait_until(lambda: knows(second, [first]), "the second node found no peer")
        for node in reversed(world.nodes):
            with anyio.move_on_after(factory.bound) as scope:
                await node.aclose()
            assert not scope.cancelled_caught, f"a node took more than {factory.bound} s to close"

    def leaks() -> tuple[int, int]:
        now = _open_sockets()
        return len(anyio.get_running_tasks()) - tasks, 0 if now is None or sockets is None else now - sockets

    with anyio.move_on_after(factory.bound):
        while True:
            if max(leaks()) <= 0:
                break
            await anyio.sleep(0.05)
    left_tasks, left_sockets = leaks()
    assert left_tasks <= 0, f"{left_tasks} task(s) still running once every node closed"
    assert left_sockets <= 0, f"{left_sockets} socket(s) still open once every node closed"


DISCOVERY_CHECKS: list[Callable[[DiscoveryFactory], Awaitable[None]]] = [
    check_lonely_node_finds_a_peer,
    check_quiet_once_a_peer_is_known,
    check_never_offers_the_node_itself,
    check_dead_peer_is_not_offered_forever,
    check_stops_with_the_node,
]
