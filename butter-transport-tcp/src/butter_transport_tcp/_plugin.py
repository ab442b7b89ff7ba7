"""The ``tcp`` driver of slot ``transport`` (entry point ``butter.transport:tcp``, DESIGN "Slots and plugins")."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from butter.hookspecs import hookimpl

from ._transport import TcpTransport

__all__ = ["TcpTransportPlugin"]


class TcpTransportPlugin:
    """Builds a :class:`TcpTransport` from the node's settings and this driver's own options.

    From ``node.settings``: ``host``, ``port``, ``advertise_host``, ``max_frame`` (bytes) and
    ``connect_timeout`` (seconds). From ``Options`` (``BUTTER_TRANSPORT__OPTIONS__IDLE_TIMEOUT=30``, or
    ``[butter.transport.options]`` in ``butter.toml``): the fields below.
    """

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")
        max_connections: int = Field(
            1024, ge=1, description="incoming plus outgoing connections open at once; incoming ones over the cap "
            "are closed at once, outgoing ones evict the least recently used idle outgoing connection"
        )
        idle_timeout: float = Field(
            60.0, gt=0, description="seconds before an outgoing connection with no request in flight is closed "
            "(incoming: twice this without traffic)"
        )
        read_chunk: int = Field(
            256 * 1024, ge=1024, le=16 * 1024 * 1024, description="bytes read from a socket at once; memory per "
            "connection is about max_frame plus this"
        )
        max_concurrent_requests: int = Field(
            256, ge=1, description="requests one incoming connection may have being handled at once; more are "
            "answered with error code 'overloaded'"
        )

    def __init__(self, options: Options) -> None:
        self.options = options

    @hookimpl
    def butter_transport(self, node: Any) -> TcpTransport:
        settings = node.settings
        return TcpTransport(
            settings.host,
            settings.port,
            advertise_host=settings.advertise_host,
            max_frame=int(settings.max_frame),
            connect_timeout=settings.connect_timeout,
            max_connections=self.options.max_connections,
            idle_timeout=self.options.idle_timeout,
            read_chunk=self.options.read_chunk,
            max_concurrent_requests=self.options.max_concurrent_requests,
        )
