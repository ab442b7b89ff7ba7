"""The ``multicast`` driver of slot ``discovery`` (entry point ``butter.discovery:multicast``)."""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator

from butter.hookspecs import hookimpl

from ._protocol import DEFAULT_MAX_DATAGRAM
from ._service import MulticastDiscovery

if TYPE_CHECKING:
    from butter.slots import NodeServices

__all__ = ["MulticastDiscoveryPlugin", "MulticastOptions"]

ADMIN_SCOPED = "239.255.0.0/16"  # IPv4 organization-local scope (RFC 2365); 224.0.0.1 is all-hosts


class MulticastOptions(BaseModel):
    """Options of ``butter.discovery:multicast``: ``BUTTER_DISCOVERY__OPTIONS__MULTICAST__PORT=9999``, or
    ``--discovery.options '{"multicast": {"interval": 0.5}}'``, or ``[butter.discovery.options.multicast]``
    in ``butter.toml``."""

    model_config = ConfigDict(extra="forbid")
    group: IPv4Address = Field(
        IPv4Address("239.255.42.99"),
        description="IPv4 multicast group the beacons use; default in the administratively scoped 239.255.0.0/16",
    )
    port: int = Field(9999, ge=1, le=65535, description="UDP port of the group; open it inbound in firewalls")
    interface: IPv4Address = Field(
        IPv4Address("0.0.0.0"),
        description="address of the interface to join and ping on; 0.0.0.0: the one the routing table picks "
        "(loopback for a node listening on loopback)",
    )
    ttl: int = Field(1, ge=0, le=255, description="multicast TTL; 1 keeps pings on the local network")
    interval: float = Field(1.0, gt=0, le=3600, description="seconds between pings while the node knows nobody")
    jitter: float = Field(
        0.25, ge=0, lt=1, description="each wait between pings is interval × a random factor in [1-jitter, 1+jitter]"
    )
    answer_interval: float = Field(
        0.5, ge=0, description="seconds between two answers to the same pinger (per-pinger rate limit)"
    )
    answer_rate: float = Field(50.0, gt=0, description="answers per second at most, to all pingers together")
    answer_timeout: float = Field(3.0, gt=0, description="seconds to wait for a pinger to take an answer")
    max_datagram: int = Field(
        DEFAULT_MAX_DATAGRAM, ge=128, le=65507, description="largest datagram sent or accepted, bytes; larger "
        "ones are dropped and counted"
    )

    @field_validator("group")
    @classmethod
    def _multicast(cls, value: IPv4Address) -> IPv4Address:
        if not value.is_multicast:
            raise ValueError(f"{value} is not a multicast address (224.0.0.0/4); use one in {ADMIN_SCOPED}")
        return value


class MulticastDiscoveryPlugin:
    """Entry point ``butter.discovery:multicast``: finds peers on the LAN with UDP multicast beacons."""

    Options = MulticastOptions

    def __init__(self, options: MulticastOptions) -> None:
        self.options = options

    @hookimpl
    def butter_discovery(self, node: NodeServices) -> MulticastDiscovery:
        return MulticastDiscovery(node, self.options)
