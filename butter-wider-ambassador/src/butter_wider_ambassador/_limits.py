"""Relay limits and their accounting, sans-IO (the model: libp2p circuit relay v2's resource limits).

* :class:`RelayLimits`: the numbers. Defaults are libp2p's: a circuit lasts at most 120 s and carries at
  most 128 KiB (both directions together); 128 reservations, at most 8 from one IP address; 16 circuits
  per reservation. We add a bound on circuits in all (256).
* :class:`CircuitBudget`: one circuit's remaining time and bytes; the splicer asks it before forwarding
  each chunk, and the circuit is closed the moment a limit is exceeded.
* :class:`RelayLedger`: who holds a reservation and how many circuits are open, refusing what the limits do
  not allow; :class:`RelayStats` counts what happened (reported in logs and by the benchmark).

Time is passed in (seconds, any monotonic clock).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["CircuitBudget", "LimitExceeded", "Refusal", "RelayLedger", "RelayLimits", "RelayStats"]


@dataclass(frozen=True, slots=True)
class RelayLimits:
    """Relay resource limits. ``circuit_expiry`` in seconds, ``circuit_bytes`` in bytes."""

    max_reservations: int = 128
    max_reservations_per_ip: int = 8
    max_circuits: int = 256
    max_circuits_per_reservation: int = 16
    circuit_expiry: float = 120.0
    circuit_bytes: int = 128 * 1024

    def __post_init__(self) -> None:
        counts = (
            self.max_reservations,
            self.max_reservations_per_ip,
            self.max_circuits,
            self.max_circuits_per_reservation,
        )
        if min(counts) < 0 or not self.circuit_expiry > 0 or self.circuit_bytes < 1:
            raise ValueError("relay limits must be non-negative counts, a positive duration and at least 1 byte")


class LimitExceeded(Exception):
    """A circuit went over its ``limit`` (``"bytes"`` or ``"duration"``)."""

    def __init__(self, limit: str) -> None:
        super().__init__(limit)
        self.limit = limit


@dataclass(slots=True)
class CircuitBudget:
    """What one circuit may still do: ``data`` bytes (both directions) until ``deadline`` (seconds)."""

    data: int
    deadline: float
    used: int = 0

    @classmethod
    def start(cls, limits: RelayLimits, now: float) -> CircuitBudget:
        return cls(limits.circuit_bytes, now + limits.circuit_expiry)

    def consume(self, size: int, now: float) -> None:
        """Account ``size`` bytes about to be forwarded. Raises :class:`LimitExceeded` (nothing of the chunk
        may then be forwarded) when they would exceed the byte budget or the deadline has passed."""
        if now >= self.deadline:
            raise LimitExceeded("duration")
        if self.used + size > self.data:
            raise LimitExceeded("bytes")
        self.used += size

    def remaining_time(self, now: float) -> float:
        return max(0.0, self.deadline - now)


class Refusal(Exception):
    """A request the limits do not allow: ``code`` is sent to the peer in a ``refused`` message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(slots=True)
class RelayStats:
    """Counters since the ambassador started."""

    reservations: int = 0
    reservations_refused: int = 0
    circuits_opened: int = 0
    circuits_refused: int = 0
    circuits_closed_bytes: int = 0
    circuits_closed_duration: int = 0
    bytes_relayed: int = 0


@dataclass(slots=True)
class RelayLedger:
    """Reservations (by node id, with the IP they came from) and open circuits (per reservation)."""

    limits: RelayLimits = field(default_factory=RelayLimits)
    stats: RelayStats = field(default_factory=RelayStats)
    _reservations: dict[str, str] = field(default_factory=dict)  # node id -> source IP
    _circuits: dict[str, int] = field(default_factory=dict)  # node id -> open circuits

    @property
    def reservations(self) -> int:
        return len(self._reservations)

    @property
    def circuits(self) -> int:
        return sum(self._circuits.values())

    def reserve(self, node_id: str, source_ip: str) -> None:
        """Grant ``node_id`` a reservation (replacing its earlier one). Raises :class:`Refusal`."""
        if node_id in self._reservations:
            raise Refusal("already-reserved", f"{node_id[:8]} already holds a reservation here")
        if len(self._reservations) >= self.limits.max_reservations:
            self.stats.reservations_refused += 1
            raise Refusal("reservations-full", f"{self.limits.max_reservations} reservations held (max_reservations)")
        if sum(ip == source_ip for ip in self._reservations.values()) >= self.limits.max_reservations_per_ip:
            self.stats.reservations_refused += 1
            raise Refusal("too-many-from-ip", f"{source_ip} holds {self.limits.max_reservations_per_ip} reservations")
        self._reservations[node_id] = source_ip
        self._circuits[node_id] = 0
        self.stats.reservations += 1

    def release(self, node_id: str) -> None:
        self._reservations.pop(node_id, None)
        self._circuits.pop(node_id, None)

    def open_circuit(self, node_id: str) -> None:
        """Count a new circuit to ``node_id``. Raises :class:`Refusal` when a limit is reached."""
        if node_id not in self._reservations:
            self.stats.circuits_refused += 1
            raise Refusal("no-reservation", f"{node_id[:8]} holds no reservation")
        if self._circuits[node_id] >= self.limits.max_circuits_per_reservation:
            self.stats.circuits_refused += 1
            raise Refusal("circuits-full", f"{node_id[:8]} has {self._circuits[node_id]} circuits open")
        if self.circuits >= self.limits.max_circuits:
            self.stats.circuits_refused += 1
            raise Refusal("relay-full", f"{self.limits.max_circuits} circuits open (max_circuits)")
        self._circuits[node_id] += 1
        self.stats.circuits_opened += 1

    def close_circuit(self, node_id: str, *, relayed: int, limit: str | None) -> None:
        """A circuit of ``node_id`` ended after ``relayed`` bytes, closed by ``limit`` (or ``None``)."""
        if self._circuits.get(node_id, 0) > 0:
            self._circuits[node_id] -= 1
        self.stats.bytes_relayed += relayed
        if limit == "bytes":
            self.stats.circuits_closed_bytes += 1
        elif limit == "duration":
            self.stats.circuits_closed_duration += 1
