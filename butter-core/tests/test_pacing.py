"""butter.pacing.PeerWindows alone (the per-peer windows bfs and pcg send through): the window halves on
``overloaded`` or a timeout and widens by one per answer; a peer that answered ``overloaded`` is left alone for a
while, others are asked at once. On asyncio and trio."""

from __future__ import annotations

import random

import anyio
import pytest

from butter.errors import RemoteError, RequestTimeout
from butter.pacing import PeerWindows
from butter.peers import PeerAddress

pytestmark = pytest.mark.anyio


async def test_the_window_halves_on_overloaded_and_widens_by_one_per_answer() -> None:
    windows = PeerWindows(8, retry_interval=0.01, rng=random.Random(1))
    peer = PeerAddress("sim", 1)

    async def answer() -> bytes:
        return b"ok"

    async def overloaded() -> bytes:
        raise RemoteError("overloaded", "busy")

    async def timeout() -> bytes:
        raise RequestTimeout("no reply")

    with pytest.raises(RemoteError):
        await windows.call(peer, overloaded)
    assert windows.limit(peer) == 4
    with pytest.raises(RequestTimeout):
        await windows.call(peer, timeout)
    assert windows.limit(peer) == 2
    for expected in (3, 4, 5):
        assert await windows.call(peer, answer) == b"ok"
        assert windows.limit(peer) == expected
    for _ in range(3):
        await windows.call(peer, answer)
    assert windows.limit(peer) == 8 and windows.in_flight(peer) == 0


async def test_a_peer_that_answered_overloaded_is_left_alone_for_a_while() -> None:
    windows = PeerWindows(8, retry_interval=0.2, rng=random.Random(1))
    peer, other = PeerAddress("sim", 1), PeerAddress("sim", 2)

    async def overloaded() -> bytes:
        raise RemoteError("overloaded", "busy")

    async def answer() -> float:
        return anyio.current_time()

    with pytest.raises(RemoteError):
        await windows.call(peer, overloaded)
    refused_at = anyio.current_time()
    assert await windows.call(other, answer) - refused_at < 0.2  # another peer is asked at once
    assert await windows.call(peer, answer) - refused_at >= 0.2  # this one after its backoff
