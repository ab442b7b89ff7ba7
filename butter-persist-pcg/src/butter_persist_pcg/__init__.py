"""Peer Content Groups: Butter's default persistence driver, entry point ``butter.persistence:pcg``.

Each stored item is kept by a small group of peers that heartbeat each other; the group's leader recruits
when replicas are missing and sheds when there are too many. Select it with
``BUTTER_PERSISTENCE__DRIVER=pcg`` (the default once installed).

The service offers the capabilities :class:`~butter.capabilities.ItemHolders`,
:class:`~butter.capabilities.KeptItems`, :class:`~butter.capabilities.GroupStatus` and
:class:`~butter.capabilities.Counters` (see its class docstring).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from butter.hookspecs import hookimpl

from ._group import GroupView as GroupView
from ._options import PcgOptions as PcgOptions
from ._service import PcgPersistence as PcgPersistence

if TYPE_CHECKING:
    from butter.slots import NodeServices

__all__ = ["GroupView", "PcgOptions", "PcgPersistence", "PcgPersistencePlugin"]


class PcgPersistencePlugin:
    """Entry point ``butter.persistence:pcg``."""

    Options = PcgOptions

    def __init__(self, options: PcgOptions) -> None:
        self.options = options

    @hookimpl
    def butter_persistence(self, node: NodeServices) -> PcgPersistence:
        return PcgPersistence(node, self.options)
