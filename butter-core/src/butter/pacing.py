"""Per-peer windows of requests in flight: the asking side of back-pressure, shared by every plugin that
sends many requests to the same peers (bfs's queries and block fetches, pcg's joins and block fetches).

Every request sent through :class:`PeerWindows` first takes a slot in its peer's window, so at most ``window``
of the service's requests are in flight to one peer at once, however many jobs run. The window adapts as TCP's
congestion window does (additive increase, multiplicative decrease; RFC 5681): an ``overloaded`` reply or a
timeout halves it (never below 1), every other answer widens it by one, back up to ``window``. After an
``overloaded`` reply the peer is also left alone for a while: ``retry_interval`` seconds (× 1 to 1.5 at
random), doubled for each further ``overloaded`` in a row, at most :data:`MAX_BACKOFF_FACTOR` times that;
any other answer resets it. A server answers ``overloaded`` when a connection already has its cap of requests
being handled (see :mod:`butter.channel`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

import anyio
from pydantic import BaseModel, Field

from butter.errors import RemoteError, RequestTimeout
from butter.peers import PeerAddress

__all__ = ["OVERLOADED", "PacingOptions", "PeerWindows", "is_overloaded"]

OVERLOADED = "overloaded"  # the error code a transport answers when a peer has too many requests in progress
MAX_BACKOFF_FACTOR = 16

T = TypeVar("T")
Outcome = Literal["answered", "overloaded", "timeout", "lost"]


def is_overloaded(exc: BaseException) -> bool:
    """Whether ``exc`` is the peer's ``overloaded`` error reply (busy now: ask later or elsewhere)."""
    return isinstance(exc, RemoteError) and exc.code == OVERLOADED


class PacingOptions(BaseModel):
    """The pacing options of a driver that sends through :class:`PeerWindows`: driver options models inherit
    them, so every driver names and documents them alike (units: requests, seconds)."""

    peer_window: int = Field(
        16, ge=1, le=1024, description="requests this node keeps in flight to one peer, at most, over all the "
        "driver's jobs; halved on an 'overloaded' reply or a timeout, widened by one per answer"
    )
    overload_retry_interval: float = Field(
        0.5, ge=0, description="seconds before a peer that answered 'overloaded' is asked again (x1 to x1.5 at "
        "random), doubled for each further 'overloaded' in a row, at most 16 times"
    )

    def windows(self, rng: random.Random) -> PeerWindows:
        """Fresh windows with these options."""
        return PeerWindows(self.peer_window, retry_interval=self.overload_retry_interval, rng=rng)


class _Peer:
    __slots__ = ("changed", "in_flight", "limit", "strikes", "until", "waiting")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self.waiting = 0
        self.strikes = 0  # overloaded replies in a row
        self.until = -math.inf  # no request starts before this time (backoff)
        self.changed = anyio.Event()


class PeerWindows:
    """The windows of one service of a node, one per peer it talks to (kept only while they differ
    from a fresh one: a peer with nothing in flight, a full window and no backoff is forgotten)."""

    def __init__(self, window: int, *, retry_interval: float, rng: random.Random) -> None:
        if window < 1 or retry_interval < 0:
            raise ValueError(f"window must be at least 1 and retry_interval non-negative: {window}, {retry_interval}")
        self.window = window
        self.retry_interval = retry_interval
        self.rng = rng
        self._peers: dict[PeerAddress, _Peer] = {}

    def in_flight(self, address: PeerAddress) -> int:
        """Requests in flight to ``address`` now."""
        peer = self._peers.get(address)
        return peer.in_flight if peer is not None else 0

    def limit(self, address: PeerAddress) -> int:
        """``address``'s current window (``window`` for a peer never pushed back)."""
        peer = self._peers.get(address)
        return peer.limit if peer is not None else self.window

    async def call(self, address: PeerAddress, request: Callable[[], Awaitable[T]]) -> T:
        """Await ``request()`` (one request to ``address``) inside ``address``'s window: first wait out its
        backoff and for a free slot, then send; the outcome adjusts the window. Whatever ``request`` raises
        is raised unchanged (test :func:`is_overloaded` to tell an ``overloaded`` reply)."""
        await self._acquire(address)
        outcome: Outcome = "lost"
        try:
            result = await request()
            outcome = "answered"
            return result
        except RemoteError as exc:
            outcome = "overloaded" if is_overloaded(exc) else "answered"
            raise
        except RequestTimeout:
            outcome = "timeout"
            raise
        finally:
            self._release(address, outcome)

    async def _acquire(self, address: PeerAddress) -> None:
        peer = self._peers.get(address)
        if peer is None:
            peer = self._peers[address] = _Peer(self.window)
        peer.waiting += 1
        try:
            while True:
                backoff = peer.until - anyio.current_time()
                if backoff > 0:
                    await anyio.sleep(backoff)
                elif peer.in_flight < peer.limit:
                    break
                else:
                    await peer.changed.wait()
        finally:
            peer.waiting -= 1
        peer.in_flight += 1

    def _release(self, address: PeerAddress, outcome: Outcome) -> None:
        peer = self._peers[address]
        peer.in_flight -= 1
        now = anyio.current_time()
        if outcome == "answered":
            peer.limit = min(self.window, peer.limit + 1)
            peer.strikes = 0
        elif outcome in ("overloaded", "timeout"):
            peer.limit = max(1, peer.limit // 2)
        if outcome == "overloaded":
            peer.strikes += 1
            factor = min(MAX_BACKOFF_FACTOR, 2 ** (peer.strikes - 1))
            peer.until = max(peer.until, now + self.retry_interval * factor * self.rng.uniform(1.0, 1.5))
        peer.changed.set()
        peer.changed = anyio.Event()
        if not peer.in_flight and not peer.waiting and peer.limit == self.window and peer.until <= now:
            del self._peers[address]
