"""Resource limits of the transport (in the spirit of libp2p's resource manager) and how hitting one is reported.

Hitting a limit is never fatal: the connection or request concerned is refused or cut off, the event is
counted in :class:`~butter_transport_tcp.TcpStats`, and logged at WARNING at most once per
``LOG_INTERVAL`` seconds per kind (with the number of events since the last line), so a flood cannot
flood the log too.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

__all__ = ["LOG_INTERVAL", "ConnectionCount", "RateLimitedLog"]

LOG_INTERVAL = 10.0  # seconds between two log lines about the same kind of limit


class RateLimitedLog:
    """Log a warning per ``kind`` at most once every ``interval`` seconds (wall clock), counting the rest."""

    def __init__(self, logger: logging.Logger, interval: float = LOG_INTERVAL) -> None:
        self.logger = logger
        self.interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, kind: str, message: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < self.interval:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        self._last[kind] = now
        suppressed = self._suppressed.pop(kind, 0)
        if suppressed:
            message += " (and %d more like it in the last %.0f s)"
            args = (*args, suppressed, now - last if last is not None else 0.0)
        self.logger.warning(message, *args)


@dataclass(slots=True)
class ConnectionCount:
    """Connections counted toward ``max_connections`` (``limit``): incoming ones from admission until they
    end, outgoing ones from the start of their connect until they are released. Shared by the pool and
    admission."""

    limit: int
    open: int = 0

    @property
    def full(self) -> bool:
        return self.open >= self.limit
