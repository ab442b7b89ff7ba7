"""What ``butter peers`` gathers from a running node, kept apart from how :mod:`butter.cli` prints it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import anyio

from ._node import open_node
from .codec import peer_info
from .errors import ProtocolError
from .peers import PeerAddress, PeerInfo
from .settings import ButterSettings, DiscoverySettings
from .wire import decode_payload

__all__ = ["PeersReport", "probe_settings", "query_peers"]


@dataclass
class PeersReport:
    """A remote node's own record (``target``), its round-trip time to ``ping`` (seconds) and the known
    hosts it revealed over ``rounds`` calls of route ``known-hosts`` (each returns a random sample)."""

    dialled: PeerAddress
    target: PeerInfo
    rtt: float
    hosts: list[PeerInfo] = field(default_factory=list)
    rounds: int = 0

    @property
    def complete(self) -> bool:
        """Whether every host the node says it knows was seen."""
        return len(self.hosts) >= self.target.quality.known_hosts

    def to_json(self) -> dict[str, Any]:
        def row(info: PeerInfo) -> dict[str, Any]:
            return {"id": info.node_id, "address": str(info.address), **info.quality.to_wire()}

        return {
            "dialled": str(self.dialled),
            "rtt": self.rtt,
            "node": row(self.target),
            "hosts": [row(info) for info in self.hosts],
            "rounds": self.rounds,
            "complete": self.complete,
        }


def probe_settings(base: ButterSettings, *, host: str, timeout: float) -> ButterSettings:
    """Settings for a short-lived client node: ``base``'s transport and frame limit, every other setting at
    its default, no discovery, no persistence and no peers, so that it stays invisible to the overlay and
    never touches a running node's data. It listens on ``host`` at an OS-chosen port only because every
    node serves."""
    fresh = {name: info.get_default(call_default_factory=True) for name, info in type(base).model_fields.items()}
    fresh.update(
        transport=base.transport,
        max_frame=base.max_frame,
        host=host,
        port=0,
        discovery=DiscoverySettings(drivers=[]),
        persistence=base.persistence.model_copy(update={"driver": "", "options": {}}),
        retrieval=base.retrieval.model_copy(update={"driver": "", "options": {}}),
        connect_timeout=float(timeout),
        request_timeout=float(timeout),
        shutdown_timeout=2.0,
    )
    return base.model_copy(update=fresh)


async def query_peers(settings: ButterSettings, address: PeerAddress, *, timeout: float, rounds: int) -> PeersReport:
    """Ask the node at ``address`` for its id, quality and known hosts, from a client node built with
    ``settings`` (see :func:`probe_settings`).

    Route ``known-hosts`` answers a random sample of at most 16 hosts, so it is asked up to ``rounds`` times,
    stopping as soon as every host the node reports knowing has been seen. Requests are sent with an empty
    body, which neither introduces the client to the node nor counts toward its ``known_by``.

    Raises :class:`~butter.errors.PeerUnreachable`, :class:`~butter.errors.RequestTimeout` (``timeout``
    seconds per request), :class:`~butter.errors.RemoteError` or :class:`~butter.errors.ProtocolError`.
    """
    async with open_node(settings) as client:
        started = anyio.current_time()
        await client.request(address, "ping", timeout=timeout)
        rtt = anyio.current_time() - started
        reply = await client.request(address, "host-quality", timeout=timeout)
        target = peer_info(decode_payload(reply, settings.max_frame), "bad host-quality reply")
        report = PeersReport(address, target, rtt)
        seen: dict[str, PeerInfo] = {}
        while report.rounds < rounds and not (report.rounds and len(seen) >= target.quality.known_hosts):
            body = decode_payload(await client.request(address, "known-hosts", timeout=timeout), settings.max_frame)
            report.rounds += 1
            entries = body.get("sample") if isinstance(body, dict) else None
            if not isinstance(entries, list):
                raise ProtocolError("known-hosts reply has no 'sample' list")
            for entry in entries:
                try:
                    info = PeerInfo.from_wire(entry)
                except ValueError:
                    continue
                seen.setdefault(info.node_id, info)
        report.hosts = sorted(seen.values(), key=lambda info: (-info.quality.uptime, info.node_id))
        return report
