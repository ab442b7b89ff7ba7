"""The network check: both ends of every connection prove they belong to the same overlay before any request.

Right after the secure channel's handshake (or right after connecting, in plaintext), each side sends one
fixed-size hello of :data:`HELLO_SIZE` bytes and reads the peer's:

* ``MAGIC`` (8 bytes), then the sender's ``network_id`` (UTF-8, zero-padded to 32 bytes), then
* ``HMAC-SHA256(network_key, "butter network v1" || role || network_id || binding)`` (32 bytes), where
  ``role`` is the sender's (``client``/``server``, so a hello reflected back fails) and ``binding`` is the
  TLS session's channel binding (the first Finished message, ``tls-unique``): a hello is valid only on the
  session it was made for, so it cannot be replayed on another connection, and it travels encrypted.
  Without a key the HMAC is keyed with the empty string; the key itself never crosses the wire.

Each side checks the other's hello on its own, so a mismatch is refused, and logged, by both. Nothing else
is read from a connection before its hello has passed, so the check cannot be skipped. In plaintext there
is no session to bind to (``binding`` is empty): the network id is still checked, but the key proves little.
"""

from __future__ import annotations

import hashlib
import hmac

import anyio
from anyio.abc import ByteStream
from anyio.streams.tls import TLSAttribute

from butter.errors import NETWORK_ERRORS, PeerUnreachable, describe_network_error

__all__ = ["HELLO_SIZE", "MAGIC", "Network", "NetworkRefused"]

MAGIC = b"BUTTERN1"
ID_SIZE = 32
MAC_SIZE = 32
HELLO_SIZE = len(MAGIC) + ID_SIZE + MAC_SIZE


class NetworkRefused(PeerUnreachable):
    """The peer is on another network, holds another network key, or sent no valid hello."""


class Network:
    """This node's ``network_id`` (1-32 bytes of UTF-8) and ``key`` (bytes; empty: no pre-shared key)."""

    def __init__(self, network_id: str, key: bytes = b"") -> None:
        encoded = network_id.encode()
        if not 0 < len(encoded) <= ID_SIZE:
            raise ValueError(f"network_id must be 1-{ID_SIZE} bytes of UTF-8, got {network_id!r}")
        self.network_id = network_id
        self._id = encoded.ljust(ID_SIZE, b"\0")
        self._key = key

    def hello(self, *, server: bool, binding: bytes) -> bytes:
        """The :data:`HELLO_SIZE`-byte hello this node sends in role ``server`` on a session with ``binding``."""
        return MAGIC + self._id + self._mac(self._id, server=server, binding=binding)

    def check(self, hello: bytes, *, server: bool, binding: bytes) -> None:
        """Check the peer's ``hello`` (the peer's role is the opposite of ``server``); raises
        :class:`NetworkRefused` with the reason in a sentence."""
        if len(hello) != HELLO_SIZE or not hello.startswith(MAGIC):
            raise NetworkRefused("it sent no network hello (an older or foreign protocol)")
        peer_id = hello[len(MAGIC) : len(MAGIC) + ID_SIZE]
        if peer_id != self._id:
            name = peer_id.rstrip(b"\0").decode(errors="replace")
            raise NetworkRefused(f"it is on network {name!r}, this node on {self.network_id!r}")
        expected = self._mac(peer_id, server=not server, binding=binding)
        if not hmac.compare_digest(hello[len(MAGIC) + ID_SIZE :], expected):
            raise NetworkRefused(f"its network key differs (network {self.network_id!r})")

    async def exchange(self, stream: ByteStream, *, server: bool) -> None:
        """Send this node's hello on ``stream`` and check the peer's. Raises :class:`NetworkRefused` (a
        mismatch) or :class:`~butter.errors.PeerUnreachable` (the connection failed); the caller closes
        ``stream`` and bounds the wait."""
        binding = _binding(stream)
        unsent: Exception | None = None
        try:
            try:
                await stream.send(self.hello(server=server, binding=binding))
            except NETWORK_ERRORS as exc:  # the peer may have checked our hello and left: its own says why
                unsent = exc
            received = b""
            while len(received) < HELLO_SIZE:
                received += await stream.receive(HELLO_SIZE - len(received))
        except anyio.EndOfStream:
            raise NetworkRefused("it closed the connection during the network check") from None
        except NETWORK_ERRORS as exc:
            raise PeerUnreachable(f"network check failed: {describe_network_error(unsent or exc)}") from None
        self.check(received, server=server, binding=binding)
        if unsent is not None:
            raise PeerUnreachable(f"network check failed: {describe_network_error(unsent)}")

    def _mac(self, network: bytes, *, server: bool, binding: bytes) -> bytes:
        role = b"server" if server else b"client"
        return hmac.new(self._key, b"butter network v1" + role + network + binding, hashlib.sha256).digest()


def _binding(stream: ByteStream) -> bytes:
    """The TLS session's ``tls-unique`` channel binding (the same on both ends), or ``b""`` in plaintext."""
    try:
        binding = stream.extra(TLSAttribute.channel_binding_tls_unique)
    except anyio.TypedAttributeLookupError:
        return b""
    return binding or b""
