"""Which library exceptions mean "the connection failed", and how to describe them.

Everything listed in :data:`NETWORK_ERRORS` is caught at the transport's boundary and turned into
:class:`~butter.errors.PeerUnreachable` (STYLE: no ``OSError`` or ``anyio.*`` escapes a plugin's API).
"""

from __future__ import annotations

import anyio

__all__ = ["NETWORK_ERRORS", "describe"]

NETWORK_ERRORS: tuple[type[Exception], ...] = (
    OSError,  # refused, reset, unreachable, name resolution (socket.gaierror), anyio.ConnectionFailed
    ValueError,  # a host name that cannot be encoded (UnicodeError) or a malformed address
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
    anyio.IncompleteRead,
    anyio.BusyResourceError,
)


def describe(exc: BaseException) -> str:
    """A short human reason for a network failure, e.g. ``"Connection refused"``."""
    if isinstance(exc, anyio.EndOfStream):
        return "connection closed by the peer"
    if isinstance(exc, anyio.ClosedResourceError):
        return "connection closed"
    if isinstance(exc, anyio.BrokenResourceError):
        cause = exc.__cause__
        return f"connection broken ({describe(cause)})" if cause is not None else "connection broken"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
