"""The ``ambassador`` driver of slot ``discovery`` (entry point ``butter.discovery:ambassador``).

One driver, two roles, picked by the ``serve`` option: a client (the default: publish to ambassadors, get
introductions, relay and hole-punch when not reachable) or an ambassador (``serve = true``: an ordinary
public node that also introduces, relays and coordinates).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskStatus
from pydantic import BaseModel, ConfigDict, Field, field_validator

from butter.hookspecs import hookimpl
from butter.peers import PeerAddress

from ._client import AmbassadorClient
from ._server import AmbassadorService, parse_port_range

if TYPE_CHECKING:
    from butter.slots import NodeServices

__all__ = ["AmbassadorDiscovery", "AmbassadorOptions", "AmbassadorPlugin"]


class AmbassadorOptions(BaseModel):
    """Options of ``butter.discovery:ambassador``: ``--discovery.options '{"ambassador": {"serve": true}}'``,
    ``[butter.discovery.options.ambassador]`` in ``butter.toml``, or
    ``BUTTER_DISCOVERY__OPTIONS__AMBASSADOR__AMBASSADORS='["203.0.113.10:7000"]'``."""

    model_config = ConfigDict(extra="forbid")
    # -- both roles
    serve: bool = Field(False, description="be an ambassador (the node must be publicly reachable)")
    exchange_timeout: float = Field(
        5.0, gt=0, description="seconds for one exchange with an ambassador (or a relay end) or a dial-back"
    )
    keepalive_interval: float = Field(15.0, gt=0, description="seconds between keepalives of a relay reservation")
    # -- client
    ambassadors: list[str] = Field(default_factory=list, description="HOST:PORT node addresses of ambassadors")
    interval: float = Field(30.0, gt=0, description="seconds between publish-and-introduce rounds")
    introductions: int = Field(8, ge=0, le=64, description="peers of other subnetworks asked for per round")
    max_ambassadors: int = Field(2, ge=1, description="ambassadors published to per round")
    public_port: int | None = Field(
        None, ge=1, le=65535, description="port forwarded to this node on its router; default its listening port"
    )
    relay: bool = Field(True, description="hold a relay reservation when not reachable from outside")
    punch: bool = Field(True, description="try a hole punch to relayed peers of other subnetworks")
    punch_timeout: float = Field(5.0, gt=0, description="seconds one hole punch may take")
    punch_retry_interval: float = Field(300.0, gt=0, description="seconds before punching to the same peer again")
    source_host: str = Field(
        "", description="local address connections to ambassadors leave from; default the node's address"
    )
    upnp: bool = Field(True, description="when not reachable, map the listening port with UPnP IGD (miniupnpc)")
    # -- ambassador
    service_host: str = Field("", description="interface for the service and relay ports; default the node's host")
    service_port: int = Field(0, ge=0, le=65535, description="TCP service port; 0: the OS picks")
    public_host: str = Field("", description="public address in relayed addresses; default the node's address")
    relay_ports: str = Field("", description="TCP port range for relay reservations, e.g. 7100-7227; empty: any")
    public_prefix: int = Field(24, ge=8, le=128, description="prefix length grouping public hosts into subnetworks")
    index_capacity: int = Field(1024, ge=1, description="peers kept in the index")
    index_per_subnet: int = Field(32, ge=1, description="peers kept per subnetwork")
    index_expiry: float = Field(300.0, gt=0, description="seconds an index entry lives unless published again")
    max_reservations: int = Field(128, ge=0, description="relay reservations held at once")
    max_reservations_per_ip: int = Field(8, ge=0, description="reservations from one IP address")
    max_circuits: int = Field(256, ge=0, description="relay circuits open at once")
    max_circuits_per_reservation: int = Field(16, ge=0, description="circuits open to one reserved node")
    circuit_expiry: float = Field(120.0, gt=0, description="seconds a relay circuit may last (libp2p: 120)")
    circuit_bytes: int = Field(128 * 1024, ge=1, description="bytes a circuit may carry, both ways (libp2p: 128 KiB)")

    @field_validator("ambassadors")
    @classmethod
    def _parse(cls, value: list[str]) -> list[str]:
        for text in value:
            PeerAddress.parse(text)
        return value

    @field_validator("relay_ports")
    @classmethod
    def _ports(cls, value: str) -> str:
        parse_port_range(value)
        return value


class AmbassadorDiscovery:
    """The :class:`~butter.slots.Discovery` object: runs the ambassador role (``serve``) or the client.

    ``counters()`` (:class:`~butter.capabilities.Counters`) is the running role's: the ambassador's
    :class:`RelayStats` (plus ``refused_connections``), or the client's :class:`ClientStats`.
    """

    def __init__(self, node: NodeServices, options: AmbassadorOptions) -> None:
        self.node = node
        self.options = options
        self.service = AmbassadorService(node, options) if options.serve else None
        self.client = None if options.serve else AmbassadorClient(node, options)

    def counters(self) -> Mapping[str, int]:
        if self.service is not None:
            return self.service.counters()
        return self.client.counters() if self.client is not None else {}

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        if self.service is not None:
            await self.service.run(task_status=task_status)
        elif self.client is not None:
            await self.client.run(task_status=task_status)


class AmbassadorPlugin:
    """Entry point ``butter.discovery:ambassador``: wider discovery through ambassadors."""

    Options = AmbassadorOptions

    def __init__(self, options: AmbassadorOptions) -> None:
        self.options = options

    @hookimpl
    def butter_discovery(self, node: NodeServices) -> AmbassadorDiscovery:
        return AmbassadorDiscovery(node, self.options)
