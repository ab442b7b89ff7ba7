"""The smallest HTTP/1.1 server the observe pages need: ``GET`` of a few fixed paths, one response per
connection, on the caller's event loop (so a page reads a node's state without locks).

A request head larger than 8 KiB or slower than 5 s is dropped; any method but ``GET`` or an unknown path
gets 404.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

import anyio
from anyio.abc import SocketAttribute, SocketStream

__all__ = ["Page", "serve_http"]

log = logging.getLogger("butter.observe.http")

MAX_HEAD = 8192  # bytes of an HTTP request head
HEAD_TIMEOUT = 5.0  # seconds to receive it

Page = Callable[[], Awaitable[tuple[int, str, bytes]]]
"""Makes one response: (status code, content type, body)."""

REASONS = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}


async def serve_http(
    host: str, port: int, pages: Mapping[str, Page], *, what: str,
    on_listening: Callable[[int], None] | None = None,
) -> None:
    """Serve ``GET`` of each path of ``pages`` on ``host:port`` (port 0: any free one) until cancelled; logs
    ``"<what> on http://host:port (paths)"`` and calls ``on_listening(port bound)`` once listening. Raises
    ``OSError`` when the port cannot be bound."""
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    actual = listener.extra(SocketAttribute.local_port)
    known = ", ".join(sorted(pages))
    log.info("%s on http://%s:%d (%s)", what, host, actual, known)
    if on_listening is not None:
        on_listening(actual)

    async def answer(stream: SocketStream) -> None:
        async with stream:
            head = b""
            with anyio.move_on_after(HEAD_TIMEOUT):
                while b"\r\n\r\n" not in head and len(head) < MAX_HEAD:
                    try:
                        head += await stream.receive(MAX_HEAD)
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        return
            if b"\r\n\r\n" not in head:
                return
            method, _, rest = head.partition(b" ")
            path = rest.split(b" ", 1)[0].split(b"?", 1)[0].decode("latin-1")
            page = pages.get(path) if method == b"GET" else None
            if page is None:
                status, kind, body = 404, "text/plain; charset=utf-8", f"not found: try {known}\n".encode()
            else:
                status, kind, body = await page()
            response = (f"HTTP/1.1 {status} {REASONS.get(status, '')}\r\nContent-Type: {kind}\r\n"
                        f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
                        ).encode() + body
            try:
                await stream.send(response)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass

    async with listener:
        await listener.serve(answer)
