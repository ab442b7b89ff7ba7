"""A fake overlay for the sans-IO classes: every node a :class:`QueryHandler`, a search driven by hand."""

from __future__ import annotations

import random
from collections.abc import Sequence

from butter.peers import PeerAddress
from butter_retrieve_bfs import Hit, Miss, QueryHandler, Search, Seen

CID = "ab" * 32


def addr(i: int) -> PeerAddress:
    return PeerAddress("sim", i)


class Overlay:
    """Nodes 0..n-1 with given known-host lists; ``holders`` hold :data:`CID`; ``digests`` maps a node to
    the hosts it believes hold it (what its digest book would say)."""

    def __init__(
        self,
        links: dict[int, Sequence[int]],
        holders: Sequence[int] = (),
        digests: dict[int, Sequence[int]] | None = None,
        dead: Sequence[int] = (),
        seed: int = 0,
    ) -> None:
        self.links = links
        self.holders = set(holders)
        self.digests = digests or {}
        self.dead = set(dead)
        self.handlers = {i: QueryHandler(rng=random.Random(seed + i)) for i in links}
        self.searches = 0

    def search(self, me: int, *, ttl: int | None, fraction: float = 1.0, hints: bool = True,
               seed: int = 0, parallelism: int = 1) -> Search:
        """Run a whole search from node ``me`` (stops at the first hit); returns it for inspection. Each
        search has a query id of its own."""
        self.searches += 1
        search = Search(
            CID, query_id=self.searches.to_bytes(16, "big"), ttl=ttl, fraction=fraction,
            known=[addr(j) for j in self.links[me]],
            hinted=[addr(j) for j in self.digests.get(me, ())],
            hints=hints, rng=random.Random(seed), skip=[addr(me)],
        )
        return self.drive(search, parallelism)

    def drive(self, search: Search, parallelism: int = 1) -> Search:
        """Ask until ``search`` has a holder or is exhausted; returns it."""
        while not search.holders:
            batch = []
            while (ask := search.next_ask(parallelism)) is not None:
                batch.append(ask)
            if not batch:
                break
            for ask in batch:
                node = ask.address.port
                if node in self.dead:
                    search.on_failure(ask, replied=False, unreachable=True)
                    continue
                reply = self.handlers[node].handle(
                    ask.query, 0.0,
                    holds=node in self.holders,
                    members=lambda: [addr(h) for h in sorted(self.holders)],
                    known=lambda n=node: [addr(j) for j in self.links[n]],
                    hinted=lambda n=node: [addr(j) for j in self.digests.get(n, ())],
                )
                search.on_reply(ask, reply)
        return search


def line(n: int) -> dict[int, list[int]]:
    """0 - 1 - 2 - ... - n-1, each node knowing its neighbours."""
    return {i: [j for j in (i - 1, i + 1) if 0 <= j < n] for i in range(n)}


__all__ = ["CID", "Hit", "Miss", "Overlay", "Seen", "addr", "line"]
