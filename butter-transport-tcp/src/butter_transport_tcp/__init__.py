"""Butter's default transport: multiplexed, length-prefixed msgpack request/response over TCP.

Entry point ``butter.transport:tcp`` (:class:`TcpTransportPlugin`); the node builds a :class:`TcpTransport`
from its settings. The wire format is :mod:`butter.wire` (DESIGN "Wire", SPEC §2); this package only moves
its frames over sockets.
"""

from ._plugin import TcpTransportPlugin as TcpTransportPlugin
from ._stats import TcpStats as TcpStats
from ._transport import TcpTransport as TcpTransport

__all__ = ["TcpStats", "TcpTransport", "TcpTransportPlugin"]
