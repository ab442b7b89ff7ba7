"""The PCG persistence service: routes, the heartbeat loop, recruitment, shedding and hand-off.

See ``_group.py`` for the group rules and this package's README for the messages and timers.

Who may say what (when the transport authenticates callers, ``RouteRequest.caller.node_id``; otherwise every
body is taken at its word, as before): a heartbeat's ``from`` must be the caller, a join must list the
caller (its inviter) among the members, and only a member of the group may ask this node to leave it.
A refused message changes nothing.

Deleted items (their owner's tombstone, :mod:`butter.tombstones`, kept by the node): an invitation to one is
refused ``deleted`` and a heartbeat naming one is answered as usual; either way the tombstone is sent to the
inviter or sender, so that a holder that missed the deletion drops its copy rather than keep or spread it.

Signed records (:mod:`butter.records`, handed over by :meth:`PcgPersistence.keep_record`): a group keyed by a
record's name keeps the newest record of the name, in the node's record book, instead of blocks. Each
member's beat for it carries the sequence of the record it keeps (``seq``); a member that hears a higher one
pulls the record from that member (route ``get-record``) and offers it to its book, which verifies it: a
forged, misnamed, expired or older record is refused and counted (``records_refused``), never kept. An
invitation carries the inviter's record, which the recruit verifies the same way (refused: ``bad-record``).
A group whose record has expired from the book is left.
"""

from __future__ import annotations

import logging
import random
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from functools import partial

import anyio
from anyio.abc import TaskStatus

from butter import SENDER_MISMATCH, RouteRequest, codec
from butter.blocks import Manifest, load_manifest
from butter.capabilities import ReplicaStatus
from butter.errors import ButterError, IncompleteItem, PeerGone, RouteError, StoreFull
from butter.hookspecs import hookimpl
from butter.hosts import classify
from butter.peers import PeerAddress, PeerInfo
from butter.records import MAX_RECORD_SIZE, ROUTE_GET_RECORD, SignedRecord
from butter.slots import NodeServices
from butter.tombstones import ROUTE_DELETE, delete_body

from ._group import GroupView
from ._invitations import Invitations
from ._lost import LostMember, LostMembers
from ._messages import (
    MAX_JOIN_BYTES,
    MAX_MESSAGE,
    GroupBeat,
    Heartbeat,
    HeartbeatReply,
    Invitation,
    Join,
    JoinReply,
    Refusal,
    content_id_body,
    decode_content_id,
)
from ._options import PcgOptions
from ._replicas import Fetcher, LocalReplicas

__all__ = ["PcgPersistence"]

log = logging.getLogger("butter.pcg")

ROUTE_JOIN = "pcg-join"
ROUTE_LEAVE = "pcg-leave"
ROUTE_HEARTBEAT = "pcg-heartbeat"
NOT_A_MEMBER = "not-a-member"  # error code: an authenticated caller outside the group asked this node to leave it
DELETED = "deleted"  # error code: an invitation to an item whose owner deleted it (this node keeps the tombstone)
BAD_RECORD = "bad-record"  # error code: an invitation whose record the recruit's book refused (forged, expired...)
JOINS_FULL = "joins-full"  # error code: this node already serves max_joins invitations; invite another candidate


COUNTERS = (
    "heartbeats_sent", "joins_sent", "invitations_sent", "invitations_accepted", "sheds", "blocks_served",
    "leaves_refused", "blocks_repaired", "members_recovered", "records_pulled", "records_refused",
)
MAX_TOMBSTONES_PER_BEAT = 16  # tombstones sent back for one heartbeat naming deleted groups
RESUME_ROUNDS = 5  # rounds a group resumed from the store waits for its old members before it recruits
PAIR_SILENCE = 1.1  # rounds a pair's lower id waits to hear the higher before it heartbeats a group itself


