"""The ``tcp`` driver's own options (``[butter.transport.options]``), written once: the plugin validates them
from the settings and :class:`~butter_transport_tcp.TcpTransport` reads them from this model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["TcpOptions"]


class TcpOptions(BaseModel):
    """Options of the ``tcp`` transport (``BUTTER_TRANSPORT__OPTIONS__IDLE_TIMEOUT=30``, or
    ``[butter.transport.options]`` in ``butter.toml``). Invalid values raise pydantic's ``ValidationError``
    (the plugin loader turns it into :class:`~butter.errors.ButterConfigError` naming the key)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    secure: bool = Field(
        True, description="TLS 1.3, mutually authenticated with the nodes' Ed25519 identities; false: "
        "plaintext, for debugging only (logged as a warning at start; peers must be plaintext too)"
    )
    max_connections: int = Field(
        1024, ge=1, description="incoming plus outgoing connections open at once; incoming ones over the cap "
        "are closed at once, outgoing ones evict the least recently used idle outgoing connection"
    )
    max_inbound: int = Field(
        768, ge=1, description="incoming connections open at once (handshakes included); more are closed at once, "
        "so that outgoing connections keep room under max_connections"
    )
    max_inbound_per_ip: int = Field(
        64, ge=1, description="incoming connections open at once from one IP address; more are closed at once"
    )
    idle_timeout: float = Field(
        60.0, gt=0, description="seconds before an outgoing connection with no request in flight is closed "
        "(incoming: twice this without traffic, so the dialling side normally closes first)"
    )
    handshake_timeout: float = Field(5.0, gt=0, description="seconds a secure-channel handshake may take")
    frame_timeout: float = Field(
        30.0, gt=0, description="seconds an incoming frame may take to arrive once begun; a slower peer is cut off"
    )
    read_chunk: int = Field(
        256 * 1024, ge=1024, le=16 * 1024 * 1024, description="bytes read from a socket at once; memory per "
        "connection is about max_frame plus this in, twice (1 MiB + max_frame) out"
    )
    max_concurrent_requests: int = Field(
        256, ge=1, description="requests one incoming connection may have being handled at once; more are "
        "answered with error code 'overloaded'"
    )
    pin_identities: bool = Field(
        True, description="remember the node id first authenticated at each address and refuse another one "
        "there later (trust on first use); the node's known hosts override it"
    )
