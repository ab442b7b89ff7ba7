"""The ``random`` host manager (entry point ``butter.host_manager:random``): Gnutella-style, a baseline.

* Capacity: as ``diversity`` (:func:`~butter.hosts.capacity_for_budget` of the memory budget), or the
  ``capacity`` option.
* Admission: every candidate that answers on ``host-quality`` is admitted; when the list is full, a host
  picked uniformly at random is evicted to make room (told so at once, so its ``known_by`` drops). No
  quality record is weighed: this is the naive policy the ``diversity`` driver is measured against.
* Refresh (every ``refresh_interval`` s, with jitter): every known host is asked for its quality record;
  one that fails ``max_failures`` times in a row is removed, as are hosts reported dead.
* Exchange (every ``exchange_interval`` s): one random known host gets this node's record and a sample of
  its list on ``known-hosts`` and answers with a sample of its own, which is introduced (Gnutella's
  ping/pong, made a two-way gossip).

It speaks the same protocol as ``diversity``, and serves it itself (registered when it starts):
``host-quality`` (body ``{id, holds, ttl}``: a caller that ``holds`` this node counts toward
:meth:`RandomHostManager.known_by` for ``ttl`` seconds, at most 3,600; reply this node's
:class:`~butter.peers.PeerInfo`) and ``known-hosts`` (body ``{from, sample}``, both introduced; reply
``{sample}``). The two kinds of node mix on one overlay.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskStatus
from pydantic import BaseModel, ConfigDict, Field

from ..codec import Fields, encode, node_id, peer_info
from ..errors import ButterError
from ..hookspecs import hookimpl
from ..peers import PeerAddress, PeerInfo
from ._manager import capacity_for_budget

if TYPE_CHECKING:
    from ..node import RouteRequest
    from ..slots import NodeServices

__all__ = ["RandomHostManager", "RandomHostManagerPlugin", "RandomOptions"]

log = logging.getLogger("butter.hosts.random")

EXCHANGE_SAMPLE = 16  # known hosts sent and accepted per exchange
MAX_HOLD = 3600.0  # seconds a caller's hold counts at most
DEFAULT_HOLD = 30.0  # seconds a hold counts when the caller names no ttl


class RandomOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    capacity: int | None = Field(None, ge=1, description="hosts kept; unset: from the memory budget")
    refresh_interval: float = Field(10.0, gt=0, description="seconds between quality refreshes")
    exchange_interval: float = Field(10.0, gt=0, description="seconds between known-host exchanges")
    max_failures: int = Field(1, ge=1, description="failed refreshes in a row before a host is removed")
    quality_timeout: float = Field(3.0, gt=0, description="seconds to wait for a quality record")
    exchange_timeout: float = Field(3.0, gt=0, description="seconds to wait for a known-hosts answer")
    seed: int | None = Field(None, description="random seed, for reproducible simulations")


class RandomHostManager:
    """A :class:`~butter.slots.HostManager` admitting every live candidate, evicting at random when full."""

    def __init__(self, node: NodeServices, options: RandomOptions) -> None:
        self.node = node
        self.options = options
        self._capacity = options.capacity or capacity_for_budget(int(node.settings.memory_budget))
        self._hosts: dict[PeerAddress, PeerInfo] = {}
        self._failures: dict[PeerAddress, int] = {}
        self._pending: set[PeerAddress] = set()
        self._holders: dict[str, float] = {}  # node id of a peer holding this node -> when its hold lapses
        self._rng = random.Random(options.seed)

    # -- HostManager ---------------------------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        return self._capacity

    def peers(self) -> list[PeerInfo]:
        return list(self._hosts.values())

    def sample(self, k: int) -> list[PeerInfo]:
        hosts = list(self._hosts.values())
        return self._rng.sample(hosts, max(0, min(k, len(hosts))))

    async def offer(self, address: PeerAddress) -> bool:
        """Admit ``address`` if it answers with a quality record, evicting a random host when full; returns
        whether it is now known. Never raises for a peer that is unreachable or answers nonsense."""
        if address in self._hosts or address in self._pending or self._is_self(address):
            return address in self._hosts
        self._pending.add(address)
        try:
            info = await self._quality(address, holds=True)
        finally:
            self._pending.discard(address)
        if info is None or address in self._hosts:
            return address in self._hosts
        if info.node_id == self.node.node_id or any(h.node_id == info.node_id for h in self._hosts.values()):
            self.node.spawn(self._release, address)  # itself, or a known node at another address
            return False
        if len(self._hosts) >= self._capacity:
            victim = self._rng.choice(list(self._hosts))
            self._remove(victim, "evicted at random to make room")
            self.node.spawn(self._release, victim)
        self._hosts[address] = info
        log.info("peer joined: %s (%s)", info.node_id[:8], address)
        self.node.emit("butter_peer_discovered", peer=info)
        return True

    def report_dead(self, address: PeerAddress) -> None:
        """Remove ``address`` at once; another module found it unreachable."""
        self._remove(address, "reported dead")

    def known_by(self) -> int:
        """How many peers hold this node in their lists (their ``host-quality`` polls with ``holds``)."""
        now = anyio.current_time()
        self._holders = {k: lapses for k, lapses in self._holders.items() if lapses >= now}
        return len(self._holders)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self.node.route("host-quality", self._serve_quality)
        self.node.route("known-hosts", self._serve_known_hosts)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._every, self.options.refresh_interval, self.refresh)
            tg.start_soon(self._every, self.options.exchange_interval, self.exchange)
            task_status.started()

    # -- maintenance ---------------------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Ask every known host for its quality record; remove the ones that keep failing."""

        async def one(address: PeerAddress) -> None:
            info = await self._quality(address, holds=True)
            if address not in self._hosts:
                return
            if info is not None:
                self._failures.pop(address, None)
                self._hosts[address] = info
                return
            self._failures[address] = self._failures.get(address, 0) + 1
            if self._failures[address] >= self.options.max_failures:
                self._remove(address, "unreachable")

        async with anyio.create_task_group() as tg:
            for address in list(self._hosts):
                tg.start_soon(one, address)

    async def exchange(self) -> None:
        """Swap samples of known hosts with one random known host; introduce what it sends back."""
        if not self._hosts:
            return
        partner = self._rng.choice(list(self._hosts))
        body = encode({"from": self._info().to_wire(), "sample": [p.to_wire() for p in self.sample(EXCHANGE_SAMPLE)]})
        try:
            reply = await self.node.request(partner, "known-hosts", body, timeout=self.options.exchange_timeout)
            fields = Fields.decode(reply, self.node.settings.max_frame, what="known-hosts reply")
            sample = fields.sequence("sample", peer_info, max_items=EXCHANGE_SAMPLE, default=[], truncate=True)
        except ButterError as exc:
            log.debug("known-hosts exchange with %s failed: %s", partner, exc)
            return
        self.node.introduce(p.address for p in sample)

    async def _every(self, interval: float, action: Callable[[], Awaitable[None]]) -> None:
        while True:
            await anyio.sleep(interval * self._rng.uniform(0.8, 1.2))
            await action()

    # -- the protocol --------------------------------------------------------------------------------------

    async def _quality(self, address: PeerAddress, *, holds: bool) -> PeerInfo | None:
        """The host's quality record, or ``None`` if it cannot be had; ``holds`` says whether this node
        keeps it in its list (so it counts toward the host's ``known_by``)."""
        body = encode({"id": self.node.node_id, "holds": holds, "ttl": 2.5 * self.options.refresh_interval})
        try:
            reply = await self.node.request(address, "host-quality", body, timeout=self.options.quality_timeout)
            info = peer_info(Fields.decode(reply, self.node.settings.max_frame).raw, "host-quality reply")
        except ButterError as exc:
            log.debug("no quality record from %s: %s", address, exc)
            return None
        return PeerInfo(info.node_id, address, info.quality, anyio.current_time())

    async def _release(self, address: PeerAddress) -> None:
        """Tell a host this node does not hold it (evicted, or never admitted)."""
        await self._quality(address, holds=False)

    def _info(self) -> PeerInfo:
        info = self.node.info()
        return dataclasses.replace(info, quality=dataclasses.replace(info.quality, known_by=self.known_by()))

    async def _serve_quality(self, request: RouteRequest) -> bytes:
        if request.body:
            fields = Fields.decode(request.body, self.node.settings.max_frame, what="host-quality body")
            caller = fields.value("id", node_id)
            request.check_sender(caller)
            if fields.has("holds") and caller != self.node.node_id:
                if fields.boolean("holds"):
                    hold = fields.number("ttl", low=0, default=DEFAULT_HOLD)
                    self._holders[caller] = anyio.current_time() + min(hold, MAX_HOLD)
                else:
                    self._holders.pop(caller, None)
        return encode(self._info().to_wire())

    async def _serve_known_hosts(self, request: RouteRequest) -> bytes:
        if request.body:
            fields = Fields.decode(request.body, self.node.settings.max_frame, what="known-hosts body")
            sender = fields.value("from", peer_info)
            request.check_sender(sender.node_id)
            sample = fields.sequence("sample", peer_info, max_items=EXCHANGE_SAMPLE, default=[], truncate=True)
            self.node.introduce([sender.address, *(p.address for p in sample)])
        return encode({"sample": [p.to_wire() for p in self.sample(EXCHANGE_SAMPLE)]})

    # -- helpers -------------------------------------------------------------------------------------------

    def _is_self(self, address: PeerAddress) -> bool:
        try:
            return address == self.node.address
        except RuntimeError:
            return False

    def _remove(self, address: PeerAddress, why: str) -> None:
        info = self._hosts.pop(address, None)
        self._failures.pop(address, None)
        if info is not None:
            log.info("peer left: %s (%s): %s", info.node_id[:8], address, why)
            self.node.emit("butter_peer_lost", peer=info)


class RandomHostManagerPlugin:
    """Entry point ``butter.host_manager:random``."""

    Options = RandomOptions

    def __init__(self, options: RandomOptions) -> None:
        self.options = options

    @hookimpl
    def butter_host_manager(self, node: NodeServices) -> RandomHostManager:
        return RandomHostManager(node, self.options)
