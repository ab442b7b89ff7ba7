"""Which node is expected at which address, and the outgoing handshake that checks it.

An address's expected node id is either the one the node told the transport (its known hosts:
:meth:`Identities.expect`) or, with ``pin_identities``, the first one authenticated there (trust on first
use). At most ``IDENTITY_CAPACITY`` addresses are remembered, least recently used dropped first. In
plaintext nothing is authenticated, so nothing is expected.
"""

from __future__ import annotations

from collections import Counter, OrderedDict

import anyio
from anyio.abc import ByteStream

from butter.errors import PeerIdentityMismatch, PeerUnreachable
from butter.peers import PeerAddress

from ._limits import RateLimitedLog
from ._native import open_stream, take_socket
from ._network import Network, NetworkRefused
from ._secure import SecureChannel
from ._stats import TcpStats

__all__ = ["IDENTITY_CAPACITY", "Identities"]

IDENTITY_CAPACITY = 16384  # addresses whose expected node id is remembered (pinned or told by the node), LRU


class Identities:
    """Expected node ids per address, and securing outgoing streams against them.

    ``channel`` is the transport's secure channel (``None``: plaintext, nothing is expected); ``network``
    checks each peer's network hello; ``handshake_timeout`` (seconds) bounds each handshake, network check
    included; ``pin`` turns trust on first use on.
    """

    def __init__(
        self,
        channel: SecureChannel | None,
        network: Network,
        *,
        pin: bool,
        handshake_timeout: float,
        stats: TcpStats,
        limits: RateLimitedLog,
    ) -> None:
        self.channel = channel
        self.network = network
        self.pin = pin
        self.handshake_timeout = handshake_timeout
        self.stats = stats
        self.limits = limits
        self._expected: OrderedDict[PeerAddress, str] = OrderedDict()  # address -> expected node id, LRU
        self._hosts: Counter[str] = Counter()  # addresses in _expected per host

    def expected(self, address: PeerAddress) -> str | None:
        """The node id expected at ``address``, or ``None`` when nothing is known (always in plaintext)."""
        return self._expected.get(address) if self.channel is not None else None

    def knows_host(self, host: str) -> bool:
        """Whether some address of ``host`` (an IP) has an expected node id: a known host or a dialled peer."""
        return host in self._hosts

    def expect(self, address: PeerAddress, node_id: str) -> bool:
        """Expect node ``node_id`` (hex) at ``address`` from now on; ``False`` (nothing remembered) in
        plaintext."""
        if self.channel is None:
            return False
        if address not in self._expected:
            self._hosts[address.host] += 1
        self._expected[address] = node_id
        self._expected.move_to_end(address)
        while len(self._expected) > IDENTITY_CAPACITY:
            self._drop(self._expected.popitem(last=False)[0])
        return True

    def forget(self, address: PeerAddress) -> None:
        """Expect no particular node at ``address`` any more (it left; another node may take the address)."""
        if self._expected.pop(address, None) is not None:
            self._drop(address)

    def _drop(self, address: PeerAddress) -> None:
        self._hosts[address.host] -= 1
        if self._hosts[address.host] <= 0:
            del self._hosts[address.host]

    async def secure_outgoing(self, stream: ByteStream, address: PeerAddress) -> tuple[ByteStream, str | None]:
        """Secure a connected ``stream`` to the peer at ``address`` as the client and check that the peer is
        on this node's network: the TLS stream and the peer's authenticated node id (``stream`` and ``None``
        in plaintext). The id must be the one expected at ``address``; the first one seen there is pinned
        when ``pin`` is set.

        Raises :class:`~butter.errors.PeerIdentityMismatch` or :class:`~butter.errors.PeerUnreachable`
        (handshake failed, the peer is on another network or holds another network key, or it all took
        longer than ``handshake_timeout``); ``stream`` is closed then, and when the handshake is cancelled.
        """
        expected = self._expected.get(address) if self.channel is not None else None
        node_id: str | None = None
        try:
            with anyio.fail_after(self.handshake_timeout):
                if self.channel is not None:
                    stream, node_id = await self.channel.secure_client(stream, expected)
                elif (sock := await take_socket(stream)) is not None:  # asyncio: the cheaper stream
                    stream = await open_stream(sock, None, server_side=False)
                await self.network.exchange(stream, server=False)
        except TimeoutError:
            self.stats.handshakes_failed += 1
            await _close(stream)
            raise PeerUnreachable(f"no secure handshake with {address} within {self.handshake_timeout} s") from None
        except PeerIdentityMismatch as exc:
            self.stats.identity_mismatches += 1
            await _close(stream)
            self.limits.warning(
                "identity", "refused %s: it authenticated as node %s, but %s is expected there", address,
                exc.actual, exc.expected,
            )
            raise PeerIdentityMismatch(
                f"refused {address}: it is node {exc.actual}, not the expected {exc.expected}",
                expected=exc.expected, actual=exc.actual,
            ) from None
        except NetworkRefused as exc:
            self.stats.networks_refused += 1
            await _close(stream)
            self.limits.warning("network", "refused peer %s: %s", address, exc)
            raise NetworkRefused(f"refused peer {address}: {exc}") from None
        except PeerUnreachable as exc:
            self.stats.handshakes_failed += 1
            await _close(stream)
            raise PeerUnreachable(f"cannot secure the connection to {address}: {exc}") from None
        except BaseException:  # cancelled (the node closing mid-handshake) or unforeseen: never leak the socket
            await _close(stream)
            raise
        if self.pin and expected is None and node_id is not None:
            self.expect(address, node_id)
        return stream, node_id


async def _close(stream: ByteStream) -> None:
    with anyio.CancelScope(shield=True):
        await anyio.aclose_forcefully(stream)
