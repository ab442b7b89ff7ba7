"""The ``random`` host manager (entry point ``butter.host_manager:random``): Gnutella-style, a baseline.

Admission: every candidate that answers on ``host-quality`` is admitted; when the list is full, a host
picked uniformly at random is evicted to make room (and told so at once, so its ``known_by`` drops). No
quality record is weighed: this is the naive policy the ``diversity`` driver is measured against.

Everything else is ``diversity``'s: the capacity (from the memory budget, or the ``capacity`` option),
the refresh that backs off while a host's record stays the same and prunes hosts failing ``max_failures``
polls in a row, the re-probing of lost hosts, the
periodic known-hosts exchange
(Gnutella's ping/pong, two-way), and the protocol it serves (``host-quality`` with holds, ``known-hosts``),
so the two kinds of node mix on one overlay.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pydantic import ConfigDict, Field

from ..hookspecs import hookimpl
from ..peers import PeerAddress, PeerInfo
from ._manager import DiversityHostManager, DiversityOptions, ViewOptions

if TYPE_CHECKING:
    from ..slots import NodeServices

__all__ = ["RandomHostManager", "RandomHostManagerPlugin", "RandomOptions"]

log = logging.getLogger("butter.hosts.random")


class RandomOptions(ViewOptions):
    model_config = ConfigDict(extra="forbid")
    capacity: int | None = Field(None, ge=1, description="hosts kept; unset: from the memory budget")
    refresh_interval: float = Field(
        10.0, gt=0, description="seconds before a host's quality record is polled again after its record changed "
        "(4 × this after a probe that admitted it)")
    refresh_max_interval: float | None = Field(
        None, gt=0, description="seconds between polls of a host whose record keeps coming back unchanged, at "
        "most; unset: 16 × refresh_interval")
    exchange_interval: float = Field(10.0, gt=0, description="seconds between known-host exchanges")
    max_failures: int = Field(
        3, ge=1, description="failed refreshes in a row before a host is removed (one where nothing listens "
        "any more, connection refused, is removed at the first)"
    )
    quality_timeout: float = Field(3.0, gt=0, description="seconds to wait for a quality record")
    max_concurrency: int = Field(32, ge=1, description="quality requests in flight at once")
    reprobe_interval: float = Field(1.0, gt=0, description="seconds before a lost host is first offered again")
    reprobe_max_interval: float = Field(
        30.0, gt=0, description="the longest wait between two re-probes of a lost host (seconds)")
    lost_expiry: float = Field(600.0, gt=0, description="seconds a lost host keeps being re-probed")
    seed: int | None = Field(None, description="random seed, for reproducible simulations")


class RandomHostManager(DiversityHostManager):
    """A :class:`~butter.slots.HostManager` admitting every live candidate, evicting at random when full:
    the ``diversity`` driver's list keeping with Gnutella's admission instead of the diversity optimiser."""

    def __init__(self, node: NodeServices, options: RandomOptions) -> None:
        super().__init__(node, DiversityOptions(**options.model_dump()))

    async def _admit(self, address: PeerAddress, info: PeerInfo, *, held: bool) -> bool:
        """Admit ``info`` (it answered at ``address``; ``held``: to a probe that held it), evicting a random
        host when full; returns whether it is now known."""
        if any(h.node_id == info.node_id for h in self._hosts.values()):
            return False  # a known node at another address
        if len(self._hosts) >= self._capacity:
            victim = self._rng.choice(list(self._hosts))
            self._remove(victim, "evicted at random to make room")
            self.node.spawn(self._release, victim)
        self._join(address, info, "admitted at random", held=held)
        return True


class RandomHostManagerPlugin:
    """Entry point ``butter.host_manager:random``."""

    Options = RandomOptions

    def __init__(self, options: RandomOptions) -> None:
        self.options = options

    @hookimpl
    def butter_host_manager(self, node: NodeServices) -> RandomHostManager:
        return RandomHostManager(node, self.options)
