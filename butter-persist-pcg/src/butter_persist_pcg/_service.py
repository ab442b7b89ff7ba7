"""The PCG persistence service: routes, the heartbeat loop, recruitment, shedding and hand-off.

See ``_group.py`` for the group rules and this package's README for the messages and timers.

Who may say what (when the transport authenticates callers, ``RouteRequest.caller.node_id``; otherwise every
body is taken at its word, as before): a heartbeat's ``from`` must be the caller, a join must list the
caller (its inviter) among the members, and only a member of the group may ask this node to leave it.
A refused message changes nothing.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from collections.abc import Mapping

import anyio
from anyio.abc import TaskStatus

from butter import SENDER_MISMATCH, RouteRequest
from butter.blocks import Manifest, load_manifest
from butter.capabilities import ReplicaStatus
from butter.errors import BlockCorrupted, ButterError, IncompleteItem, PeerUnreachable, RouteError, StoreFull
from butter.hookspecs import hookimpl
from butter.hosts import classify
from butter.peers import PeerAddress, PeerInfo
from butter.slots import NodeServices

from ._group import GroupView
from ._messages import (
    GroupBeat,
    Heartbeat,
    HeartbeatReply,
    Join,
    content_id_body,
    decode_content_id,
)
from ._options import PcgOptions

__all__ = ["PcgPersistence"]

log = logging.getLogger("butter.pcg")

ROUTE_JOIN = "pcg-join"
ROUTE_LEAVE = "pcg-leave"
ROUTE_HEARTBEAT = "pcg-heartbeat"
NOT_A_MEMBER = "not-a-member"  # error code: an authenticated caller outside the group asked this node to leave it


COUNTERS = ("heartbeats_sent", "joins_sent", "joins_accepted", "sheds", "blocks_served", "leaves_refused")


class PcgPersistence:
    """A :class:`~butter.slots.Persistence` keeping each item in a Peer Content Group.

    It offers four capabilities (:mod:`butter.capabilities`) to other plugins and tools:

    * ``holders(content_id)`` (:class:`~butter.capabilities.ItemHolders`): the addresses of the group's
      members as this node sees them, itself included; ``[]`` when it keeps no such group.
    * ``kept_items()`` (:class:`~butter.capabilities.KeptItems`): the content ids of its groups.
    * ``group_status(content_id)`` (:class:`~butter.capabilities.GroupStatus`): replicas in view, target
      (popularity included) and state, or ``None``.
    * ``counters()`` (:class:`~butter.capabilities.Counters`): ``heartbeats_sent`` (heartbeat messages, one
      per peer and round), ``joins_sent`` / ``joins_accepted`` (invitations), ``sheds`` (members asked to
      leave), ``blocks_served`` (``fetch-block`` hits on this node), ``leaves_refused`` (leaves from
      non-members).
    """

    def __init__(self, node: NodeServices, options: PcgOptions) -> None:
        self.node = node
        self.options = options
        self.timeout = options.member_timeout or 2.5 * options.heartbeat_interval
        self._groups: dict[str, GroupView] = {}
        self._block_refs: dict[str, set[str]] = defaultdict(set)  # block address -> content ids using it
        self._hits: dict[str, list[float]] = defaultdict(list)  # content id -> times it was fetched
        self._busy: set[str] = set()  # groups with a recruit/shed job under way
        self._rng = random.Random(options.seed)
        self._counts = dict.fromkeys(COUNTERS, 0)
        node.route(ROUTE_JOIN, self._serve_join)
        node.route(ROUTE_LEAVE, self._serve_leave)
        node.route(ROUTE_HEARTBEAT, self._serve_heartbeat)
        node.subscribe(self)  # for butter_block_served

    # -- Persistence protocol ---------------------------------------------------------------------------

    def available_storage(self) -> int:
        return self.node.blocks.free

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        await self._adopt_stored_groups()
        task_status.started()
        await anyio.sleep(self._rng.uniform(0, self.options.heartbeat_interval))
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("heartbeat round failed; trying again next round")
            delay = self.options.heartbeat_interval
            if self._rng.random() < self.options.palpitation:  # a palpitation: an early, random heartbeat
                delay = self._rng.uniform(0, delay)
            await anyio.sleep(delay)

    async def keep(self, content_id: str) -> None:
        """Start the group of an item whose manifest and blocks are in the node's store; replicas are
        recruited in the background right away. Raises :class:`~butter.errors.IncompleteItem` if a block is
        missing."""
        data = await self.node.blocks.get(content_id)
        if data is None:
            raise IncompleteItem((content_id,), f"manifest {content_id} is not in the store")
        manifest = load_manifest(content_id, data)
        missing = tuple([a for a in dict.fromkeys(manifest.blocks) if not await self.node.blocks.has(a)])
        if missing:
            raise IncompleteItem(missing)
        size = len(data) + manifest.size
        view = self._create_group(content_id, manifest, size)
        blocks = len(manifest.blocks)
        log.info("keeping item %s (%d bytes, %d %s)", content_id[:12], manifest.size, blocks,
                 "block" if blocks == 1 else "blocks")
        self.node.spawn(self._maintain, view)

    async def hand_off(self) -> None:
        """Graceful exit: for each group, recruit a replacement outside the group, then
        tell the other members this node is leaving, so no group goes cold because of it."""
        if not self._groups:
            return
        log.info("handing off %d groups before leaving", len(self._groups))
        async with anyio.create_task_group() as tg:
            for view in list(self._groups.values()):
                tg.start_soon(self._recruit, view, 1)
        await self._send_heartbeats(leaving=True)

    # -- capabilities (butter.capabilities), for retrieval and tools --------------------------------------

    def holders(self, content_id: str) -> list[PeerAddress]:
        """Addresses of the group members this node knows of (itself included), or [] if not a member."""
        view = self._groups.get(content_id)
        return [m.address for m in view.members.values()] if view else []

    def kept_items(self) -> list[str]:
        """The content ids of the groups this node is a member of."""
        return list(self._groups)

    def group_status(self, content_id: str) -> ReplicaStatus | None:
        """The group's replicas in view, target and state, or ``None`` when this node is not a member."""
        view = self._groups.get(content_id)
        if view is None:
            return None
        target = self._target(view)
        members = tuple(m.address for m in view.members.values())
        return ReplicaStatus(view.count, target, view.state(target), members)

    def counters(self) -> Mapping[str, int]:
        """A snapshot of the counters named in the class docstring."""
        return dict(self._counts)

    # -- the heartbeat loop -----------------------------------------------------------------------------

    async def tick(self) -> None:
        """One heartbeat round: expire silent members, heartbeat every peer we share a group with (one
        message per peer), then let the leader of each group recruit or shed."""
        now = anyio.current_time()
        for view in self._groups.values():
            for gone in view.expire(now, self.timeout):
                log.debug("group %s: member %s timed out", view.content_id[:12], gone[:8])
        await self._send_heartbeats(leaving=False)
        for view in list(self._groups.values()):
            await self._maintain(view)

    async def _send_heartbeats(self, *, leaving: bool) -> None:
        now = anyio.current_time()
        batches: dict[str, list[GroupBeat]] = defaultdict(list)
        addresses: dict[str, PeerAddress] = {}
        for view in self._groups.values():
            beat = GroupBeat(view.content_id, view.size, self._own_hits(view.content_id), view.entries(now))
            for node_id, member in view.others().items():
                batches[node_id].append(beat)
                addresses[node_id] = member.address
        if not batches:
            return
        limiter = anyio.CapacityLimiter(self.options.max_concurrency)

        async def send(node_id: str) -> None:
            message = Heartbeat(self.node.node_id, self.node.address, leaving, batches[node_id])
            async with limiter:
                self._counts["heartbeats_sent"] += 1
                try:
                    reply = HeartbeatReply.decode(await self.node.request(
                        addresses[node_id], ROUTE_HEARTBEAT, message.encode(), timeout=self.options.heartbeat_timeout))
                except PeerUnreachable:
                    self._member_dead(node_id, addresses[node_id])
                    return
                except ButterError as exc:
                    log.debug("heartbeat to %s failed: %s", node_id[:8], exc)
                    return
            for content_id in reply.unknown:
                view = self._groups.get(content_id)
                if view is not None and view.drop(node_id, anyio.current_time()):
                    log.debug("group %s: %s says it is not a member", content_id[:12], node_id[:8])

        async with anyio.create_task_group() as tg:
            for node_id in batches:
                tg.start_soon(send, node_id)

    def _member_dead(self, node_id: str, address: PeerAddress) -> None:
        now = anyio.current_time()
        for view in self._groups.values():
            view.drop(node_id, now)
        self.node.hosts.report_dead(address)

    async def _maintain(self, view: GroupView) -> None:
        """Recruit or shed for one group if this node leads it; one job per group at a time. A failure is
        logged and the group is tried again next round: it never stops the node."""
        if not view.is_leader or view.content_id not in self._groups or anyio.current_time() < view.settled_at:
            return
        if view.content_id in self._busy:
            return
        self._busy.add(view.content_id)
        try:
            await self._maintain_now(view)
        except Exception:
            log.exception("group %s: maintenance failed", view.content_id[:12])
        finally:
            self._busy.discard(view.content_id)

    async def _maintain_now(self, view: GroupView) -> None:
        target = self._target(view)
        state = view.state(target)
        if state == "cold":
            view.hot_ticks = 0
            await self._recruit(view, target - view.count)
        elif state == "hot":
            view.hot_ticks += 1
            if view.hot_ticks >= self.options.hot_ticks:
                await self._shed(view, target)
        else:
            view.hot_ticks = 0

    # -- recruitment and shedding -------------------------------------------------

    def _candidates(self, view: GroupView) -> list[PeerInfo]:
        """Known hosts outside the group with room for the item, members' missing classes first, so
        replicas land on diverse hosts (the README's promise, which the original never kept)."""
        member_addresses = {m.address for m in view.members.values()}
        pool = [p for p in self.node.hosts.peers()
                if p.address not in member_addresses and p.node_id not in view.members
                and p.quality.available_storage >= view.size]
        if not pool:
            return []
        qualities = [p.quality for p in pool]
        n = len(qualities)
        means = (sum(q.uptime for q in qualities) / n, sum(q.available_storage for q in qualities) / n,
                 sum(q.known_hosts for q in qualities) / n)
        member_classes = {classify(p.quality, means) for p in self.node.hosts.peers() if p.node_id in view.members}
        self._rng.shuffle(pool)
        pool.sort(key=lambda p: classify(p.quality, means) in member_classes)
        return pool

    async def _recruit(self, view: GroupView, wanted: int) -> None:
        attempts = 0
        for candidate in self._candidates(view):
            if wanted <= 0 or attempts >= self.options.max_join_attempts or view.content_id not in self._groups:
                break
            attempts += 1
            if await self._invite(view, candidate.address, candidate.node_id):
                wanted -= 1

    async def _invite(self, view: GroupView, address: PeerAddress, node_id: str) -> bool:
        self._counts["joins_sent"] += 1
        join = Join(view.content_id, view.size, view.entries(anyio.current_time()))
        try:
            await self.node.request(address, ROUTE_JOIN, join.encode(), timeout=self.options.join_timeout)
        except PeerUnreachable:
            self.node.hosts.report_dead(address)
            return False
        except ButterError as exc:
            log.debug("group %s: %s refused to join: %s", view.content_id[:12], node_id[:8], exc)
            return False
        view.heard(node_id, address, anyio.current_time())
        self._counts["joins_accepted"] += 1
        log.debug("group %s: recruited %s (%d members)", view.content_id[:12], node_id[:8], view.count)
        return True

    async def _shed(self, view: GroupView, target: int) -> None:
        for node_id in view.shed_candidates(target):
            member = view.members.get(node_id)
            if member is None:
                continue
            try:
                await self.node.request(member.address, ROUTE_LEAVE, content_id_body(view.content_id),
                                        timeout=self.options.heartbeat_timeout)
            except ButterError as exc:
                log.debug("group %s: shedding %s failed: %s", view.content_id[:12], node_id[:8], exc)
            view.drop(node_id, anyio.current_time())
            self._counts["sheds"] += 1
        view.hot_ticks = 0

    # -- local group bookkeeping ------------------------------------------------------------------------

    def _create_group(self, content_id: str, manifest: Manifest, size: int) -> GroupView:
        view = self._groups.get(content_id)
        if view is None:
            view = GroupView(content_id, size, self.node.node_id, self.node.address, self.options.replicas)
            self._groups[content_id] = view
            for address in [content_id, *manifest.blocks]:
                self._block_refs[address].add(content_id)
        return view

    async def _forget(self, content_id: str) -> None:
        """Leave a group and delete the blocks no other group on this node uses."""
        if self._groups.pop(content_id, None) is None:
            return
        for address, users in list(self._block_refs.items()):
            users.discard(content_id)
            if not users:
                del self._block_refs[address]
                await self.node.blocks.delete(address)

    async def _adopt_stored_groups(self) -> None:
        """After a restart with a durable store, rejoin as a lone member of every item whose manifest and
        blocks are all still here; heartbeats from the old group (or recruitment) do the rest."""
        for address in await self.node.blocks.block_ids():
            data = await self.node.blocks.get(address)
            if data is None:
                continue
            try:
                manifest = Manifest.decode(data)
            except ButterError:
                continue
            if all([await self.node.blocks.has(b) for b in manifest.blocks]):
                self._create_group(address, manifest, len(data) + manifest.size)
        if self._groups:
            log.info("resumed %d groups from the local store", len(self._groups))

    def _target(self, view: GroupView) -> int:
        return view.target(self._own_hits(view.content_id), self.options.popularity_hits, self.options.max_replicas)

    def _own_hits(self, content_id: str) -> int:
        hits = self._hits.get(content_id)
        if not hits:
            return 0
        horizon = anyio.current_time() - self.options.popularity_window
        hits[:] = [t for t in hits if t >= horizon]
        return len(hits)

    # -- routes -----------------------------------------------------------------------------------------

    async def _serve_heartbeat(self, request: RouteRequest) -> bytes:
        """A member's heartbeat. An authenticated caller must be the ``from`` it names, or the heartbeat is
        refused (``sender-mismatch``) before any view changes: no one can speak, or leave, for another
        member."""
        beat = Heartbeat.decode(request.body)
        request.check_sender(beat.sender)
        now = anyio.current_time()
        unknown = []
        for group in beat.groups:
            view = self._groups.get(group.content_id)
            if view is None:
                unknown.append(group.content_id)
                continue
            if beat.leaving:
                view.drop(beat.sender, now)
                continue
            view.heard(beat.sender, beat.address, now, group.hits)
            view.merge(group.members, now, self.timeout)
        return HeartbeatReply(unknown).encode()

    async def _serve_join(self, request: RouteRequest) -> bytes:
        """An invitation. The inviter lists itself among the members; an authenticated caller that does not
        is refused (``sender-mismatch``) before anything is fetched."""
        join = Join.decode(request.body)
        caller = request.caller.node_id
        if caller is not None and all(node_id != caller for node_id, _, _ in join.members):
            raise RouteError(
                SENDER_MISMATCH, f"the invitation does not list its sender, node {caller}, as a member"
            )
        now = anyio.current_time()
        view = self._groups.get(join.content_id)
        if view is None:
            manifest = await self._fetch_item(join)
            view = self._create_group(join.content_id, manifest, join.size)
            view.settled_at = now + 2 * self.options.heartbeat_interval
            log.debug("joined group %s", join.content_id[:12])
        view.merge(join.members, now, self.timeout)
        return b""

    async def _fetch_item(self, join: Join) -> Manifest:
        sources = [address for node_id, address, _ in join.members if node_id != self.node.node_id]
        if join.size > self.node.blocks.free:
            raise RouteError("store-full", f"{join.size} bytes asked, {self.node.blocks.free} free")
        manifest_block = await self._fetch_block(join.content_id, sources)
        manifest = Manifest.decode(manifest_block)
        missing = [a for a in dict.fromkeys(manifest.blocks) if not await self.node.blocks.has(a)]
        fetched: dict[str, bytes] = {}
        limiter = anyio.CapacityLimiter(self.options.fetch_concurrency)

        async def one(address: str) -> None:
            async with limiter:
                fetched[address] = await self._fetch_block(address, sources)

        try:
            async with anyio.create_task_group() as tg:
                for address in missing:
                    tg.start_soon(one, address)
        except BaseExceptionGroup as group:
            raise RouteError("fetch-failed", f"could not fetch the item's blocks: {group.exceptions[0]}") from None
        try:
            for address, data in fetched.items():
                await self.node.blocks.put(address, data)
            await self.node.blocks.put(join.content_id, manifest_block)
        except StoreFull as exc:
            raise RouteError("store-full", str(exc)) from None
        return manifest

    async def _fetch_block(self, address: str, sources: list[PeerAddress]) -> bytes:
        for source in sources:
            try:
                return await self.node.fetch_block(source, address, timeout=self.options.fetch_timeout)
            except BlockCorrupted:
                log.warning("block %s from %s failed verification; trying another member", address[:12], source)
            except ButterError:
                continue
        raise RouteError("fetch-failed", f"no member could provide block {address[:12]}")

    async def _serve_leave(self, request: RouteRequest) -> bytes:
        """The leader sheds this node from a group. An authenticated caller must be a member of the group as
        this node sees it, or the request is refused (``not-a-member``, counted in
        ``counters()["leaves_refused"]``) and the replica kept."""
        content_id = decode_content_id(request.body)
        view = self._groups.get(content_id)
        if request.caller.node_id is not None and view is not None and request.caller.node_id not in view.members:
            self._counts["leaves_refused"] += 1
            log.debug("group %s: refused a leave from non-member %s", content_id[:12], request.caller.node_id[:8])
            raise RouteError(NOT_A_MEMBER, f"node {request.caller.node_id} is not a member of group {content_id}")
        log.debug("asked to leave group %s", content_id[:12])
        await self._forget(content_id)
        return b""

    @hookimpl
    def butter_block_served(self, node: NodeServices, block_id: str) -> None:
        """Count a retrieval hit when this node serves the manifest of an item it keeps."""
        if block_id in self._groups:
            self._hits[block_id].append(anyio.current_time())
        self._counts["blocks_served"] += 1
