"""The ``diversity`` host manager: a bounded known-host list kept diverse, fresh and exchanged.

* Capacity: the known-host share of the memory budget (:func:`butter.settings.budget_split`: 8,947 hosts at
  512 MiB), or the ``capacity`` option.
* Admission: :func:`butter.hosts.decide`. A candidate is asked for its quality record first; one that does
  not answer is not admitted (the original admitted it with an all-zero record). While the list has room
  the candidate will be admitted, so that probe already holds it (see ``known_by`` below) and counts as
  its first poll.
* Refresh: every active known host (below) is asked for its quality record on its own schedule, which backs off while
  nothing changes (:class:`~butter.hosts.Backoff`): at intervals growing fourfold from ``refresh_interval``
  up to ``refresh_max_interval`` (default 16 × ``refresh_interval``: 10, 40, 160 s) while its record comes
  back about the same, starting at 40 s for a host whose admission probe held it (10 s otherwise), and
  again from ``refresh_interval`` once it changed much (a restart, its ambassador role, ``known_by``
  between 0, 1 and more, its known hosts to or from 0, its available storage to or from 0 or doubled or
  halved: :func:`_changed`). A host where nothing listens any more (:class:`~butter.errors.PeerGone`: connection
  refused) is removed at its first failed poll; one that fails otherwise (a timeout, a lost connection: a
  busy host fails so too) after ``max_failures`` polls in a row, so a busy node, whose every poll times out,
  does not forget every peer. A failed poll starts the host's schedule over, so a host that died silently
  is dropped within about ``refresh_max_interval × 1.2 + (max_failures - 1) × 2 × refresh_interval +
  quality_timeout`` seconds (sooner when another module reports it dead). These polls
  are what lets a host count how many peers know it (``known_by``): each poll asks to be counted for 2.5
  times the wait until the next one (at most an hour, the protocol's cap). In a steady overlay the polls
  of the ``a`` active hosts fade to about ``a / refresh_max_interval`` per second, instead of
  ``a / refresh_interval``.
* Active and passive views (after HyParView: Leitão, Pereira and Rodrigues, DSN 2007): at most
  ``active_size`` (32) known hosts are active, polled on the refresh schedule above; the others are passive:
  kept, exchanged, sampled and used by retrieval and persistence alike, but polled on a budget
  (:class:`~butter.hosts._sweep.Sweep`), each once per round of ``max(passive_interval, p / passive_rate)``
  seconds for ``p`` passive hosts (600 s; longer above 300 passive hosts at the default 0.5 polls per
  second), whatever its record says. An admitted host joins the active view while it has room, the passive
  one after; an active host that leaves (dead, evicted) is replaced by a random passive one, polled
  ``refresh_interval`` seconds later (it may have died since its last poll). A passive host that died goes at
  its slow poll (a failed one is asked again after ``refresh_interval``, then 4 × that, as an active host
  would be), or sooner when a search, persistence or an exchange finds it gone. So a node's steady polls cost
  at most ``active_size / refresh_max_interval + passive_rate`` per second (0.2 + 0.5), however long its
  list: before, every known host was polled on the refresh schedule, ``k / refresh_max_interval`` per second
  for ``k`` hosts (56 per second for a full list of 8,947). A longer list keeps costing memory and exchange
  samples only, and keeps making searches cheaper.
* Exchange (every ``exchange_interval`` s): one random known host gets this node's record and a sample of
  its list on route ``known-hosts`` and answers with a sample of its own, which is offered for admission
  (a periodic two-way gossip). A node that nobody polls (``known_by == 0``), or that knows fewer than
  ``FEW_HOSTS`` (32) hosts while its list has room, also introduces itself to up to 4 hosts of that answer
  that it does not know, so it gets known, and known hosts then introduce themselves and their samples to
  it in their own exchanges, so a newcomer's list fills sooner. (Before the admission probe
  held, every newcomer had ``known_by == 0`` for about ``refresh_interval`` and so did this anyway; without
  it, a 1,000-node P2 churn simulation's lists were 89 hosts long at the end instead of 121, and a
  retrieval cost 24.8 requests instead of 17.1.)
* Hosts found dead by other modules are removed through :meth:`DiversityHostManager.report_dead`, and so
  is a known host that refuses a known-hosts exchange (nothing listens there any more).
* Lost hosts are re-probed: a known host removed as unreachable or reported dead (not one evicted for
  diversity, nor an address reported dead that was never known) is offered again after
  ``reprobe_interval`` seconds, then at doubling intervals up to ``reprobe_max_interval`` (1, 2, 4, 8, 16,
  30 s by default), for ``lost_expiry`` seconds
  (:class:`~butter.hosts.Backoff`; at most ``LOST_CAPACITY`` hosts). A host removed because nothing
  listens there any more (connection refused) is first offered again after ``reprobe_max_interval``: its
  process is gone, and under churn almost always for good (the quick re-probes are for links that time
  out, as in a partition). A lost host that answers again suggests
  the links are back (a partition healed): every other lost host is then probed at once. So the overlay
  reconnects at the first re-probe of any lost host after the links come back (each host on its own
  jittered schedule: the more hosts were lost, the sooner one of them is tried; at the latest
  ``reprobe_max_interval`` × 1.2 seconds), even when each side still knows enough peers that discovery
  stays quiet. Most lost hosts are dead for good (churn): the cap, rather than the old 4 s, keeps their
  re-probes from costing more than the polls of the live hosts (a 250-node P2 churn simulation sent 32,572
  of its 94,187 quality requests to dead addresses with a 4 s cap, 18,040 of 79,578 with 30 s). The
  node's configured peers (setting ``peers``) are re-probed the same way for as long as they are not
  known, without expiry: from the start, and whenever they are lost.

The driver serves its own protocol, routes ``host-quality`` and ``known-hosts`` (:mod:`._protocol`), and
counts from the ``host-quality`` polls how many peers hold this node (:meth:`DiversityHostManager.known_by`).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Self

import anyio
from anyio.abc import TaskStatus
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..errors import ButterError, PeerGone
from ..hookspecs import hookimpl
from ..peers import HostQuality, PeerAddress, PeerInfo
from ..settings import budget_split
from ._backoff import Backoff
from ._diversity import decide
from ._protocol import (
    EXCHANGE_SAMPLE,
    MAX_HOLD_TIMEOUT,
    HostRoutes,
    exchange_body,
    quality_body,
    read_exchange_reply,
    read_quality_reply,
)
from ._sweep import JITTER, Sweep

if TYPE_CHECKING:
    from ..slots import NodeServices

__all__ = ["DiversityHostManager", "DiversityHostManagerPlugin", "DiversityOptions"]

log = logging.getLogger("butter.hosts")
HOLD_TIMEOUT_REFRESHES = 2.5  # a holder asks to be counted for this many intervals until its next poll
REFRESH_BACKOFF = 16  # refresh_max_interval, unset, is this many refresh_interval
REFRESH_FACTOR = 4.0  # each unchanged record stretches a host's poll interval this many times (up to the cap)
MIN_REFRESH_WAKE = 0.1  # of refresh_interval (reprobe_interval): polls (re-probes) due within this go together
LONELY_INTRODUCTIONS = 4  # hosts a node nobody holds (or knowing few) introduces itself to after an exchange
FEW_HOSTS = 32  # a node knowing fewer hosts than this (and than its capacity) introduces itself as a lonely one
LOST_CAPACITY = 1024  # lost hosts re-probed at once; more forget the oldest


class ViewOptions(BaseModel):
    """The options of the active and passive views (module docstring), shared by the drivers built on this one."""

    active_size: int = Field(
        32, ge=1, description="known hosts polled on the refresh schedule (the active view); the others are "
        "passive: kept, exchanged and used alike, but polled far less often")
    passive_interval: float = Field(
        600.0, gt=0, description="seconds between two polls of a passive host, at least")
    passive_rate: float = Field(
        0.5, gt=0, description="polls of passive hosts per second, at most (a longer list is polled in longer "
        "rounds)")


class DiversityOptions(ViewOptions):
    model_config = ConfigDict(extra="forbid")
    capacity: int | None = Field(None, ge=1, description="hosts kept; unset: from the memory budget")
    refresh_interval: float = Field(
        10.0, gt=0, description="seconds before a host's quality record is polled again after its record changed "
        "(4 × this after a probe that admitted it)")
    refresh_max_interval: float | None = Field(
        None, gt=0, description="seconds between polls of a host whose record keeps coming back unchanged, at "
        "most; unset: 16 × refresh_interval")
    exchange_interval: float = Field(10.0, gt=0, description="seconds between known-host exchanges")
    random_factor: float = Field(0.1, ge=0, le=1, description="probability of a random admission")
    max_failures: int = Field(
        3, ge=1, description="failed refreshes in a row before a host is removed (one where nothing listens "
        "any more, connection refused, is removed at the first)"
    )
    quality_timeout: float = Field(3.0, gt=0, description="seconds to wait for a quality record")
    exchange_timeout: float = Field(3.0, gt=0, description="seconds to wait for one known-hosts exchange")
    max_concurrency: int = Field(32, ge=1, description="quality requests in flight at once")
    reprobe_interval: float = Field(1.0, gt=0, description="seconds before a lost host is first offered again")
    reprobe_max_interval: float = Field(
        30.0, gt=0, description="the longest wait between two re-probes of a lost host (seconds)")
    lost_expiry: float = Field(600.0, gt=0, description="seconds a lost host keeps being re-probed")
    seed: int | None = Field(None, description="random seed, for reproducible simulations")

    @model_validator(mode="after")
    def _intervals(self) -> Self:
        if self.reprobe_max_interval < self.reprobe_interval:
            raise ValueError("reprobe_max_interval must be at least reprobe_interval")
        if self.refresh_max_interval is not None and self.refresh_max_interval < self.refresh_interval:
            raise ValueError("refresh_max_interval must be at least refresh_interval")
        return self

    @property
    def refresh_cap(self) -> float:
        """``refresh_max_interval``, or 16 × ``refresh_interval`` when unset (seconds)."""
        return self.refresh_max_interval or REFRESH_BACKOFF * self.refresh_interval


class DiversityHostManager:
    """A :class:`~butter.slots.HostManager` optimising the diversity of the known-host list."""

    def __init__(self, node: NodeServices, options: DiversityOptions) -> None:
        self.node = node
        self.options = options
        self._capacity = options.capacity or budget_split(int(node.settings.memory_budget)).host_capacity
        self._hosts: dict[PeerAddress, PeerInfo] = {}
        self._failures: dict[PeerAddress, int] = {}
        self._pending: set[PeerAddress] = set()
        self._rng = random.Random(options.seed)
        self._limiter = anyio.CapacityLimiter(options.max_concurrency)
        self._lost: Backoff[PeerAddress] = Backoff(
            options.reprobe_interval, options.reprobe_max_interval, options.lost_expiry, LOST_CAPACITY, self._rng
        )
        self._polls: Backoff[PeerAddress] = Backoff(
            options.refresh_interval, options.refresh_cap, float("inf"), self._capacity + 1, self._rng,
            factor=REFRESH_FACTOR,
        )  # the active view: every key is an active host
        self._passive: Sweep[PeerAddress] = Sweep(options.passive_interval, options.passive_rate, self._rng)
        self._configured = {PeerAddress.parse(text) for text in node.settings.peers}
        self._routes = HostRoutes(node, self)

    @property
    def capacity(self) -> int:
        return self._capacity

    def peers(self) -> list[PeerInfo]:
        return list(self._hosts.values())

    def sample(self, k: int) -> list[PeerInfo]:
        hosts = list(self._hosts.values())
        return self._rng.sample(hosts, min(k, len(hosts)))

    async def offer(self, address: PeerAddress) -> bool:
        """Consider ``address`` for admission; returns whether it is now known. Never raises for a peer
        that is unreachable or answers nonsense: it is just not admitted."""
        if address in self._hosts or self._is_self(address):
            self._lost.discard(address)
            return address in self._hosts
        if address in self._pending:
            return False
        self._pending.add(address)
        # With room the candidate will be admitted: the probe already holds it, as the first poll would
        holds = len(self._hosts) < self._capacity
        try:
            info = await self._fetch(address, holds=holds, until_next=self._held_first_poll if holds else None)
        finally:
            self._pending.discard(address)
        if info is None or info.node_id == self.node.node_id:
            return False
        self._answered(address)
        if address in self._hosts:
            return True
        admitted = await self._admit(address, info, held=holds)
        if holds and not admitted:
            self.node.spawn(self._release, address)
        return admitted

    def _answered(self, address: PeerAddress) -> None:
        """``address`` answered: it is no longer lost, whatever the admission decides. If it was lost, the
        link to it is back, maybe a partition healed: every other lost host is probed at once."""
        if address in self._lost:
            self._lost.discard(address)
            self._lost.hurry(anyio.current_time())

    @property
    def _held_first_poll(self) -> float:
        """Seconds from a holding admission probe to the host's first poll, at most: the probe counts as the
        first poll, so an active host's schedule starts one step further (``refresh_interval`` × 4); a
        host joining the passive view is next polled about a passive round later (:meth:`Sweep.round`)."""
        if self._active_has_room:
            return self.options.refresh_interval * REFRESH_FACTOR
        return self._passive.round()

    @property
    def _active_has_room(self) -> bool:
        """Whether the active view holds fewer than ``active_size`` hosts (a host added now would be active)."""
        return len(self._polls) < self.options.active_size

    async def _admit(self, address: PeerAddress, info: PeerInfo, *, held: bool) -> bool:
        """Admit ``info`` (it answered at ``address``; ``held``: to a probe that held it) if the diversity rules
        say so; returns whether it is known."""
        decision = decide(self.peers(), info, self._capacity, self.options.random_factor, self._rng)
        if decision.evict is not None:
            # The victim's record may be stale: refresh it, and decide again if others no longer know it.
            fresh = await self._fetch(decision.evict.address, holds=True)
            if fresh is not None and decision.evict.address in self._hosts:
                self._hosts[decision.evict.address] = fresh
                if fresh.quality.known_by < 2:
                    decision = decide(self.peers(), info, self._capacity, self.options.random_factor, self._rng)
        if not decision.admit or address in self._hosts or len(self._hosts) > self._capacity:
            log.debug("not admitting %s: %s", address, decision.reason)
            return address in self._hosts
        if decision.evict is not None:
            if decision.evict.address not in self._hosts:
                return False
            self._remove(decision.evict.address, f"evicted for diversity ({decision.reason})")
            self.node.spawn(self._release, decision.evict.address)
        elif len(self._hosts) >= self._capacity:
            return False
        self._join(address, info, decision.reason, held=held)
        return True

    def _join(self, address: PeerAddress, info: PeerInfo, reason: str, *, held: bool) -> None:
        """Add ``info`` (it answered at ``address``) to the list and schedule its polls (``held``: its probe
        held it, so the first poll comes one step later)."""
        self._hosts[address] = info
        now = anyio.current_time()
        if self._active_has_room:
            self._polls.add(address, now, first=self._held_first_poll if held else None)
        else:  # passive: polled a round from now, or soon if its probe did not hold it
            self._passive.add(address, now, None if held else self.options.refresh_interval)
        log.info("peer joined: %s (%s) [%s]", info.node_id[:8], address, reason,
                 extra={"event": "peer_joined", "peer": info.node_id})
        self.node.emit("butter_peer_discovered", peer=info)

    async def _release(self, address: PeerAddress) -> None:
        """Tell an evicted host this node no longer holds it, so its ``known_by`` drops at once."""
        await self._fetch(address, holds=False)

    def known_by(self) -> int:
        """How many peers hold this node in their lists (their ``host-quality`` polls with ``holds``)."""
        return self._routes.known_by()

    def report_dead(self, address: PeerAddress) -> None:
        """Remove ``address`` at once; another module found it unreachable. It is re-probed (module docstring);
        an address this node did not know is not: it was never lost (other modules report the group members
        and search answers they found dead; a 250-node P2 churn simulation reported 2,660 such addresses in
        70 s, and re-probing them admitted none)."""
        if address in self._hosts:
            self._remove(address, "reported dead", lost=True)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._refresh_due)
            tg.start_soon(self._every, self.options.exchange_interval, self.exchange)
            now = anyio.current_time()
            for address in self._configured:
                self._lost.add(address, now, expiry=float("inf"))
            tg.start_soon(self._reprobe_lost)
            task_status.started()

    async def _reprobe_lost(self) -> None:
        """Offer lost hosts again as their backoff comes due (module docstring), each in its own task: a host
        that does not answer holds up no other; those due within a tenth of ``reprobe_interval`` together."""
        least = MIN_REFRESH_WAKE * self.options.reprobe_interval
        while True:
            wait = self._lost.next_due() - anyio.current_time()
            await anyio.sleep(min(max(wait, least), self.options.reprobe_interval))
            due = self._lost.due(anyio.current_time())
            if due:
                log.debug("re-probing %d lost hosts", len(due))
            for address in due:
                self.node.spawn(self.offer, address)

    async def _refresh_due(self) -> None:
        """Poll the known hosts as their schedules come due (module docstring), those due together at once."""
        least = MIN_REFRESH_WAKE * self.options.refresh_interval
        while True:
            wait = min(self._polls.next_due(), self._passive.next_due()) - anyio.current_time()
            await anyio.sleep(min(max(wait, least), self.options.refresh_interval))
            now = anyio.current_time()
            due = [address for address in self._polls.due(now) + self._passive.due(now) if address in self._hosts]
            await self._poll(due)

    async def refresh(self) -> None:
        """Ask every known host for its quality record now, whatever its schedule; remove the ones that keep
        failing."""
        await self._poll(list(self._hosts))

    async def _poll(self, addresses: list[PeerAddress]) -> None:
        """Ask each of ``addresses`` for its quality record, at once; one that answers with a changed
        record has its schedule started over; one that failed ``max_failures`` times in a row is removed."""

        async def one(address: PeerAddress) -> None:
            try:
                info: PeerInfo | None = await self._quality(address, holds=True)
            except PeerGone:
                self._remove(address, "gone (connection refused)", lost=True, refused=True)
                return
            except ButterError as exc:
                log.debug("no quality record from %s: %s", address, exc)
                info = None
            old = self._hosts.get(address)
            if old is None:
                return
            if info is None:
                failures = self._failures[address] = self._failures.get(address, 0) + 1
                if failures >= self.options.max_failures:
                    self._remove(address, "unreachable", lost=True)
                elif address in self._passive:  # ask again soon, as an active host would be
                    wait = self.options.refresh_interval * REFRESH_FACTOR ** (failures - 1)
                    self._passive.add(address, anyio.current_time(), wait)
                elif failures == 1:  # ask again soon, not after the backed-off wait
                    self._polls.discard(address)
                    self._polls.add(address, anyio.current_time())
                return
            self._failures.pop(address, None)
            self._hosts[address] = info
            if address in self._polls and _changed(old.quality, info.quality):
                self._polls.discard(address)
                self._polls.add(address, anyio.current_time())

        async with anyio.create_task_group() as tg:
            for address in addresses:
                tg.start_soon(one, address)

    async def exchange(self) -> None:
        """Swap samples of known hosts with one random known host."""
        if not self._hosts:
            return
        partner = self._rng.choice(list(self._hosts.values()))
        sample = await self._exchange_with(partner.address)
        if sample is None:
            return
        self.node.introduce(sample)
        few = len(self._hosts) < min(FEW_HOSTS, self._capacity)
        lonely = (few or self.known_by() == 0) and self.node.uptime >= self.options.refresh_interval
        if lonely:
            for address in sample[:LONELY_INTRODUCTIONS]:
                if address not in self._hosts and not self._is_self(address):
                    await self._exchange_with(address)

    async def _exchange_with(self, address: PeerAddress) -> list[PeerAddress] | None:
        body = exchange_body(self.node.info(), self.sample(EXCHANGE_SAMPLE))
        try:
            reply = await self.node.request(address, "known-hosts", body, timeout=self.options.exchange_timeout)
            return read_exchange_reply(reply, self.node.settings.max_frame)
        except PeerGone:
            if address in self._hosts:  # nothing listens there any more, as a refused poll would find
                self._remove(address, "gone (connection refused)", lost=True, refused=True)
            return None
        except ButterError as exc:
            log.debug("known-hosts exchange with %s failed: %s", address, exc)
            return None

    async def _every(self, interval: float, action: Callable[[], Awaitable[None]]) -> None:
        while True:
            await anyio.sleep(interval * self._rng.uniform(0.8, 1.2))
            await action()

    async def _fetch(self, address: PeerAddress, *, holds: bool, until_next: float | None = None) -> PeerInfo | None:
        """:meth:`_quality`, or ``None`` if the record cannot be had."""
        try:
            return await self._quality(address, holds=holds, until_next=until_next)
        except ButterError as exc:
            log.debug("no quality record from %s: %s", address, exc)
            return None

    async def _quality(self, address: PeerAddress, *, holds: bool, until_next: float | None = None) -> PeerInfo:
        """The host's quality record. ``holds`` tells the host whether this node keeps it in its list, so that
        only real holders count toward its ``known_by``; the hold lasts 2.5 times the wait until its next
        poll (``until_next`` seconds, default: as scheduled; at least ``refresh_interval``). Raises
        :class:`~butter.errors.ButterError` when it cannot be had (:class:`~butter.errors.PeerGone` when
        nothing listens at ``address``)."""
        if until_next is None:
            due_at = min(self._polls.due_at(address), self._passive.due_at(address))
            until_next = due_at - anyio.current_time()
        longest = (1 + JITTER) * max(self.options.refresh_cap, self._passive.round())
        until_next = min(max(until_next, self.options.refresh_interval), longest)
        hold_timeout = min(HOLD_TIMEOUT_REFRESHES * until_next, MAX_HOLD_TIMEOUT)
        body = quality_body(self.node.node_id, holds=holds, hold_timeout=hold_timeout)
        async with self._limiter:
            reply = await self.node.request(address, "host-quality", body, timeout=self.options.quality_timeout)
            info = read_quality_reply(reply, self.node.settings.max_frame)
        return PeerInfo(info.node_id, address, info.quality, anyio.current_time())

    def _is_self(self, address: PeerAddress) -> bool:
        try:
            return address == self.node.address
        except RuntimeError:
            return False

    def _promote(self) -> None:
        """Move a random passive host, if any, into the active view, which has lost a host: it is polled
        ``refresh_interval`` seconds from now (it may have died since its last passive poll), then on the
        active schedule."""
        passive = [address for address in self._hosts if address in self._passive]
        if passive and self._active_has_room:
            address = self._rng.choice(passive)
            self._passive.discard(address)
            self._polls.add(address, anyio.current_time())

    def _remove(self, address: PeerAddress, why: str, *, lost: bool = False, refused: bool = False) -> None:
        """Drop ``address`` from the list; ``lost``: it failed (rather than being evicted), so re-probe it;
        ``refused``: nothing listens there any more, so its re-probes start at ``reprobe_max_interval``
        (a configured peer's start at ``reprobe_interval`` all the same)."""
        info = self._hosts.pop(address, None)
        self._failures.pop(address, None)
        active = address in self._polls
        self._polls.discard(address)
        self._passive.discard(address)
        if active:
            self._promote()
        if lost:
            configured = address in self._configured
            slow = refused and not configured
            self._lost.add(address, anyio.current_time(), expiry=float("inf") if configured else None,
                           first=self.options.reprobe_max_interval if slow else None)
        if info is not None:
            log.info("peer left: %s (%s): %s", info.node_id[:8], address, why,
                     extra={"event": "peer_left", "peer": info.node_id})
            self.node.emit("butter_peer_lost", peer=info)


def _changed(old: HostQuality, new: HostQuality) -> bool:
    """Whether a host's record changed enough to restart its poll schedule: its uptime went back (a
    restart), its ambassador role changed, its ``known_by`` moved between 0, 1 and more (the admission and
    eviction rules tell them apart), its known hosts went to or from 0 (rule 3 of :func:`decide`), or its
    available storage went to or from 0 or at least doubled or halved (persistence picks recruits by it).
    Counts that drift, even twofold as in a growing overlay they do all the time, do not restart it: a record
    is at most ``refresh_max_interval`` old anyway. (Restarting on a twofold ``known_by`` or known-hosts
    change cost a 250-node P2 churn simulation 15,742 extra schedules in 70 s.)"""
    return (
        new.uptime < old.uptime
        or new.ambassador != old.ambassador
        or min(new.known_by, 2) != min(old.known_by, 2)
        or (old.known_hosts == 0) != (new.known_hosts == 0)
        or _moved(old.available_storage, new.available_storage)
    )


def _moved(a: int, b: int) -> bool:
    """Whether a count went to or from 0, or changed by a factor of 2 or more."""
    low, high = sorted((a, b))
    return (low == 0) != (high == 0) or (low > 0 and high >= 2 * low)


class DiversityHostManagerPlugin:
    """Entry point ``butter.host_manager:diversity``."""

    Options = DiversityOptions

    def __init__(self, options: DiversityOptions) -> None:
        self.options = options

    @hookimpl
    def butter_host_manager(self, node: NodeServices) -> DiversityHostManager:
        return DiversityHostManager(node, self.options)
