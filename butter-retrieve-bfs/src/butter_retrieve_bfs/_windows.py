"""Per-peer windows of requests in flight: the asking side of back-pressure.

Every request bfs sends to a peer (search queries, block fetches, digest pulls) first takes a slot in that
peer's window, so at most ``window`` of this node's requests are in flight to one peer at once, however
many retrievals run. The window adapts as TCP's congestion window does (additive increase, multiplicative
decrease): an ``overloaded`` reply or a timeout halves it (never below 1), every other answer widens it by
one, back up to ``window``. After an ``overloaded`` reply the peer is also left alone for a while:
``retry_interval`` seconds (× 1 to 1.5 at random), doubled for each further ``overloaded`` in a row, at
most :data:`MAX_BACKOFF_FACTOR` times that; any other answer resets it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

import anyio

from butter.errors import RemoteError, RequestTimeout
from butter.peers import PeerAddress

__all__ = ["OVERLOADED", "PeerWindows", "is_overloaded"]

OVERLOADED = "overloaded"  # the error code a transport answers when a peer has too many requests in progress
MAX_BACKOFF_FACTOR = 16

T = TypeVar("T")
Outcome = Literal["answered", "overloaded", "timeout", "lost"]


def is_overloaded(exc: BaseException) -> bool:
    """Whether ``exc`` is the peer's ``overloaded`` error reply (busy now: ask later or elsewhere)."""
    return isinstance(exc, RemoteError) and exc.code == OVERLOADED


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
    """The windows of one node's retrieval service, one per peer it talks to (kept only while they differ
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
