"""Retrieval by iterative random breadth-first search with TTL: entry point ``butter.retrieval:bfs``.

A node looking for an item asks peers breadth-first, a random fraction of known hosts per hop, up to a hop
limit (TTL), widening the search in rings when one fails; peers answer but never forward (the iterative model
of the original's code). Peers also pull each other's digests (Bloom filters of the content ids they hold), so a search
asks the likely holders first. Once a holder answers, the manifest and the blocks are fetched in parallel
from every holder it names, each verified. Select it with ``BUTTER_RETRIEVAL__DRIVER=bfs`` (the default
once installed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from butter.hookspecs import hookimpl

from ._bloom import BloomFilter as BloomFilter
from ._digest import DigestBook as DigestBook
from ._digest import LocalDigest as LocalDigest
from ._messages import DigestAsk as DigestAsk
from ._messages import DigestKept as DigestKept
from ._messages import DigestReply as DigestReply
from ._messages import Hit as Hit
from ._messages import Miss as Miss
from ._messages import Query as Query
from ._messages import QueryReply as QueryReply
from ._messages import Seen as Seen
from ._messages import decode_reply as decode_reply
from ._options import BfsOptions as BfsOptions
from ._options import Ring as Ring
from ._protocol import Ask as Ask
from ._protocol import HandlerStats as HandlerStats
from ._protocol import QueryHandler as QueryHandler
from ._protocol import Search as Search
from ._service import ROUTE_DIGEST as ROUTE_DIGEST
from ._service import ROUTE_DIGEST_PUSH as ROUTE_DIGEST_PUSH
from ._service import ROUTE_QUERY as ROUTE_QUERY
from ._service import BfsRetrieval as BfsRetrieval
from ._stats import QueryStats as QueryStats
from ._stats import RetrievalTotals as RetrievalTotals

if TYPE_CHECKING:
    from butter.slots import NodeServices

__all__ = [
    "ROUTE_DIGEST",
    "ROUTE_DIGEST_PUSH",
    "ROUTE_QUERY",
    "Ask",
    "BfsOptions",
    "BfsRetrieval",
    "BfsRetrievalPlugin",
    "BloomFilter",
    "DigestAsk",
    "DigestBook",
    "DigestKept",
    "DigestReply",
    "HandlerStats",
    "Hit",
    "LocalDigest",
    "Miss",
    "Query",
    "QueryHandler",
    "QueryReply",
    "QueryStats",
    "RetrievalTotals",
    "Ring",
    "Search",
    "Seen",
    "decode_reply",
]


class BfsRetrievalPlugin:
    """Entry point ``butter.retrieval:bfs``."""

    Options = BfsOptions

    def __init__(self, options: BfsOptions) -> None:
        self.options = options

    @hookimpl
    def butter_retrieval(self, node: NodeServices) -> BfsRetrieval:
        return BfsRetrieval(node, self.options)
