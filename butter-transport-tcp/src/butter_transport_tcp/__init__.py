"""Butter's default transport: multiplexed, length-prefixed msgpack request/response over TCP, secured by
TLS 1.3 with the nodes' Ed25519 identities.

Entry point ``butter.transport:tcp`` (:class:`TcpTransportPlugin`); the node builds a :class:`TcpTransport`
from its settings and the driver's :class:`TcpOptions`. The wire format is :mod:`butter.wire` and the rules
of a connection :mod:`butter.channel`; this package only moves their frames over sockets.
:class:`SecureChannel` is the secure-channel step on its own, for any connected byte stream, and
:class:`Network` the network check that follows it (``network_id``, ``network_key``) on every connection.
"""

from ._network import Network as Network
from ._network import NetworkRefused as NetworkRefused
from ._options import TcpOptions as TcpOptions
from ._plugin import TcpTransportPlugin as TcpTransportPlugin
from ._secure import SecureChannel as SecureChannel
from ._stats import TcpStats as TcpStats
from ._transport import TcpTransport as TcpTransport

__all__ = ["Network", "NetworkRefused", "SecureChannel", "TcpOptions", "TcpStats", "TcpTransport", "TcpTransportPlugin"]
