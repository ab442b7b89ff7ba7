"""Butter's default transport: multiplexed, length-prefixed msgpack request/response over TCP, secured by
TLS 1.3 with the nodes' Ed25519 identities.

Entry point ``butter.transport:tcp`` (:class:`TcpTransportPlugin`); the node builds a :class:`TcpTransport`
from its settings. The wire format is :mod:`butter.wire`; this package only moves
its frames over sockets. :class:`SecureChannel` is the secure-channel step on its own, for any connected
byte stream.
"""

from ._plugin import TcpTransportPlugin as TcpTransportPlugin
from ._secure import SecureChannel as SecureChannel
from ._stats import TcpStats as TcpStats
from ._transport import TcpTransport as TcpTransport

__all__ = ["SecureChannel", "TcpStats", "TcpTransport", "TcpTransportPlugin"]
