"""The ``tcp`` driver of slot ``transport`` (entry point ``butter.transport:tcp``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from butter.hookspecs import hookimpl
from butter.peers import PeerInfo

from ._transport import TcpTransport

__all__ = ["TcpTransportPlugin"]


class TcpTransportPlugin:
    """Builds a :class:`TcpTransport` from the node's settings, identity and this driver's own options.

    From ``node.settings``: ``host``, ``port``, ``advertise_host``, ``max_frame`` (bytes) and
    ``connect_timeout`` (seconds); from ``node.identity`` the key the secure channel presents. From
    ``Options`` (``BUTTER_TRANSPORT__OPTIONS__IDLE_TIMEOUT=30``, or ``[butter.transport.options]`` in
    ``butter.toml``): the fields below.

    It also keeps the transport's expected identities in step with the node's known hosts: a host entering
    them (``butter_peer_discovered``) is expected at its address from then on, one leaving them
    (``butter_peer_lost``) is forgotten, so a new node may take the address.
    """

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")
        secure: bool = Field(
            True, description="TLS 1.3, mutually authenticated with the nodes' Ed25519 identities; false: "
            "plaintext, for debugging only (logged as a warning at start; peers must be plaintext too)"
        )
        max_connections: int = Field(
            1024, ge=1, description="incoming plus outgoing connections open at once; incoming ones over the cap "
            "are closed at once, outgoing ones evict the least recently used idle outgoing connection"
        )
        max_inbound: int = Field(
            768, ge=1, description="incoming connections open at once (handshakes included); more are closed at once"
        )
        max_inbound_per_ip: int = Field(
            64, ge=1, description="incoming connections open at once from one IP address; more are closed at once"
        )
        idle_timeout: float = Field(
            60.0, gt=0, description="seconds before an outgoing connection with no request in flight is closed "
            "(incoming: twice this without traffic)"
        )
        handshake_timeout: float = Field(5.0, gt=0, description="seconds a secure-channel handshake may take")
        frame_timeout: float = Field(
            30.0, gt=0, description="seconds an incoming frame may take to arrive once begun; a slower peer is cut off"
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
        self.transport: TcpTransport | None = None

    @hookimpl
    def butter_transport(self, node: Any) -> TcpTransport:
        settings = node.settings
        options = self.options
        self.transport = TcpTransport(
            settings.host,
            settings.port,
            advertise_host=settings.advertise_host,
            max_frame=int(settings.max_frame),
            connect_timeout=settings.connect_timeout,
            max_connections=options.max_connections,
            idle_timeout=options.idle_timeout,
            read_chunk=options.read_chunk,
            max_concurrent_requests=options.max_concurrent_requests,
            identity=getattr(node, "identity", None),
            secure=options.secure,
            max_inbound=options.max_inbound,
            max_inbound_per_ip=options.max_inbound_per_ip,
            handshake_timeout=options.handshake_timeout,
            frame_timeout=options.frame_timeout,
        )
        return self.transport

    @hookimpl
    def butter_peer_discovered(self, node: Any, peer: PeerInfo) -> None:
        if self.transport is not None and node.transport is self.transport:
            self.transport.expect_identity(peer.address, peer.node_id)

    @hookimpl
    def butter_peer_lost(self, node: Any, peer: PeerInfo) -> None:
        if self.transport is not None and node.transport is self.transport:
            self.transport.forget(peer.address)
