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
        768, ge=1, description="working incoming connections (handshake passed) open at once; when full, one "
        "is evicted for a newcomer, protecting diverse, fast, recently useful and long-lived peers; only when "
        "all are protected is the newcomer closed"
    )
    reserved_inbound: int = Field(
        64, ge=0, description="places of max_inbound kept for known hosts (addresses the node expects an "
        "identity at: its known hosts and the peers it dialled); others fill at most max_inbound minus this "
        "(at most half of max_inbound is kept)"
    )
    max_inbound_per_ip: int = Field(
        64, ge=1, description="incoming connections (handshakes included) open at once from one IP address; "
        "more are closed at once"
    )
    max_inbound_per_subnet: int = Field(
        256, ge=1, description="incoming connections (handshakes included) open at once from one /24 (IPv4) or "
        "/48 (IPv6); more are closed at once"
    )
    max_handshakes: int = Field(
        128, ge=1, description="incoming connections still in their handshake (unauthenticated) at once, "
        "outside max_inbound; when full, a newcomer from the /24 or /48 holding the most handshakes is refused, "
        "and any other has the oldest handshake of the busiest one closed for it (known hosts' last), so silent "
        "connections cannot lock new peers out"
    )
    max_handshakes_per_subnet: int = Field(
        16, ge=1, description="handshakes at once from one /24 (IPv4) or /48 (IPv6); when reached, that "
        "subnet's oldest handshake is closed for the newcomer"
    )
    idle_timeout: float = Field(
        60.0, gt=0, description="seconds before an outgoing connection with no request in flight is closed "
        "(incoming: twice this without traffic, so the dialling side normally closes first)"
    )
    handshake_timeout: float = Field(
        5.0, gt=0, description="seconds the secure-channel handshake and the network check may take"
    )
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
