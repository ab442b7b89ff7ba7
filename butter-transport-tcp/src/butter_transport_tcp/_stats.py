"""Counters a :class:`~butter_transport_tcp.TcpTransport` keeps since it was created."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TcpStats"]


@dataclass(slots=True)
class TcpStats:
    """What the transport did since it was created; every field is a count.

    * ``connections_accepted``: incoming connections taken on.
    * ``connections_refused``: incoming connections closed at once because ``max_connections`` was reached.
    * ``connections_opened``: outgoing connections established (a reused connection is not counted again).
    * ``connections_evicted``: idle outgoing connections closed to make room under ``max_connections``.
    * ``connections_idle_closed``: connections closed after ``idle_timeout`` without traffic.
    * ``requests_sent`` / ``requests_served``: requests written to peers / answered for peers.
    * ``frames_rejected``: incoming frames refused (too large or not a valid envelope), each answered
      with an error reply.
    * ``requests_overloaded``: incoming requests answered ``overloaded`` because their connection already
      had ``max_concurrent_requests`` being handled.
    """

    connections_accepted: int = 0
    connections_refused: int = 0
    connections_opened: int = 0
    connections_evicted: int = 0
    connections_idle_closed: int = 0
    requests_sent: int = 0
    requests_served: int = 0
    frames_rejected: int = 0
    requests_overloaded: int = 0
