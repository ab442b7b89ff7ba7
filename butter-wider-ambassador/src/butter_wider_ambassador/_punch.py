"""TCP hole punching by simultaneous open (the transport half of libp2p DCUtR, over plain TCP).

Both peers learn the other's observed public address from the ambassador (see :mod:`._server`), each from
a connection it opened from a local port it then reuses. Each side then connects *from that same local
port* to the other's observed address, at the same moment. The first SYN to leave a NAT opens a mapping
there; when the other side's SYN arrives it matches that mapping (TCP simultaneous open, which Linux and
its connection tracking support) and the connection is established, with no listener involved. A SYN that
arrives before the other side's mapping exists is dropped or refused; the attempt is repeated every
``RETRY`` seconds until ``timeout``. Routers that rewrite source ports unpredictably (symmetric NAT)
defeat this; the caller then keeps using the relay.
"""

from __future__ import annotations

import anyio
from anyio.abc import SocketStream

from butter.errors import PeerUnreachable, RequestTimeout
from butter.peers import PeerAddress

from ._io import connect

__all__ = ["RETRY", "simultaneous_open"]

RETRY = 0.05  # seconds between attempts after a refused or reset SYN


async def simultaneous_open(local: tuple[str, int], peer: PeerAddress, *, timeout: float) -> SocketStream:
    """A TCP connection from ``local`` (host, port) to ``peer`` while ``peer`` connects to us likewise.

    Retries until ``timeout`` seconds have passed. Raises :class:`~butter.errors.PeerUnreachable` (with the
    last reason) when no attempt succeeded.
    """
    deadline = anyio.current_time() + timeout
    last = "no attempt"
    while (remaining := deadline - anyio.current_time()) > 0:
        try:
            return await connect(peer, timeout=remaining, local=local, reuse=True)
        except (PeerUnreachable, RequestTimeout) as exc:
            last = str(exc)
        await anyio.sleep(min(RETRY, max(0.0, deadline - anyio.current_time())))
    raise PeerUnreachable(f"hole punch from port {local[1]} to {peer} failed within {timeout} s: {last}")
