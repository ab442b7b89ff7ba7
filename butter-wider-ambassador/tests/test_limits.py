"""Relay accounting: circuit budgets (bytes, duration), reservation and circuit limits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from butter_wider_ambassador import CircuitBudget, LimitExceeded, Refusal, RelayLedger, RelayLimits


def test_defaults_are_no_looser_than_circuit_relay_v2() -> None:
    limits = RelayLimits()
    assert limits.circuit_expiry <= 120 and limits.circuit_bytes <= 128 * 1024
    assert limits.max_reservations <= 128 and limits.max_circuits_per_reservation <= 16


def test_budget_refuses_the_chunk_that_would_exceed_it() -> None:
    budget = CircuitBudget.start(RelayLimits(circuit_bytes=100, circuit_expiry=10), now=0)
    budget.consume(60, now=1)
    budget.consume(40, now=2)
    with pytest.raises(LimitExceeded) as exc:
        budget.consume(1, now=3)
    assert exc.value.limit == "bytes" and budget.used == 100


def test_budget_ends_at_its_deadline() -> None:
    budget = CircuitBudget.start(RelayLimits(circuit_expiry=5), now=100)
    assert budget.remaining_time(103) == 2
    with pytest.raises(LimitExceeded) as exc:
        budget.consume(1, now=105)
    assert exc.value.limit == "duration"


@given(st.lists(st.integers(0, 5000), max_size=50), st.integers(1, 20000))
def test_a_budget_never_lets_more_than_its_bytes_through(chunks: list[int], limit: int) -> None:
    budget = CircuitBudget.start(RelayLimits(circuit_bytes=limit), now=0)
    passed = 0
    for size in chunks:
        try:
            budget.consume(size, now=0)
        except LimitExceeded:
            break
        passed += size
    assert passed <= limit and passed == budget.used


def test_reservation_limits() -> None:
    ledger = RelayLedger(RelayLimits(max_reservations=3, max_reservations_per_ip=2))
    ledger.reserve("a", "198.51.100.1")
    ledger.reserve("b", "198.51.100.1")
    with pytest.raises(Refusal) as exc:
        ledger.reserve("c", "198.51.100.1")
    assert exc.value.code == "too-many-from-ip"
    ledger.reserve("c", "198.51.100.2")
    with pytest.raises(Refusal) as exc:
        ledger.reserve("d", "198.51.100.3")
    assert exc.value.code == "reservations-full"
    ledger.release("a")
    ledger.reserve("d", "198.51.100.3")
    assert ledger.reservations == 3 and ledger.stats.reservations_refused == 2


def test_circuit_limits_and_stats() -> None:
    ledger = RelayLedger(RelayLimits(max_circuits=3, max_circuits_per_reservation=2))
    with pytest.raises(Refusal):
        ledger.open_circuit("nobody")
    ledger.reserve("a", "ip1")
    ledger.reserve("b", "ip2")
    ledger.open_circuit("a")
    ledger.open_circuit("a")
    with pytest.raises(Refusal) as exc:
        ledger.open_circuit("a")
    assert exc.value.code == "circuits-full"
    ledger.open_circuit("b")
    ledger.reserve("c", "ip3")
    with pytest.raises(Refusal) as exc:
        ledger.open_circuit("c")
    assert exc.value.code == "relay-full"
    ledger.close_circuit("a", relayed=500, limit="bytes")
    ledger.close_circuit("b", relayed=20, limit="duration")
    ledger.open_circuit("c")
    stats = ledger.stats
    assert (stats.circuits_opened, stats.circuits_refused, stats.bytes_relayed) == (4, 3, 520)
    assert (stats.circuits_closed_bytes, stats.circuits_closed_duration) == (1, 1)