class PcgPersistence:
    """A :class:`~butter.slots.Persistence` keeping each item in a Peer Content Group.

    It offers four capabilities (:mod:`butter.capabilities`) to other plugins and tools:

    * ``holders(content_id)`` (:class:`~butter.capabilities.ItemHolders`): the addresses of the group's
      members as this node sees them, itself included; ``[]`` when it keeps no such group.
    * ``kept_items()`` (:class:`~butter.capabilities.KeptItems`): the content ids of its groups.
    * ``group_status(content_id)`` (:class:`~butter.capabilities.GroupStatus`): replicas in view, target
      (popularity included) and state, or ``None``.
    * ``await forget_item(content_id)`` (:class:`~butter.capabilities.ForgetItems`): leave the item's group and
      free its blocks that no other group uses (its owner deleted it).
    * ``counters()`` (:class:`~butter.capabilities.Counters`): ``heartbeats_sent`` (heartbeat messages, one
      per peer and round), ``joins_sent`` (``pcg-join`` requests, each carrying up to ``max_joins``
      invitations to one peer), ``invitations_sent`` / ``invitations_accepted`` (items), ``sheds`` (members asked to
      leave), ``blocks_served`` (``fetch-block`` hits on this node), ``leaves_refused`` (leaves from
      non-members), ``blocks_repaired`` (blocks re-fetched from members after this node lost them),
      ``members_recovered`` (lost members found again and put back in their groups), ``records_pulled``
      (newer records pulled from a member), ``records_refused`` (records from members or invitations that
      the book refused: forged, misnamed, expired or older than the one kept).
    * ``await keep_record(record)`` (:class:`~butter.capabilities.KeepRecords`): keep the record's name in a
      group (module docstring).
    """

    def __init__(self, node: NodeServices, options: PcgOptions) -> None:
        self.node = node
        self.options = options
        self.timeout = options.member_timeout or 2.5 * options.heartbeat_interval
        self._groups: dict[str, GroupView] = {}
        self._partners: dict[str, int] = {}  # node id -> groups here it is a member of (GroupView.attach)
        self._replicas = LocalReplicas(node.blocks)
        self._rng = random.Random(options.seed)
        # joins and block fetches to one peer, over all groups (heartbeats are one batch per peer already)
        self._windows = options.windows(self._rng)
        self._fetcher = Fetcher(node, self._windows, options.fetch_timeout, options.fetch_concurrency)
        self._hits: dict[str, list[float]] = defaultdict(list)  # content id -> times it was fetched
        self._busy: set[str] = set()  # groups with a recruit, shed or repair job queued or under way
        # jobs waiting for one of the max_jobs slots, oldest first: a closure each, not a waiting task
        self._queued: dict[str, tuple[GroupView, Callable[[], Awaitable[None]]]] = {}
        self._running = 0  # jobs under way
        self._beating: set[str] = set()  # peers with a heartbeat in flight
        self._lost = LostMembers(options.heartbeat_interval, options.lost_expiry, self._rng)
        self._beats = anyio.CapacityLimiter(options.max_concurrency)  # heartbeats in flight
        self._serving = 0  # invitations being served (items being fetched), at most max_joins
        # invitations to one peer travel together, at most max_joins (what a peer like this one serves at once)
        self._invitations = Invitations(self._send_join, options.max_joins, MAX_JOIN_BYTES)
        self._counts = dict.fromkeys(COUNTERS, 0)
        self._record_groups: set[str] = set()  # groups that keep a signed record's name, not an item
        self._pulling: set[str] = set()  # record names with a pull from a member in flight
        node.route(ROUTE_JOIN, self._serve_join)
        node.route(ROUTE_LEAVE, self._serve_leave)
        node.route(ROUTE_HEARTBEAT, self._serve_heartbeat_of_deleted)
        node.subscribe(self)  # for butter_block_served

    # -- Persistence protocol ---------------------------------------------------------------------------

    def available_storage(self) -> int:
        return self.node.blocks.free

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        await self._adopt_stored_groups()
        task_status.started()
        await anyio.sleep(self._rng.uniform(0, self.options.heartbeat_interval))
        while True:
            self.node.spawn(self._round)  # rounds keep their rhythm even when one waits on a silent peer
            delay = self.options.heartbeat_interval
            if self._rng.random() < self.options.palpitation:  # a palpitation: an early, random heartbeat
                delay = self._rng.uniform(0, delay)
            await anyio.sleep(delay)

    async def _round(self) -> None:
        try:
            await self.tick()
        except Exception:
            log.exception("heartbeat round failed; trying again next round")

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
        self._maintain(view)

    async def hand_off(self) -> None:
        """Graceful exit: for each group, recruit a replacement outside the group, then
        tell the other members this node is leaving, so no group goes cold because of it."""
        if not self._groups:
            return
        log.info("handing off %d groups before leaving", len(self._groups))
        async with anyio.create_task_group() as tg:
            for view in list(self._groups.values()):
                tg.start_soon(self._recruit, view, 1)
        async with anyio.create_task_group() as tg:  # the final heartbeat: members drop this node at once
            for node_id, (address, beats) in self._batches(anyio.current_time()).items():
                tg.start_soon(self._heartbeat, node_id, address, beats, True)

    # -- capabilities (butter.capabilities), for retrieval and tools --------------------------------------

    async def keep_record(self, record: SignedRecord) -> None:
        """Keep the name of ``record`` (verified, already in the node's record book) in a group: start one,
        whose leader recruits in the background, or, when this node keeps the name already, heartbeat its
        members now so that they pull the newer record at once rather than next round."""
        view = self._groups.get(record.name)
        if view is None:
            view = self._create_record_group(record.name, len(record.encode()))
            log.info("keeping record %s (seq %d)", record.name[:12], record.sequence)
            self._maintain(view)
        else:
            self._beat_now([view])

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

    async def forget_item(self, content_id: str) -> None:
        """Leave the group of ``content_id`` and delete the blocks no other group here uses; nothing when
        this node keeps no such group. The other members learn it from their next heartbeat (this node
        answers that it does not hold the item) and from the tombstone the node forwards them."""
        await self._forget(content_id)

    def counters(self) -> Mapping[str, int]:
        """A snapshot of the counters named in the class docstring."""
        return dict(self._counts)

    # -- the heartbeat loop -----------------------------------------------------------------------------

    async def tick(self) -> None:
        """One heartbeat round: expire silent members; heartbeat every peer we share a group with (one
        message per peer) and probe the lost members that are due; meanwhile let the leader of each group
        recruit or shed (in the background), scrub a few blocks and repair what is missing. Returns once this
        round's heartbeats are answered or failed. Rounds may overlap (the loop starts one every interval): a
        peer with a heartbeat still in flight is skipped, and a group has one job at a time."""
        now = anyio.current_time()
        wall = time.time()
        for name in [n for n in self._record_groups if self.node.records.get(n, now=wall) is None]:
            log.info("record %s expired: leaving its group", name[:12])
            await self._forget(name)
        for view in self._groups.values():
            for node_id, address in view.expire(now, self.timeout).items():
                log.debug("group %s: member %s timed out", view.content_id[:12], node_id[:8])
                self._lost.lost(node_id, address, view.content_id, now)
        async with anyio.create_task_group() as tg:
            for node_id, (address, beats) in self._batches(now, pairs=True).items():
                if node_id not in self._beating:
                    self._beating.add(node_id)
                    tg.start_soon(self._heartbeat, node_id, address, beats, False)
            for node_id, member in self._lost.due(now).items():
                self._probe_lost(tg.start_soon, node_id, member)
            for view in list(self._groups.values()):
                self._maintain(view)
            await self._scrub()

    def _batches(
        self, now: float, views: Iterable[GroupView] | None = None, *, pairs: bool = False
    ) -> dict[str, tuple[PeerAddress, list[GroupBeat]]]:
        """What to heartbeat: per peer sharing one of ``views`` (default: every group) with this node, its
        address and those groups. With ``pairs`` (a round's heartbeats), one heartbeat per peer pair: a
        request and its reply prove both ends alive and carry both views, so the higher node id sends (a group's
        leader, the highest id, so heartbeats every member and finds a dead one at once) and the lower leaves
        out each group where it heard from the peer within ``PAIR_SILENCE`` rounds (it sends only when the
        higher one has not: it does not know of the lower in that group, or is gone)."""
        batches: dict[str, tuple[PeerAddress, list[GroupBeat]]] = {}
        recent = now - PAIR_SILENCE * self.options.heartbeat_interval
        self_id = self.node.node_id
        for view in self._groups.values() if views is None else views:
            beat = None  # built for the first peer that gets it: the pair rule leaves out many groups
            for node_id, member in view.members.items():
                if node_id == self_id or (pairs and node_id > self_id and member.last_heard >= recent):
                    continue
                if beat is None:
                    beat = self._beat(view, now)
                batches.setdefault(node_id, (member.address, []))[1].append(beat)
        return batches

    def _beat(self, view: GroupView, now: float) -> GroupBeat:
        """This node's beat for ``view``'s group: its size, this node's hits and its view (and the sequence
        of the record it keeps, for a record's group)."""
        return GroupBeat(view.content_id, view.size, self._own_hits(view.content_id), view.entries(now),
                         self._sequence(view.content_id))

    def _record(self, name: str) -> SignedRecord | None:
        """The newest record this node keeps of ``name`` when it keeps ``name``'s group, else ``None``."""
        return self.node.records.get(name, now=time.time()) if name in self._record_groups else None

    def _sequence(self, name: str) -> int | None:
        record = self._record(name)
        return record.sequence if record is not None else None

    def _hear(self, node_id: str, address: PeerAddress, groups: Iterable[GroupBeat], now: float) -> list[str]:
        """Take in the beats ``node_id`` (at ``address``) sent for ``groups``: it is heard in those of them this
        node holds, whose views are merged; returns the content ids of the groups this node does not hold."""
        unknown = []
        for group in groups:
            view = self._groups.get(group.content_id)
            if view is None:
                unknown.append(group.content_id)
                continue
            view.heard(node_id, address, now, group.hits)
            view.merge(group.members, now, self.timeout)
            if group.seq is not None and view.content_id in self._record_groups:
                self._catch_up(view.content_id, group.seq, address)
        return unknown

    def _confirm(self, node_id: str, address: PeerAddress, views: list[GroupView]) -> None:
        """A heartbeat made ``node_id`` a member of ``views`` here: heartbeat it back now for them (in the
        background), whatever the pair rule: a node that does not hold them says so, or fails to answer, and is
        dropped from them at once. Without this, a node that heartbeats a group's members every round claiming
        to be in it, with a node id above theirs, would never be heartbeaten (the pair rule leaves that to the
        higher id), and would stay in their views as the group's leader: the group would never recruit again."""
        if node_id in self._beating:
            return
        self._beating.add(node_id)
        self.node.spawn(self._confirm_member, node_id, address, views)

    async def _confirm_member(self, node_id: str, address: PeerAddress, views: list[GroupView]) -> None:
        now = anyio.current_time()
        if await self._heartbeat(node_id, address, [self._beat(v, now) for v in views], False) is None:
            now = anyio.current_time()
            for view in views:
                if view.drop(node_id, now):
                    log.debug("group %s: %s did not confirm it is a member", view.content_id[:12], node_id[:8])

    def _catch_up(self, name: str, sequence: int, address: PeerAddress) -> None:
        """A member at ``address`` keeps record ``sequence`` of ``name``: pull it (in the background, one pull
        per name at a time) when this node keeps none or an older one."""
        record = self._record(name)
        if (record is None or record.sequence < sequence) and name not in self._pulling:
            self._pulling.add(name)
            self.node.spawn(self._pull_record, name, address)

    async def _pull_record(self, name: str, address: PeerAddress) -> None:
        """Ask the member at ``address`` for its record of ``name`` and offer it to the book (which verifies it)."""
        try:
            reply = await self.node.request(address, ROUTE_GET_RECORD, codec.encode({"name": name}),
                                            timeout=self.options.heartbeat_timeout)
            blob = codec.Fields.decode(reply, MAX_RECORD_SIZE * 2, what="get-record reply").blob(
                "record", max_length=MAX_RECORD_SIZE, default=None)
            record = SignedRecord.decode(blob) if blob is not None else None
        except ButterError as exc:
            log.debug("record %s: pull from %s failed: %s", name[:12], address, exc)
            return
        finally:
            self._pulling.discard(name)
        if record is not None:
            self._offer_record(record, name)

    def _offer_record(self, record: SignedRecord, name: str) -> str:
        """Offer ``record`` (from a member, as the record of ``name``) to the book; count what came of it."""
        outcome = self.node.records.offer(record, now=time.time(), name=name)
        if outcome == "accepted":
            self._counts["records_pulled"] += 1
        elif outcome != "duplicate":
            self._counts["records_refused"] += 1
            log.debug("record %s from a member refused: %s", name[:12], outcome)
        return outcome

    async def _scrub(self) -> None:
        """Re-read the next ``scrub_blocks`` blocks in use; a group missing one repairs it."""
        for block_id in await self._replicas.scrub(self.options.scrub_blocks):
            for content_id in self._replicas.users(block_id):
                view = self._groups.get(content_id)
                if view is not None:  # (a group being forgotten may still hold references)
                    log.warning("group %s: block %s is gone from the store; repairing", content_id[:12], block_id[:12])
                    view.missing.add(block_id)
                    self._maintain(view)

    async def _heartbeat(
        self, node_id: str, address: PeerAddress, beats: list[GroupBeat], leaving: bool
    ) -> HeartbeatReply | None:
        """Send one heartbeat; the reply, or ``None`` when it failed (a peer that cannot be reached is dead to
        every group). The groups the peer says it does not hold are dropped from its view."""
        message = Heartbeat(self.node.node_id, self.node.address, leaving, beats)
        try:
            async with self._beats:
                self._counts["heartbeats_sent"] += 1
                reply = HeartbeatReply.decode(await self.node.request(
                    address, ROUTE_HEARTBEAT, message.encode(), timeout=self.options.heartbeat_timeout))
        except PeerGone:  # nothing listens there: dead to every group at once (a busy peer just expires)
            self._member_dead(node_id, address)
            return None
        except ButterError as exc:
            log.debug("heartbeat to %s failed: %s", node_id[:8], exc)
            return None
        finally:
            self._beating.discard(node_id)
        now = anyio.current_time()
        for content_id in reply.unknown:
            view = self._groups.get(content_id)
            if view is not None and view.drop(node_id, now):
                log.debug("group %s: %s says it is not a member", content_id[:12], node_id[:8])
        if not leaving:
            asked = {b.content_id for b in beats}
            self._hear(node_id, address, [g for g in reply.groups if g.content_id in asked], now)
        return reply

    def _member_dead(self, node_id: str, address: PeerAddress) -> None:
        now = anyio.current_time()
        for view in self._groups.values():
            if view.drop(node_id, now):
                self._lost.lost(node_id, address, view.content_id, now)
        self.node.hosts.report_dead(address)

    def _probe_lost(self, start: Callable[..., object], node_id: str, member: LostMember) -> None:
        """Heartbeat a lost member (in a task ``start`` starts: ``tg.start_soon`` or ``node.spawn``) for the
        groups it was in that this node still keeps without it; if it answers, it is a member of each of them
        it holds again (docs: ``_lost.py``)."""
        views = [self._groups[c] for c in member.groups if c in self._groups and node_id not in self._groups[c].members]
        if not views:
            self._lost.found(node_id)
            return
        if node_id in self._beating:
            return
        self._beating.add(node_id)
        now = anyio.current_time()
        beats = [self._beat(v, now) for v in views]
        start(self._probe, node_id, member.address, beats)

    async def _probe(self, node_id: str, address: PeerAddress, beats: list[GroupBeat]) -> None:
        reply = await self._heartbeat(node_id, address, beats, False)
        if reply is None:
            return
        self._lost.found(node_id)
        now = anyio.current_time()
        back = [b.content_id for b in beats if b.content_id not in reply.unknown and b.content_id in self._groups]
        for content_id in back:
            self._groups[content_id].heard(node_id, address, now)
        if back:
            self._counts["members_recovered"] += 1
            log.info("member %s is reachable again: back in %d groups", node_id[:8], len(back))
            self._beat_now([self._groups[c] for c in back])

    def _beat_now(self, views: list[GroupView]) -> None:
        """Heartbeat the members of ``views`` now, in the background, rather than next round: after a merge or
        a recruitment, so that every member learns the new view (and a leader sheds, if the group is now
        hot) without waiting for the rhythm, and two recruits invited together learn of each other even if
        their inviter dies at once."""
        for peer, (address, beats) in self._batches(anyio.current_time(), views).items():
            if peer not in self._beating:
                self._beating.add(peer)
                self.node.spawn(self._heartbeat, peer, address, beats, False)

    @hookimpl
    def butter_peer_discovered(self, node: NodeServices, peer: PeerInfo) -> None:
        """Host management found a peer: if it is a lost member, probe it at once."""
        member = self._lost.get(peer.node_id)
        if member is not None:
            self._probe_lost(self.node.spawn, peer.node_id, member)

    def _maintain(self, view: GroupView) -> None:
        """Queue the job one group needs: recruit (cold), shed (hot for ``hot_ticks`` rounds) if this node
        leads it, repair if blocks are missing; one job per group at a time. At most ``max_jobs`` run at once,
        the others wait in a first-in first-out queue (a closure each, so a mass death queues content ids,
        not thousands of waiting tasks). A failure is logged and the group is tried again next round: it
        never stops the node."""
        job = self._job(view)
        if job is None or view.content_id in self._busy:
            return
        self._busy.add(view.content_id)
        self._queued[view.content_id] = (view, job)
        self._dispatch()

    def _dispatch(self) -> None:
        """Start queued jobs, oldest first, while fewer than ``max_jobs`` run; a job whose group was
        forgotten while it waited is dropped."""
        while self._running < self.options.max_jobs and self._queued:
            content_id = next(iter(self._queued))
            view, job = self._queued.pop(content_id)
            if content_id not in self._groups:
                self._busy.discard(content_id)
                continue
            self._running += 1
            self.node.spawn(self._run_job, view, job)

    def _job(self, view: GroupView) -> Callable[[], Awaitable[None]] | None:
        if view.content_id not in self._groups or view.content_id in self._busy:
            return None
        if view.missing:
            return (lambda: self._repair(view)) if view.others() else None
        if not view.is_leader or anyio.current_time() < view.settled_at:
            return None
        target = self._target(view)
        state = view.state(target)
        if state == "cold":
            view.hot_ticks = 0
            return lambda: self._recruit(view, target - view.count)
        if state == "hot":
            view.hot_ticks += 1
            if view.hot_ticks >= self.options.hot_ticks:
                return lambda: self._shed(view, target)
        else:
            view.hot_ticks = 0
        return None

    async def _run_job(self, view: GroupView, job: Callable[[], Awaitable[None]]) -> None:
        try:
            await job()
        except Exception:
            log.exception("group %s: maintenance failed", view.content_id[:12])
        finally:
            self._running -= 1
            self._busy.discard(view.content_id)
            self._dispatch()

    # -- recruitment and shedding -------------------------------------------------

    def _candidates(self, view: GroupView) -> list[PeerInfo]:
        """Known hosts outside the group with room for the item: members' missing diversity classes first, so
        replicas land on diverse hosts (the README's promise, which the original never kept); within a class,
        with ``prefer_partners``, the hosts sharing the most groups with this node first, random otherwise.

        Preferring partners keeps the peers a node shares groups with, and so its heartbeats (one per peer
        pair and round), nearly constant as it keeps more items: the items of a node land on the same few
        hosts (copysets: Cidon et al., "Copysets: Reducing the Frequency of Data Loss in Cloud Storage",
        USENIX ATC 2013)."""
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
        shared = self._partners if self.options.prefer_partners else {}
        self._rng.shuffle(pool)
        pool.sort(key=lambda p: (classify(p.quality, means) in member_classes, -shared.get(p.node_id, 0)))
        return pool

    async def _recruit(self, view: GroupView, wanted: int) -> None:
        """Invite up to ``max_join_attempts`` candidates, keeping ``wanted`` invitations in flight until
        ``wanted`` have joined: each of ``wanted`` workers invites the next candidate as soon as its last one
        refused or failed, so a refusal (``joins-full``, ``store-full``) or a silent candidate holds up only its
        own invitation, never the group's other ones. Then heartbeats the group at once, so recruits invited
        together learn of each other."""
        candidates = iter(self._candidates(view)[: self.options.max_join_attempts])
        joined = 0

        async def worker() -> None:
            nonlocal joined
            for candidate in candidates:
                if view.content_id not in self._groups:
                    return
                if await self._invite(view, candidate.address, candidate.node_id):
                    joined += 1
                    return

        async with anyio.create_task_group() as tg:
            for _ in range(wanted):
                tg.start_soon(worker)
        if joined and view.content_id in self._groups:
            self._beat_now([view])

    async def _invite(self, view: GroupView, address: PeerAddress, node_id: str) -> bool:
        record = None
        if view.content_id in self._record_groups:
            kept = self._record(view.content_id)
            if kept is None:
                return False
            record = kept.encode()
        self._counts["invitations_sent"] += 1
        invitation = Invitation(view.content_id, view.size, view.entries(anyio.current_time()), record)
        try:
            await self._invitations.invite(address, invitation)
        except PeerGone:
            self.node.hosts.report_dead(address)
            return False
        except ButterError as exc:
            log.debug("group %s: %s refused to join: %s", view.content_id[:12], node_id[:8], exc)
            return False
        view.heard(node_id, address, anyio.current_time())
        self._counts["invitations_accepted"] += 1
        log.debug("group %s: recruited %s (%d members)", view.content_id[:12], node_id[:8], view.count)
        return True

    async def _send_join(self, address: PeerAddress, invitations: Sequence[Invitation]) -> JoinReply:
        """One ``pcg-join`` request carrying ``invitations`` (for :class:`Invitations`), inside the peer's
        window; ``join_timeout`` bounds it (the recruit fetches the items in parallel)."""
        self._counts["joins_sent"] += 1
        reply = await self._windows.call(address, partial(
            self.node.request, address, ROUTE_JOIN, Join(invitations).encode(), timeout=self.options.join_timeout))
        return JoinReply.decode(reply)

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

    async def _repair(self, view: GroupView) -> None:
        """Fetch the group's missing blocks from the other members (each verified) and store them."""
        sources = [m.address for m in view.others().values()]
        self._rng.shuffle(sources)
        fetched = await self._fetcher.blocks(sorted(view.missing), sources)
        try:
            for block_id, data in fetched.items():
                await self.node.blocks.put(block_id, data)
                view.missing.discard(block_id)
                self._counts["blocks_repaired"] += 1
        except StoreFull as exc:
            log.warning("group %s: no room to repair the replica: %s", view.content_id[:12], exc)
        if fetched:
            log.info("group %s: repaired %d blocks from the group (%d still missing)", view.content_id[:12],
                     len(fetched), len(view.missing))

    # -- local group bookkeeping ------------------------------------------------------------------------

    def _new_group(self, content_id: str, size: int) -> GroupView:
        """A view of a group this node now holds, counted in the partner tally until :meth:`_forget`."""
        view = self._groups[content_id] = GroupView(
            content_id, size, self.node.node_id, self.node.address, self.options.replicas)
        view.attach(self._partners)
        return view

    def _create_record_group(self, name: str, size: int) -> GroupView:
        view = self._groups.get(name)
        if view is None:
            view = self._new_group(name, size)
            self._record_groups.add(name)
        return view

    def _create_group(self, content_id: str, manifest: Manifest, size: int) -> GroupView:
        view = self._groups.get(content_id)
        if view is None:
            view = self._new_group(content_id, size)
            self._replicas.add(content_id, manifest)
        return view

    async def _forget(self, content_id: str) -> None:
        """Leave a group and delete the blocks no other group on this node uses."""
        view = self._groups.pop(content_id, None)
        if view is None:
            return
        view.detach()
        if content_id in self._record_groups:
            self._record_groups.discard(content_id)
        else:
            await self._replicas.remove(content_id)

    async def _adopt_stored_groups(self) -> None:
        """After a restart with a durable store, rejoin as a lone member every item whose manifest is still
        here. Its old members find it again (they probe the members they lost), and it waits
        ``RESUME_ROUNDS`` rounds for them before it recruits; blocks that are gone (corrupted and deleted)
        are repaired from them."""
        resume_at = anyio.current_time() + RESUME_ROUNDS * self.options.heartbeat_interval
        damaged = 0
        for item in await self._replicas.scan():
            view = self._create_group(item.content_id, item.manifest, item.size)
            view.settled_at = resume_at
            view.missing = set(item.missing)
            damaged += bool(item.missing)
        if self._groups:
            log.info("resumed %d groups from the local store (%d of them missing blocks, to repair from their groups)",
                     len(self._groups), damaged)

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

    def _serve_heartbeat(self, request: RouteRequest) -> bytes:
        """A member's heartbeat. An authenticated caller must be the ``from`` it names, or the heartbeat is
        refused (``sender-mismatch``) before any view changes: no one can speak, or leave, for another
        member."""
        beat = Heartbeat.decode(request.body)
        request.check_sender(beat.sender)
        now = anyio.current_time()
        if beat.leaving:
            for group in beat.groups:
                view = self._groups.get(group.content_id)
                if view is not None:
                    view.drop(beat.sender, now)
            return HeartbeatReply([g.content_id for g in beat.groups if g.content_id not in self._groups]).encode()
        held = [view for g in beat.groups if (view := self._groups.get(g.content_id)) is not None]
        joined = [view for view in held if beat.sender not in view.members]  # new to the view: confirm below
        unknown = self._hear(beat.sender, beat.address, beat.groups, now)
        if joined:
            self._confirm(beat.sender, beat.address, joined)
        mine = [self._beat(self._groups[g.content_id], now) for g in beat.groups if g.content_id in self._groups]
        return HeartbeatReply(unknown, mine).encode()

    def _serve_heartbeat_of_deleted(self, request: RouteRequest) -> bytes:
        """Route ``pcg-heartbeat``: :meth:`_serve_heartbeat`, after sending the sender the tombstones this node
        keeps of groups its heartbeat names (at most ``MAX_TOMBSTONES_PER_BEAT``, in the background): a
        holder that missed a deletion drops its copy at its next heartbeat to a member that did not. The body
        is read here only while this node keeps a tombstone."""
        if len(self.node.tombstones):
            beat = Heartbeat.decode(request.body)
            request.check_sender(beat.sender)
            now = time.time()
            found = (self.node.tombstones.get(group.content_id, now=now) for group in beat.groups)
            bodies = [delete_body(t) for t in found if t is not None][:MAX_TOMBSTONES_PER_BEAT]
            if bodies:
                self.node.spawn(self._send_tombstones, beat.address, bodies)
        return self._serve_heartbeat(request)

    async def _serve_join(self, request: RouteRequest) -> bytes:
        """Invitations, each answered on its own (:class:`JoinReply`) once every accepted item is held. Each
        invitation lists its inviter among the members; when an authenticated caller is missing from one, the
        whole request is refused (``sender-mismatch``) before anything is fetched. An item to fetch takes one
        of ``max_joins`` places; one finding them all taken is refused ``joins-full`` at once, so its inviter
        invites another candidate (and this one again next round) rather than waiting behind the others
        until its ``join_timeout``. (Not ``overloaded``: that would make the inviter's window back off from
        this node, block fetches included.) An item whose owner deleted it (this node keeps its tombstone) is
        refused ``deleted``, and the tombstone is sent to the inviter, so that a holder that missed the
        deletion drops the item rather than recruit it back. The accepted items are fetched in parallel."""
        join = Join.decode(request.body)
        caller = request.caller.node_id
        for invitation in join.invitations:
            if caller is not None and all(node_id != caller for node_id, _, _ in invitation.members):
                raise RouteError(
                    SENDER_MISMATCH, f"the invitation to {invitation.content_id} does not list its sender, node "
                    f"{caller}, as a member")
        invitations = list({i.content_id: i for i in reversed(join.invitations)}.values())[::-1]  # first of each
        joined: list[str] = []
        refused: list[Refusal] = []
        tombstones: list[bytes] = []
        fetching: list[Invitation] = []
        now = time.time()
        for invitation in invitations:
            try:
                if invitation.record is not None:
                    self._join_record(invitation, invitation.record)
                elif (tombstone := self.node.tombstones.get(invitation.content_id, now=now)) is not None:
                    tombstones.append(delete_body(tombstone))
                    raise RouteError(DELETED, f"item {invitation.content_id} was deleted by its owner")
                elif invitation.content_id not in self._groups:
                    if self._serving >= self.options.max_joins:
                        raise RouteError(JOINS_FULL, f"{self.options.max_joins} invitations already being served")
                    self._serving += 1
                    fetching.append(invitation)
                    continue
                else:
                    self._groups[invitation.content_id].merge(invitation.members, anyio.current_time(), self.timeout)
                joined.append(invitation.content_id)
            except RouteError as exc:
                refused.append(Refusal(invitation.content_id, exc.code, exc.message[:MAX_MESSAGE]))
        if tombstones:  # to the inviter: the caller, or the first member listed (an inviter lists itself first)
            inviter = next((a for node_id, a, _ in invitations[0].members if caller in (None, node_id)), None)
            if inviter is not None:
                self.node.spawn(self._send_tombstones, inviter, tombstones[:MAX_TOMBSTONES_PER_BEAT])
        if fetching:
            async with anyio.create_task_group() as tg:
                for invitation in fetching:
                    tg.start_soon(self._join_item, invitation, joined, refused)
        return JoinReply(joined, refused).encode()

    async def _join_item(self, invitation: Invitation, joined: list[str], refused: list[Refusal]) -> None:
        """Fetch the item of ``invitation`` (it holds one of the ``max_joins`` places) and join its group;
        appends its content id to ``joined`` or its refusal to ``refused``."""
        content_id = invitation.content_id
        try:
            try:
                manifest = await self._fetch_item(invitation)
            finally:
                self._serving -= 1
            view = self._create_group(content_id, manifest, invitation.size)
            if self.node.tombstones.get(content_id, now=time.time()) is not None:  # deleted while fetching
                await self._forget(content_id)
                raise RouteError(DELETED, f"item {content_id} was deleted by its owner")
        except RouteError as exc:
            refused.append(Refusal(content_id, exc.code, exc.message[:MAX_MESSAGE]))
            return
        except ButterError as exc:
            refused.append(Refusal(content_id, "fetch-failed", str(exc)[:MAX_MESSAGE]))
            return
        view.settled_at = anyio.current_time() + 2 * self.options.heartbeat_interval
        view.merge(invitation.members, anyio.current_time(), self.timeout)
        log.debug("joined group %s", content_id[:12])
        joined.append(content_id)

    def _join_record(self, invitation: Invitation, body: bytes) -> None:
        """An invitation to keep a signed record: verify the record it carries as the record of its name and
        join the name's group; refused ``bad-record`` when the book refuses it (forged, expired, full)."""
        name = invitation.content_id
        outcome = self._offer_record(SignedRecord.decode(body), name)
        if outcome not in ("accepted", "duplicate", "stale"):  # stale: this node keeps a newer one already
            raise RouteError(BAD_RECORD, f"the invitation's record of {name} was refused: {outcome}")
        view = self._groups.get(name)
        if view is None:
            view = self._create_record_group(name, invitation.size)
            view.settled_at = anyio.current_time() + 2 * self.options.heartbeat_interval
            log.debug("joined record group %s", name[:12])
        view.merge(invitation.members, anyio.current_time(), self.timeout)

    async def _send_tombstones(self, address: PeerAddress, bodies: list[bytes]) -> None:
        """Send ``delete-item`` requests (``bodies``) to ``address``, one after another."""
        for body in bodies:
            try:
                await self.node.request(address, ROUTE_DELETE, body, timeout=self.options.join_timeout)
            except ButterError as exc:
                log.debug("tombstone to %s failed: %s", address, exc)
                return

    async def _fetch_item(self, invitation: Invitation) -> Manifest:
        sources = [address for node_id, address, _ in invitation.members if node_id != self.node.node_id]
        if invitation.size > self.node.blocks.free:
            raise RouteError("store-full", f"{invitation.size} bytes asked, {self.node.blocks.free} free")
        manifest_block = await self._fetcher.block(invitation.content_id, sources)
        manifest = Manifest.decode(manifest_block)
        missing = [a for a in dict.fromkeys(manifest.blocks) if not await self.node.blocks.has(a)]
        fetched = await self._fetcher.blocks(missing, sources)
        if len(fetched) < len(missing):
            lacking = next(a for a in missing if a not in fetched)
            raise RouteError("fetch-failed", f"no member could provide block {lacking[:12]}")
        try:
            for address, data in fetched.items():
                await self.node.blocks.put(address, data)
            await self.node.blocks.put(invitation.content_id, manifest_block)
        except StoreFull as exc:
            raise RouteError("store-full", str(exc)) from None
        return manifest

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
