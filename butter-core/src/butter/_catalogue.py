"""Which drivers exist: the slots' entry-point groups, the drivers installed (read from package metadata, none
imported), the distributions that provide Butter's own drivers, and what to say when a driver is missing.

Kept apart from :mod:`butter._plugins` (which loads drivers) and light to import, so that ``butter plugins``
and ``butter --help`` start quickly.
"""

from __future__ import annotations

import difflib
import functools
import sys
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .settings import ButterSettings

__all__ = [
    "DISTRIBUTIONS",
    "OBSERVER_GROUP",
    "SLOT_GROUPS",
    "STACK",
    "effective_discovery",
    "installed_drivers",
    "missing_driver_message",
    "readable_list",
    "slot_of",
]

SLOT_GROUPS = {
    "transport": "butter.transport",
    "discovery": "butter.discovery",
    "host_manager": "butter.host_manager",
    "persistence": "butter.persistence",
    "retrieval": "butter.retrieval",
}
OBSERVER_GROUP = "butter.plugins"

STACK = "butter-stack"
"""The distribution that installs the default stack (every driver the default settings name)."""

DISTRIBUTIONS: dict[tuple[str, str], str] = {
    ("butter.transport", "tcp"): "butter-transport-tcp",
    ("butter.discovery", "multicast"): "butter-discover-multicast",
    ("butter.discovery", "ambassador"): "butter-wider-ambassador",
    ("butter.persistence", "pcg"): "butter-persist-pcg",
    ("butter.retrieval", "bfs"): "butter-retrieve-bfs",
}
"""(entry-point group, driver name) -> the distribution that provides it, for Butter's own drivers outside
butter-core (whose own drivers are always installed)."""

IN_STACK = {"tcp", "multicast", "pcg", "bfs"}  # what `pip install butter-stack` brings besides butter-core


def installed_drivers(group: str) -> list[str]:
    """Names of the entry points installed in ``group``, sorted, without importing any of them. Package
    metadata is read once per group and ``sys.path`` (a scan costs about 10 ms, and every node start asks
    for each slot); a distribution put onto ``sys.path`` is seen at once, one installed into a directory
    already on it by the next process."""
    return list(_entry_point_names(group, tuple(sys.path)))


@functools.lru_cache(maxsize=64)
def _entry_point_names(group: str, path: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted({ep.name for ep in entry_points(group=group)}))


def slot_of(group: str) -> str:
    """The slot whose entry-point group is ``group`` (``"butter.host_manager"`` -> ``"host_manager"``); the
    group itself for any other."""
    return next((slot for slot, known in SLOT_GROUPS.items() if known == group), group)


def readable_list(names: list[str], empty: str = "none") -> str:
    """``a``, ``a and b``, ``a, b and c``; ``empty`` for no names."""
    if not names:
        return empty
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _install_hint(group: str, name: str) -> str:
    hint = f"pip install {DISTRIBUTIONS[group, name]}"
    return f"{hint}, or pip install {STACK} for the whole default stack" if name in IN_STACK else hint


def missing_driver_message(group: str, name: str) -> str:
    """One line saying that driver ``name`` of ``group`` is not installed and what to do: the ``pip install``
    line of its distribution for Butter's own drivers, a "did you mean" for a near miss, and the drivers
    installed in that group."""
    slot = slot_of(group).replace("_", " ")
    installed = installed_drivers(group)
    where = f"(entry-point group {group}; installed: {', '.join(installed) or 'none'})"
    if (group, name) in DISTRIBUTIONS:
        return f"the {slot} driver {name!r} is not installed: {_install_hint(group, name)} {where}"
    message = f"no {slot} driver {name!r} is installed"
    known = installed + [known for (g, known) in DISTRIBUTIONS if g == group and known not in installed]
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        install = "" if close[0] in installed else f" ({_install_hint(group, close[0])})"
        message += f": did you mean {close[0]!r}{install}?"
    return f"{message} {where}"


def effective_discovery(settings: ButterSettings) -> list[str]:
    """The discovery drivers a node with ``settings`` runs: ``discovery.drivers`` without repeats, plus
    ``static`` when ``peers`` is set (the configured peers are contacted beside the other drivers)."""
    drivers = list(dict.fromkeys(settings.discovery.drivers))
    if settings.peers and "static" not in drivers:
        drivers.append("static")
    return drivers
