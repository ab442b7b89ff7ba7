"""Log records as JSON lines, for log shippers (``butter node --log-format json``).

A node sets :data:`current_node_id` when it starts running, so every record logged from its tasks (and the
tasks they spawn) carries its node id, even with many nodes in one process (``butter demo``). A record may
name its ``event`` and ``peer`` through ``extra``; otherwise its event is the message template (the same for
every record one log call makes, so it groups them).
"""

from __future__ import annotations

import contextvars
import json
import logging
from datetime import UTC, datetime

__all__ = ["JsonFormatter", "current_node_id"]

current_node_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("butter_node_id", default=None)
"""The id of the node whose task is running, or ``None`` outside any node."""


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: ``time`` (ISO 8601, UTC, microseconds), ``level``,
    ``logger``, ``message`` (formatted), ``node_id`` (``null`` outside a node), ``event``, ``peer`` (a node id
    or address, ``null`` when the record names none), and ``exception`` (the traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="microseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "node_id": getattr(record, "node_id", None) or current_node_id.get(),
            "event": getattr(record, "event", None) or str(record.msg),
            "peer": _text(getattr(record, "peer", None)),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def _text(value: object) -> str | None:
    return None if value is None else str(value)
