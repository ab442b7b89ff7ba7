"""Asking and pushing to a sample of peers at once: the pattern that records (:mod:`butter._naming`),
documents (:mod:`butter._documents`) and tombstones (:mod:`butter._deletion`) spread by."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, TypeVar

import anyio

from .errors import ButterError

if TYPE_CHECKING:
    from .peers import PeerAddress
    from .slots import NodeServices

__all__ = ["each_peer", "sample_peers"]

T = TypeVar("T")


def sample_peers(node: NodeServices, fanout: int, *, besides: PeerAddress | None = None) -> list[PeerAddress]:
    """Up to ``fanout`` addresses, at random, of the peers host management knows, but ``besides``."""
    addresses = [peer.address for peer in node.hosts.peers() if peer.address != besides]
    return random.sample(addresses, min(fanout, len(addresses)))


async def each_peer(peers: Iterable[PeerAddress], ask: Callable[[PeerAddress], Awaitable[T]]) -> dict[
        PeerAddress, T]:
    """Run ``ask(address)`` for every one of ``peers`` at once; what each returned, leaving out those whose
    ``ask`` raised a :class:`~butter.errors.ButterError` (a peer that cannot be reached, a malformed answer)."""
    answers: dict[PeerAddress, T] = {}

    async def one(address: PeerAddress) -> None:
        try:
            answers[address] = await ask(address)
        except ButterError:
            pass

    async with anyio.create_task_group() as tg:
        for address in dict.fromkeys(peers):
            tg.start_soon(one, address)
    return answers
