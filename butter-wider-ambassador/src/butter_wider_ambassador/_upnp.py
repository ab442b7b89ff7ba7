"""UPnP IGD port mapping with ``miniupnpc`` (optional: ``pip install butter-wider-ambassador[upnp]``).

The original mapped a hard-coded port for 5 s and exited on any error. Here the
node maps *its own* listening port (TCP, same external port) when an ambassador says it is not reachable,
and removes the mapping when it leaves. Everything that can go wrong (``miniupnpc`` not installed, no
gateway answering the SSDP search, the gateway refusing) is logged and the node goes on without a mapping:
never fatal. The blocking ``miniupnpc`` calls run in a worker thread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import anyio

__all__ = ["PortMapping", "map_port"]

log = logging.getLogger("butter.discovery.ambassador")

DISCOVER_DELAY_MS = 1000  # how long the SSDP search waits for gateways


@dataclass
class PortMapping:
    """A mapping on the gateway: ``external_host:external_port`` → this host's ``port``."""

    external_host: str
    external_port: int
    port: int
    _upnp: Any

    async def remove(self) -> None:
        """Delete the mapping; a failure is logged."""

        def delete() -> None:
            self._upnp.deleteportmapping(self.external_port, "TCP")

        try:
            await anyio.to_thread.run_sync(delete, abandon_on_cancel=True)
            log.info("UPnP: removed the mapping of port %d", self.external_port)
        except Exception as exc:
            log.warning("UPnP: could not remove the mapping of port %d: %s", self.external_port, exc)


async def map_port(
    port: int, *, description: str = "butter node", delay_ms: int = DISCOVER_DELAY_MS
) -> PortMapping | None:
    """Ask the LAN's UPnP gateway to forward TCP ``port`` to this host; ``None`` (logged) when it cannot."""
    try:
        import miniupnpc  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        log.info("UPnP: miniupnpc is not installed (pip install butter-wider-ambassador[upnp]); no port mapping")
        return None

    def attempt() -> PortMapping | str:
        step = "the gateway search (SSDP)"
        try:
            upnp = miniupnpc.UPnP()
            upnp.discoverdelay = delay_ms
            if upnp.discover() == 0:
                return "no gateway answered the search"
            step = "choosing a gateway"
            upnp.selectigd()
            step = "asking the external address"
            external = upnp.externalipaddress()
            step = "adding the mapping"
            if not upnp.addportmapping(port, "TCP", upnp.lanaddr, port, description, ""):
                return "the gateway refused the mapping"
        except Exception as exc:  # miniupnpc raises bare Exception for every failure
            return f"{step} failed ({exc})"
        log.info("UPnP: mapped %s:%d -> %s:%d", external, port, upnp.lanaddr, port)
        return PortMapping(str(external), port, port, upnp)

    try:
        result = await anyio.to_thread.run_sync(attempt, abandon_on_cancel=True)
    except Exception as exc:
        result = f"{type(exc).__name__}: {exc}"
    if isinstance(result, str):
        log.info("UPnP: port %d not mapped: %s; going on without it", port, result)
        return None
    return result
