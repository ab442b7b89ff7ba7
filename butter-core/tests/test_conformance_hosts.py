"""The host-manager conformance kit (:mod:`butter.testing.conformance_hosts`) against ``diversity``, and
against flawed host managers, each of which must fail the check meant to catch its flaw. Asyncio and trio."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import pytest
from anyio.abc import TaskStatus

import butter
from butter.errors import ButterError
from butter.testing import conformance_hosts as kit
from butter.testing.conformance_hosts import HOST_MANAGER_CHECKS, HostManagerFactory
from butter.wire import decode_payload

pytestmark = pytest.mark.anyio
Check = Callable[[HostManagerFactory], Awaitable[None]]


@pytest.mark.parametrize("check", HOST_MANAGER_CHECKS, ids=lambda c: c.__name__)
async def test_diversity_host_manager_conformance(check: Check) -> None:
    await check(HostManagerFactory("diversity", {"capacity": 3}))


async def test_a_capacity_too_large_for_the_kit_is_refused() -> None:
    with pytest.raises(ValueError, match="capacity of 1 to 16"):
        await kit.check_sample(HostManagerFactory("diversity"))  # from the memory budget: thousands


class Careless:
    """A first-come host manager with one flaw switched on."""

    capacity = 2

    def __init__(self, node: butter.Node, flaw: str) -> None:
        self.node, self.flaw, self.hosts = node, flaw, dict[butter.PeerAddress, butter.PeerInfo]()

    def peers(self) -> list[butter.PeerInfo]:
        return list(self.hosts.values())

    def sample(self, k: int) -> list[butter.PeerInfo]:
        return self.peers() * 2 if self.flaw == "sample-repeats" else self.peers()[:k]

    async def offer(self, address: butter.PeerAddress) -> bool:
        if self.flaw != "admits-itself" and address == self.node.address:
            return False
        try:  # a host manager without a protocol of its own: the core ping names the node
            node_id = decode_payload(await self.node.request(address, "ping", b""))["id"]
        except ButterError:
            if self.flaw == "raises":
                raise
            return False
        if self.flaw != "over-capacity" and len(self.hosts) >= self.capacity:
            return False
        self.hosts[address] = butter.PeerInfo(node_id, address)
        return True

    def report_dead(self, address: butter.PeerAddress) -> None:
        if self.flaw != "keeps-the-dead":
            self.hosts.pop(address, None)

    def known_by(self) -> int:
        return -1 if self.flaw == "miscounts" else 0

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()


class CarelessPlugin:
    def __init__(self, flaw: str) -> None:
        self.flaw = flaw

    @butter.hookimpl
    def butter_host_manager(self, node: butter.Node) -> Careless:
        return Careless(node, self.flaw)


def careless(flaw: str) -> HostManagerFactory:
    return HostManagerFactory("", plugins=(CarelessPlugin(flaw),), bound=2.0)


@pytest.mark.parametrize("check", HOST_MANAGER_CHECKS, ids=lambda c: c.__name__)
async def test_the_reference_passes_without_its_flaws(check: Check) -> None:
    await check(careless(""))


@pytest.mark.parametrize(("flaw", "check", "error", "match"), [
    ("over-capacity", kit.check_capacity_respected, AssertionError, "capacity 2"),
    ("raises", kit.check_unreachable_offer, ButterError, "no peer listening"),
    ("keeps-the-dead", kit.check_report_dead_removes, AssertionError, "reported dead"),
    ("sample-repeats", kit.check_sample, AssertionError, r"sample\(0\)"),
    ("admits-itself", kit.check_never_itself, AssertionError, "its own address"),
    ("miscounts", kit.check_known_by, AssertionError, r"known_by\(\) gave -1"),
])
async def test_a_flawed_host_manager_fails_the_check_for_its_flaw(
    flaw: str, check: Check, error: type[BaseException], match: str
) -> None:
    with pytest.raises(error, match=match):
        try:
            await check(careless(flaw))
        except BaseExceptionGroup as group:  # concurrent offers fail in a task group
            raise group.exceptions[0] from None
