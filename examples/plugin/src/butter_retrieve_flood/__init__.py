"""Retrieval by flooding (Gnutella, 2000): an example third-party plugin for Butter's ``retrieval`` slot.

The plugin class is what the entry point names. Butter instantiates it with its validated ``Options`` (the
settings' ``retrieval.options``) and calls its hook once per node to build the slot object, a
:class:`FloodRetrieval` (see :mod:`butter.slots` for the ``Retrieval`` protocol it implements). The hook
receives the node as :class:`butter.slots.NodeServices`, the plugin contract: all a plugin may use of it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

import butter
from butter.slots import NodeServices

from ._flood import ROUTE_FLOOD as ROUTE_FLOOD
from ._flood import FloodRetrieval as FloodRetrieval

__all__ = ["ROUTE_FLOOD", "FloodOptions", "FloodRetrieval", "FloodRetrievalPlugin"]


class FloodOptions(BaseModel):
    """``retrieval.options`` for ``flood`` (units: hops, seconds, counts)."""

    model_config = ConfigDict(extra="forbid")  # a misspelt option is an error at start, naming the key
    ttl: int = Field(4, ge=0, le=16, description="hops a query travels beyond the first peers")
    hop_timeout: float = Field(1.0, gt=0, description="seconds per remaining hop a peer may take to answer")
    fetch_timeout: float = Field(10.0, gt=0, description="seconds to wait for one block")
    retrieve_timeout: float = Field(
        30.0, gt=0, description="seconds a retrieval may take when the caller gives no timeout"
    )
    seen_capacity: int = Field(4096, ge=16, description="query ids remembered, so a node answers each once")


class FloodRetrievalPlugin:
    """Entry point ``butter.retrieval:flood``."""

    Options = FloodOptions

    def __init__(self, options: FloodOptions) -> None:
        self.options = options

    @butter.hookimpl
    def butter_retrieval(self, node: NodeServices) -> FloodRetrieval:
        return FloodRetrieval(node, ttl=self.options.ttl, hop_timeout=self.options.hop_timeout,
                              fetch_timeout=self.options.fetch_timeout, seen_capacity=self.options.seen_capacity,
                              retrieve_timeout=self.options.retrieve_timeout)
