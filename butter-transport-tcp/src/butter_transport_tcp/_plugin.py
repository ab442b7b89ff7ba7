"""The ``tcp`` driver of slot ``transport`` (entry point ``butter.transport:tcp``)."""

from __future__ import annotations

from butter.hookspecs import hookimpl
from butter.peers import PeerInfo
from butter.slots import NodeServices

from ._options import TcpOptions
from ._transport import TcpTransport

__all__ = ["TcpTransportPlugin"]


class TcpTransportPlugin:
    """Builds a :class:`TcpTransport` from the node's settings (``host``, ``port``, ``advertise_host``,
    ``max_frame``, ``connect_timeout``), its identity (the key the secure channel presents) and this
    driver's :class:`~butter_transport_tcp.TcpOptions` (``BUTTER_TRANSPORT__OPTIONS__IDLE_TIMEOUT=30``, or
    ``[butter.transport.options]`` in ``butter.toml``).

    It also keeps the transport's expected identities in step with the node's known hosts: a host entering
    them (``butter_peer_discovered``) is expected at its address from then on, one leaving them
    (``butter_peer_lost``) is forgotten, so a new node may take the address.
    """

    Options = TcpOptions

    def __init__(self, options: TcpOptions) -> None:
        self.options = options

    @hookimpl
    def butter_transport(self, node: NodeServices) -> TcpTransport:
        transport = TcpTransport(node.settings, self.options, node.identity)
        node.subscribe(_KnownHostIdentities(transport))
        return transport


class _KnownHostIdentities:
    """Subscribed to the node's events: the identities its transport expects follow its known hosts."""

    def __init__(self, transport: TcpTransport) -> None:
        self.transport = transport

    @hookimpl
    def butter_peer_discovered(self, peer: PeerInfo) -> None:
        self.transport.expect_identity(peer.address, peer.node_id)

    @hookimpl
    def butter_peer_lost(self, peer: PeerInfo) -> None:
        self.transport.forget(peer.address)
