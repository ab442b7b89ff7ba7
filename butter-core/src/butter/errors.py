"""Butter's exception tree, rooted at :class:`ButterError`.

Library exceptions (``OSError``, ``anyio.*``, ``msgpack.*``) are translated at each boundary into one of
these, so a caller of Butter's API only ever needs to catch ``ButterError`` or one of its children.
"""

from __future__ import annotations


class ButterError(Exception):
    """Base class of every error Butter raises on purpose."""


class ButterConfigError(ButterError):
    """A setting is invalid, or a configured plugin is missing or broken."""


class ProtocolError(ButterError):
    """A peer sent bytes that break the wire protocol (SPEC §2, DESIGN "Wire").

    ``code`` is the machine-readable error code that is also sent back to the peer in an error reply.
    """

    code = "protocol-error"


class FrameTooLarge(ProtocolError):
    """A frame's announced length exceeds the configured maximum (``max_frame``, bytes)."""

    code = "frame-too-large"


class TransportError(ButterError):
    """Base class for failures to exchange a request with a peer."""


class PeerUnreachable(TransportError):
    """The peer could not be reached: connection refused, reset, or closed mid-request."""


class RequestTimeout(TransportError):
    """The peer did not answer within the timeout (seconds) given to the request."""


class RemoteError(ButterError):
    """The peer answered with an error reply.

    ``code`` is one of ``unknown-route``, ``handler-error``, ``frame-too-large``, ``protocol-error``,
    ``overloaded`` or a code chosen by an application handler raising :class:`RouteError`.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class RouteError(ButterError):
    """Raised by a route handler to send a deliberate error reply (``code``, ``message``) to the caller.

    Any other exception escaping a handler is logged and answered with code ``handler-error``.
    """

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
