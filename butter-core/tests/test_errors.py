"""butter.errors: errors mapped once per operation (map_exceptions) and what counts as a network failure."""

from __future__ import annotations

import errno
import functools
import sqlite3

import anyio
import pytest

from butter.errors import (
    CONNECT_ERRORS,
    NETWORK_ERRORS,
    ButterConfigError,
    PeerUnreachable,
    ProtocolError,
    RouteError,
    StoreError,
    map_exceptions,
)


def test_a_mapped_exception_is_raised_as_its_target_with_context_and_cause() -> None:
    original = ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
    with pytest.raises(PeerUnreachable, match=r"^cannot connect to 10\.0\.0\.1:7000: Connection refused$") as caught:
        with map_exceptions({OSError: PeerUnreachable}, "cannot connect to 10.0.0.1:7000"):
            raise original
    assert caught.value.__cause__ is original


def test_the_first_matching_key_wins_and_tuples_and_callables_are_accepted() -> None:
    mapping = {
        (sqlite3.OperationalError, KeyError): functools.partial(RouteError, "store-busy"),
        sqlite3.Error: StoreError,
    }
    with pytest.raises(RouteError) as caught, map_exceptions(mapping):
        raise sqlite3.OperationalError("database is locked")
    assert (caught.value.code, caught.value.message) == ("store-busy", "database is locked")
    with pytest.raises(StoreError, match=r"^sqlite: disk I/O error$"), map_exceptions(mapping, "sqlite"):
        raise sqlite3.DatabaseError("disk I/O error")


def test_unmapped_exceptions_and_cancellation_pass_through() -> None:
    with pytest.raises(TypeError), map_exceptions({ValueError: ProtocolError}):
        raise TypeError("a bug, not a peer's fault")
    with pytest.raises(KeyboardInterrupt), map_exceptions({Exception: ButterConfigError}):
        raise KeyboardInterrupt
    with map_exceptions({ValueError: ProtocolError}):
        pass  # nothing raised: nothing happens


def test_an_exception_without_message_is_described_by_its_type() -> None:
    with pytest.raises(PeerUnreachable, match=r"^lost: connection closed by the peer$"):
        with map_exceptions({anyio.EndOfStream: PeerUnreachable}, "lost"):
            raise anyio.EndOfStream
    with pytest.raises(StoreError, match=r"^KeyError$"), map_exceptions({LookupError: StoreError}):
        raise KeyError


def test_network_errors_are_network_failures_only() -> None:
    assert not any(issubclass(ValueError, kind) or issubclass(kind, ValueError) for kind in NETWORK_ERRORS)
    assert OSError in NETWORK_ERRORS and anyio.BrokenResourceError in NETWORK_ERRORS


@pytest.mark.anyio
async def test_a_host_name_that_cannot_be_encoded_is_a_connect_error() -> None:
    with pytest.raises(CONNECT_ERRORS):
        await anyio.connect_tcp("x" * 64 + ".\u00e9xample", 7000)  # IDNA: a label over 63 characters
    assert UnicodeError in CONNECT_ERRORS
