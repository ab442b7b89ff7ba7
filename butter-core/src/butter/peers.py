"""Who a peer is and how good a host it is: :class:`PeerAddress`, :class:`HostQuality`, :class:`PeerInfo`.

Peers are told apart by node id (derived from their public key, see :class:`butter.Identity`); an address is
only where a peer can be reached now.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["HostQuality", "PeerAddress", "PeerInfo", "kept_tag"]

# Upper bounds applied to what peers claim about themselves: a lying or buggy peer gets clamped, not trusted.
MAX_UPTIME = 10 * 365 * 24 * 3600.0  # seconds
MAX_STORAGE = 2**50  # bytes (1 PiB)
MAX_COUNT = 10_000_000  # hosts
KEPT_TAG = re.compile(r"[0-9a-f]{16}")  # a kept tag: 8 bytes, hex


def kept_tag(content_ids: Iterable[str]) -> str:
    """The version tag of a set of content ids (hex strings): the first 8 bytes of the SHA-256 of the sorted,
    distinct ids joined by newlines, in hex (16 characters). Equal sets give equal tags; any change to the
    set changes the tag (but for a 2⁻⁶⁴ chance)."""
    return hashlib.sha256("\n".join(sorted(set(content_ids))).encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True, order=True)
class PeerAddress:
    """Where a peer listens: ``host`` (an IP address, or a memory-transport name) and ``port``."""

    host: str
    port: int

    def __post_init__(self) -> None:
        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ValueError(f"port must be an integer from 0 to 65535, got {self.port!r}")
        if not isinstance(self.host, str) or not self.host or len(self.host) > 253:
            raise ValueError(f"host must be a non-empty string, got {self.host!r}")

    @classmethod
    def parse(cls, text: str) -> PeerAddress:
        """Parse ``"host:port"`` (IPv6 as ``"[::1]:port"``). Raises ``ValueError`` with the reason."""
        host, sep, port = text.strip().rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"peer address must look like HOST:PORT, got {text!r}")
        return cls(host.strip("[]"), int(port))

    @property
    def is_ip(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def to_wire(self) -> list[Any]:
        return [self.host, self.port]

    @classmethod
    def from_wire(cls, obj: Any) -> PeerAddress:
        """Decode ``[host, port]``. Raises ``ValueError`` on any other shape."""
        if not isinstance(obj, list | tuple) or len(obj) != 2:
            raise ValueError("address must be [host, port]")
        host, port = obj
        if not isinstance(host, str) or not isinstance(port, int) or isinstance(port, bool):
            raise ValueError("address must be [str, int]")
        return cls(host, port)


def _clamp(value: Any, upper: float, kind: type) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return kind(0)
    if value != value:  # NaN
        return kind(0)
    return kind(min(max(value, 0), upper))


@dataclass(frozen=True, slots=True)
class HostQuality:
    """A host's self-reported quality record (the original's "NodeQuality"), served on route ``host-quality``.

    * ``uptime``: seconds since the node started.
    * ``available_storage``: bytes its block store can still accept.
    * ``known_hosts``: size of its known-host list.
    * ``known_by``: how many distinct peers polled it during the last refresh window; 0 means no one knows
      it, and host management then admits it first (the rule that no node is left unknown).
    * ``ambassador``: whether it serves as an ambassador.
    * ``kept``: the :func:`kept_tag` of the items it keeps alive (its persistence driver's
      :class:`~butter.capabilities.KeptItems`), or ``""`` when it cannot tell: a peer that knows what it held
      under a tag knows, from this record alone, whether that changed (retrieval ``bfs`` pulls a host's
      digest again only then).

    Values from the network go through :meth:`from_wire`, which clamps absurd values instead of trusting them.
    """

    uptime: float = 0.0
    available_storage: int = 0
    known_hosts: int = 0
    known_by: int = 0
    ambassador: bool = False
    kept: str = ""

    def to_wire(self) -> dict[str, Any]:
        return {
            "uptime": self.uptime,
            "available_storage": self.available_storage,
            "known_hosts": self.known_hosts,
            "known_by": self.known_by,
            "ambassador": self.ambassador,
            "kept": self.kept,
        }

    @classmethod
    def from_wire(cls, obj: Any) -> HostQuality:
        """Decode a record, clamping every field into its sane range (a ``kept`` that is no tag reads ``""``).
        Raises ``ValueError`` if not a map."""
        if not isinstance(obj, dict):
            raise ValueError("host quality must be a map")
        return cls(
            uptime=_clamp(obj.get("uptime"), MAX_UPTIME, float),
            available_storage=_clamp(obj.get("available_storage"), MAX_STORAGE, int),
            known_hosts=_clamp(obj.get("known_hosts"), MAX_COUNT, int),
            known_by=_clamp(obj.get("known_by"), MAX_COUNT, int),
            ambassador=obj.get("ambassador") is True,
            kept=kept if isinstance(kept := obj.get("kept"), str) and KEPT_TAG.fullmatch(kept) else "",
        )


@dataclass(slots=True)
class PeerInfo:
    """What a node knows of one peer: its id, its address, its last quality record and when it was seen.

    ``last_seen`` is on the node's clock (``anyio.current_time()``, seconds).
    """

    node_id: str
    address: PeerAddress
    quality: HostQuality = field(default_factory=HostQuality)
    last_seen: float = 0.0

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.node_id, "addr": self.address.to_wire(), "quality": self.quality.to_wire()}

    @classmethod
    def from_wire(cls, obj: Any) -> PeerInfo:
        """Decode ``{"id", "addr", "quality"}``. Raises ``ValueError`` on a wrong shape."""
        if not isinstance(obj, dict):
            raise ValueError("peer info must be a map")
        node_id = obj.get("id")
        if not isinstance(node_id, str) or not 0 < len(node_id) <= 128:
            raise ValueError("peer id must be a short string")
        return cls(node_id, PeerAddress.from_wire(obj.get("addr")), HostQuality.from_wire(obj.get("quality", {})))
