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
    * ``connections_refused_inbound``: incoming connections closed at once because ``max_inbound`` incoming
      connections were open (``connections_refused`` counts the ``max_connections`` cap).
    * ``connections_refused_per_ip``: incoming connections closed at once because their IP address already
      had ``max_inbound_per_ip`` open.
    * ``handshakes_failed``: secure-channel handshakes that failed or took longer than
      ``handshake_timeout`` (either role).
    * ``identity_mismatches``: outgoing connections refused because the peer authenticated as another node
      than the one expected at that address.
    * ``connections_slow_closed``: incoming connections cut off because a frame that had begun did not
      complete within ``frame_timeout`` (a slow or trickling peer).
    * ``networks_refused``: connections (either role) refused because the peer is on another ``network_id``,
      holds another ``network_key``, or sent no valid network hello.
    * ``handshakes_evicted``: incoming connections still in their handshake closed to make room for a newer
      one (``max_handshakes`` or ``max_handshakes_per_subnet`` reached).
    * ``handshakes_refused``: incoming connections closed at once because the handshake budget was full of
      young handshakes whose peers had all spoken (nothing could be evicted).
    * ``inbound_evicted``: working incoming connections closed to make room for a new one when
      ``max_inbound`` was reached (the eviction rule protects diverse, fast, useful, long-lived peers).
    * ``connections_refused_per_subnet``: incoming connections closed at once because their /24 (IPv4) or
      /48 (IPv6) already had ``max_inbound_per_subnet`` open.
    * ``requests_busy``: requests refused locally with ``TransportBusy`` (``max_connections`` reached with
      every connection busy).
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
    connections_refused_inbound: int = 0
    connections_refused_per_ip: int = 0
    handshakes_failed: int = 0
    identity_mismatches: int = 0
    connections_slow_closed: int = 0
    requests_busy: int = 0
    networks_refused: int = 0
    handshakes_evicted: int = 0
    handshakes_refused: int = 0
    inbound_evicted: int = 0
    connections_refused_per_subnet: int = 0
