"""The host-manager conformance kit: checks every :class:`butter.slots.HostManager` driver must pass.

The kit starts real nodes on a private :class:`~butter.testing.MemoryNetwork`, all running the driver under
test (selected by its entry-point name), with no discovery, persistence or retrieval, and offers the first
node (the subject) the others. A host-manager author only names the driver, with options that make its
capacity small (at most 16 hosts, so the checks stay fast)::

    import pytest
    from butter.testing.conformance_hosts import HOST_MANAGER_CHECKS, HostManagerFactory

    @pytest.mark.anyio
    @pytest.mark.parametrize("check", HOST_MANAGER_CHECKS, ids=lambda c: c.__name__)
    async def test_conformance(check):
        await check(HostManagerFactory("diversity", {"capacity": 3}))

What the checks hold a driver to:

* ``peers()`` never holds more than ``capacity`` hosts, even under concurrent offers; ``offer`` returning
  ``True`` means the host is in ``peers()`` right then; at least one live host is admitted;
* ``offer`` of an address nobody listens on returns ``False`` within ``bound``, without raising;
* ``report_dead`` removes the host at once, and is harmless for a host it does not know;
* ``sample(k)`` returns at most ``k`` distinct known hosts, and at least one when ``k >= 1`` and it knows any;
* ``peers()`` never contains the node itself (offered its own address, it says ``False``), and each entry
  names the node id of the peer at that address;
* ``known_by()`` is a count: an int from 0 to the number of other nodes (0 when the driver cannot tell).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio

from .._node import Node, open_node
from ..peers import PeerAddress
from ..settings import ButterSettings
from ._kit import kit_settings, private_network

__all__ = ["HOST_MANAGER_CHECKS", "HostManagerFactory"]

MAX_CAPACITY = 16  # hosts: the kit starts capacity + a few nodes, so the driver must be configured small


@dataclass(frozen=True)
class HostManagerFactory:
    """What the kit needs to know about a host-manager driver.

    * ``driver``: its entry-point name in ``butter.host_manager`` (the value of ``host_manager.driver``).
    * ``options``: its ``host_manager.options``; they must make ``capacity`` 1 to 16 hosts.
    * ``bound``: seconds one ``offer`` may take (default 10); a guard against hangs.
    * ``settings``: other :class:`~butter.settings.ButterSettings` fields for every node, over the kit's.
    * ``plugins``: extra pluggy plugin objects for every node's ``open_node(plugins=...)``; with
      ``driver=""``, one answering ``butter_host_manager`` tests a driver not installed as an entry point.
    """

    driver: str
    options: Mapping[str, Any] = field(default_factory=dict)
    bound: float = 10.0
    settings: Mapping[str, Any] = field(default_factory=dict)
    plugins: tuple[object, ...] = ()

    def node_settings(self, network: str) -> ButterSettings:
        return kit_settings(network, self.settings,
                            host_manager={"driver": self.driver, "options": dict(self.options)})

    @asynccontextmanager
    async def open_nodes(self, extra: int) -> AsyncIterator[list[Node]]:
        """The subject (first) and ``capacity + extra`` other nodes, none knowing any other yet. Raises
        ``ValueError`` when the options do not make the capacity 1 to 16 hosts."""
        network = private_network("hosts")
        async with AsyncExitStack() as stack:

            async def start() -> Node:
                return await stack.enter_async_context(open_node(self.node_settings(network), plugins=self.plugins))

            subject = await start()
            capacity = subject.hosts.capacity
            if not 1 <= capacity <= MAX_CAPACITY:
                raise ValueError(f"configure {self.driver!r} for a capacity of 1 to {MAX_CAPACITY} hosts "
                                 f"(its options), not {capacity}")
            yield [subject] + [await start() for _ in range(capacity + extra)]


async def _offer(factory: HostManagerFactory, node: Node, address: PeerAddress) -> bool:
    with anyio.fail_after(factory.bound):
        admitted = await node.hosts.offer(address)
    assert isinstance(admitted, bool), f"offer must return a bool, not {admitted!r}"
    return admitted


def _known(node: Node) -> list[PeerAddress]:
    addresses = [p.address for p in node.hosts.peers()]
    assert len(set(addresses)) == len(addresses), f"peers() lists a host twice: {addresses}"
    return addresses


async def _admit_some(factory: HostManagerFactory, subject: Node, others: list[Node]) -> list[PeerAddress]:
    for other in others:
        await _offer(factory, subject, other.address)
    known = _known(subject)
    assert known, f"{len(others)} live host(s) offered, none admitted"
    return known


# -- the checks --------------------------------------------------------------------------------------------


async def check_capacity_respected(factory: HostManagerFactory) -> None:
    """Concurrent, then sequential, offers of more live hosts than the capacity: never more than the capacity
    known; ``True`` means known; some admitted."""
    async with factory.open_nodes(extra=3) as (subject, *others):
        capacity = subject.hosts.capacity

        async def offer(other: Node) -> None:
            await _offer(factory, subject, other.address)
            assert len(_known(subject)) <= capacity, f"{len(_known(subject))} hosts known, capacity {capacity}"

        async with anyio.create_task_group() as tg:
            for other in others:
                tg.start_soon(offer, other)
        for other in reversed(others):
            admitted = await _offer(factory, subject, other.address)
            known = _known(subject)
            assert len(known) <= capacity, f"{len(known)} hosts known, capacity {capacity}"
            assert not admitted or other.address in known, "offer returned True but the host is not in peers()"
        assert known, f"{len(others)} live hosts offered, none admitted"


async def check_unreachable_offer(factory: HostManagerFactory) -> None:
    """An address nobody listens on is refused (``False``), within ``bound``, without raising."""
    async with factory.open_nodes(extra=0) as (subject, *_):
        for address in (PeerAddress(subject.address.host, 65535), PeerAddress("nowhere", 1)):
            assert await _offer(factory, subject, address) is False, f"an unreachable {address} was admitted"
            assert address not in _known(subject)


async def check_report_dead_removes(factory: HostManagerFactory) -> None:
    """``report_dead`` removes a known host at once; for an unknown one, or twice, it is harmless."""
    async with factory.open_nodes(extra=1) as (subject, *others):
        known = await _admit_some(factory, subject, others)
        subject.hosts.report_dead(known[0])
        assert known[0] not in _known(subject), "a host reported dead is still known"
        assert set(_known(subject)) <= set(known)
        subject.hosts.report_dead(known[0])
        subject.hosts.report_dead(PeerAddress("nowhere", 1))
        assert known[0] not in _known(subject)


async def check_sample(factory: HostManagerFactory) -> None:
    """``sample(k)``: at most ``k`` distinct known hosts; at least one when ``k >= 1`` and any is known."""
    async with factory.open_nodes(extra=1) as (subject, *others):
        known = set(await _admit_some(factory, subject, others))
        for k in range(len(known) + 3):
            sample = [p.address for p in subject.hosts.sample(k)]
            assert len(sample) <= k and len(set(sample)) == len(sample), f"sample({k}) gave {sample}"
            assert set(sample) <= known, f"sample({k}) gave hosts that are not known: {set(sample) - known}"
            assert k == 0 or sample, f"sample({k}) was empty with {len(known)} host(s) known"


async def check_never_itself(factory: HostManagerFactory) -> None:
    """The node never knows itself, and each known host carries the id of the node at its address."""
    async with factory.open_nodes(extra=0) as (subject, *others):
        assert await _offer(factory, subject, subject.address) is False, "a node admitted its own address"
        await _admit_some(factory, subject, others)
        assert await _offer(factory, subject, subject.address) is False, "a node admitted its own address"
        ids = {n.address: n.node_id for n in others}
        for peer in subject.hosts.peers():
            assert peer.address != subject.address and peer.node_id != subject.node_id, "peers() holds the node"
            assert peer.node_id == ids.get(peer.address), f"{peer.address} is listed with another node's id"


async def check_known_by(factory: HostManagerFactory) -> None:
    """``known_by()`` is an int from 0 to the number of other nodes, before and after hosts are admitted."""
    async with factory.open_nodes(extra=0) as nodes:

        def check_counts() -> None:
            for node in nodes:
                count = node.hosts.known_by()
                assert isinstance(count, int) and not isinstance(count, bool) and 0 <= count < len(nodes), (
                    f"known_by() gave {count!r} in a network of {len(nodes)} nodes")

        check_counts()
        await _admit_some(factory, nodes[0], nodes[1:])
        check_counts()


HOST_MANAGER_CHECKS: list[Callable[[HostManagerFactory], Awaitable[None]]] = [
    check_capacity_respected,
    check_unreachable_offer,
    check_report_dead_removes,
    check_sample,
    check_never_itself,
    check_known_by,
]
