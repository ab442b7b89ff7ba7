"""Invitations to one peer travel together: a per-address coalescing queue for ``pcg-join``.

A node's groups mostly invite the same few peers (``prefer_partners``: copysets), so one ``pcg-join`` request
carries every invitation this node has for a peer at that moment. Rules:

* At most one request per address is in flight, sent by one of the inviters themselves (no task of its own,
  so it works while the node stops, in ``hand_off``). The first invitation to an idle address is sent after
  one scheduling checkpoint, with those made at the same moment; invitations made while a request is in
  flight wait, and the oldest of them sends the next request, carrying the others (oldest first).
* A request carries at most ``max_items`` invitations whose encoded sizes add up to at most ``max_bytes``
  (the first one always goes, whatever its size); the rest wait for the next request.
* Each invitation is answered on its own (:class:`~butter_persist_pcg._messages.JoinReply`): joined,
  refused with a code (raised to its inviter as :class:`~butter.errors.RemoteError`), or, when the whole
  request failed (timed out, peer gone, refused ``sender-mismatch``...), that request's error.

This is Nagle's algorithm (RFC 896) applied to invitations: no timer, so an invitation to an idle peer
leaves at once, and batching comes only from invitations that would otherwise queue behind one in flight.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import anyio
import anyio.lowlevel

from butter.errors import ButterError, RemoteError
from butter.peers import PeerAddress

from ._messages import Invitation, JoinReply

__all__ = ["Invitations"]

NOT_ANSWERED = "not-answered"  # error code (local): the reply named the invitation neither joined nor refused

Send = Callable[[PeerAddress, Sequence[Invitation]], Awaitable[JoinReply]]


@dataclass(slots=True)
class _Pending:
    invitation: Invitation
    size: int  # bytes, encoded
    turn: anyio.Event = field(default_factory=anyio.Event)  # set when answered, or when it is to send the next
    answered: bool = False
    error: ButterError | None = None  # once answered: None means joined


class Invitations:
    """Per-address queues of invitations (module docstring). ``send(address, invitations)`` makes one
    ``pcg-join`` request and returns its reply (raising :class:`~butter.errors.ButterError` when it fails)."""

    def __init__(self, send: Send, max_items: int, max_bytes: int) -> None:
        if max_items < 1 or max_bytes < 1:
            raise ValueError(f"max_items and max_bytes must be at least 1: {max_items}, {max_bytes}")
        self._send, self.max_items, self.max_bytes = send, max_items, max_bytes
        # addresses with a request in flight (or about to be sent): the invitations waiting, the next sender first
        self._queues: dict[PeerAddress, list[_Pending]] = {}

    async def invite(self, address: PeerAddress, invitation: Invitation) -> None:
        """Invite ``address``; returns once it has joined. Raises :class:`~butter.errors.RemoteError` with the
        refusal's code (``joins-full``, ``store-full``...) or the error of the request that carried it."""
        pending = _Pending(invitation, len(invitation.encode()))
        queue = self._queues.get(address)
        if queue is None:
            queue = self._queues[address] = []
            pending.turn.set()
        queue.append(pending)
        try:
            if queue[0] is pending:
                await anyio.lowlevel.checkpoint()  # invitations made at this moment go along
            await pending.turn.wait()
        except BaseException:  # cancelled before it was sent: leave, and pass the turn on if it had it
            if pending in queue:
                queue.remove(pending)
                if pending.turn.is_set():
                    self._pass_turn(address, queue)
            raise
        if not pending.answered:  # its turn: it is the oldest waiting, first in the next request
            await self._send_next(address, queue)
        if pending.error is not None:
            raise pending.error

    def _pass_turn(self, address: PeerAddress, queue: list[_Pending]) -> None:
        """The oldest invitation waiting sends the next request; with none waiting, the address is idle."""
        if queue:
            queue[0].turn.set()
        else:
            del self._queues[address]

    async def _send_next(self, address: PeerAddress, queue: list[_Pending]) -> None:
        count, total = 1, queue[0].size  # the oldest invitations that fit one request (the first always does)
        while count < min(len(queue), self.max_items) and total + queue[count].size <= self.max_bytes:
            total += queue[count].size
            count += 1
        batch = queue[:count]
        del queue[:count]
        try:
            await self._send_batch(address, batch)
        finally:
            self._pass_turn(address, queue)

    async def _send_batch(self, address: PeerAddress, batch: list[_Pending]) -> None:
        for pending in batch:
            pending.error = RemoteError(NOT_ANSWERED, "the reply did not answer this invitation")
        try:
            reply = await self._send(address, [p.invitation for p in batch])
        except ButterError as exc:
            for pending in batch:
                pending.error = exc
        else:
            joined = set(reply.joined)
            refused = {r.content_id: r for r in reply.refused}
            for pending in batch:
                content_id = pending.invitation.content_id
                if (refusal := refused.get(content_id)) is not None:
                    pending.error = RemoteError(refusal.code, refusal.message)
                elif content_id in joined:
                    pending.error = None
        finally:
            for pending in batch:
                pending.answered = True
                pending.turn.set()
