"""The secure channel: TLS 1.3, mutually authenticated with the nodes' Ed25519 identities.

One step, applied to any connected byte stream (dialled, accepted, or adopted from a hole punch):
:meth:`SecureChannel.secure_client` / :meth:`SecureChannel.secure_server` run the TLS handshake over it
and return the encrypted stream with the peer's node id. The TLS itself is Python's :mod:`ssl` (OpenSSL):
on asyncio the event loop's own TLS (:mod:`._native`), on trio :mod:`._trio`'s (memory buffers, as anyio's
:class:`~anyio.streams.tls.TLSStream`), on any other stream anyio's ``TLSStream``;
nothing here is home-made cryptography.

How identities are carried (the approach of the libp2p TLS spec, simplified):

* Each node presents an X.509 certificate whose **subject key is the node's Ed25519 identity key itself**
  (:class:`butter.Identity`). TLS 1.3 signs the handshake transcript with that key (CertificateVerify,
  RFC 8446 §4.4.3, scheme ``ed25519``), so completing the handshake proves possession of the identity key;
  the node id is then derived from the certificate's key exactly as :func:`butter.node_id_from_public_key`
  does. libp2p uses an ephemeral certificate key plus a signed extension because its identity keys may be
  RSA or secp256k1, which TLS cannot use directly; Butter's identities are always Ed25519, which TLS 1.3
  supports natively, so the extra key and the extension parser (own code checking own signatures) are
  not needed. The cost is that the identity key also signs TLS transcripts; TLS 1.3 prefixes those
  signatures with a fixed context string, so they cannot be mistaken for anything else Butter signs.
* Python's :mod:`ssl` cannot accept an unverified client certificate (it has no verify callback:
  ``CERT_OPTIONAL`` aborts on a self-signed one). So every node certificate is issued by one **well-known
  issuer whose private key is public** (derived from a fixed string below). Chain verification thus
  passes for any node and means nothing by itself; it only gets the certificate past OpenSSL. What
  authenticates the peer is the TLS proof of possession of the certificate's key, plus :func:`peer_node_id`
  after the handshake. Anyone can mint a certificate for *their own* key, which is the same trust model as
  self-signed certificates; nobody can present another node's key without its private key.
* Both sides use ``CERT_REQUIRED`` (mutual authentication), TLS 1.3 only, no host name check, no session
  tickets (so no resumption that would skip the certificates).
"""

from __future__ import annotations

import datetime
import hashlib
import os
import socket
import ssl
import tempfile
from pathlib import Path

import anyio
from anyio.abc import ByteStream
from anyio.streams.tls import TLSAttribute, TLSStream
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import NameOID

from butter import Identity, node_id_from_public_key
from butter.errors import NETWORK_ERRORS, PeerIdentityMismatch, PeerUnreachable, describe_network_error

from ._native import open_stream, take_socket

__all__ = ["ISSUER_SEED", "SecureChannel", "peer_node_id"]

# The issuer's private key is this string's SHA-256, on purpose public: see the module docstring.
ISSUER_SEED = b"butter secure channel: well-known certificate issuer, v1 (this key is public)"
_NOT_BEFORE = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
_NOT_AFTER = datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.UTC)


def _issuer() -> tuple[Ed25519PrivateKey, x509.Certificate]:
    key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(ISSUER_SEED).digest())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "butter well-known issuer (public key)")])
    usage = x509.KeyUsage(
        digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
        key_agreement=False, key_cert_sign=True, crl_sign=False, encipher_only=False, decipher_only=False,
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(_NOT_BEFORE)
        .not_valid_after(_NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .sign(key, None)
    )
    return key, cert


_ISSUER_KEY, _ISSUER_CERT = _issuer()
_ISSUER_PEM = _ISSUER_CERT.public_bytes(serialization.Encoding.PEM).decode()


def node_certificate(identity: Identity) -> x509.Certificate:
    """The certificate a node presents: its Ed25519 identity key, subject CN = its node id."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity.node_id)])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(_ISSUER_CERT.subject)
        .public_key(identity.public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(_NOT_BEFORE)
        .not_valid_after(_NOT_AFTER)
        .sign(_ISSUER_KEY, None)
    )


def peer_node_id(der: bytes | None) -> str:
    """The node id carried by a peer's certificate (DER), or :class:`PeerUnreachable` if it carries none.

    Only call it after a completed handshake: the handshake is what proved the peer holds the key.
    """
    if not der:
        raise PeerUnreachable("the peer presented no certificate")
    try:
        key = x509.load_der_x509_certificate(der).public_key()
    except ValueError as exc:
        raise PeerUnreachable(f"the peer's certificate is unreadable: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise PeerUnreachable(f"the peer's certificate key is {type(key).__name__}, not an Ed25519 identity")
    return node_id_from_public_key(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def _context(identity: Identity, *, server: bool) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=_ISSUER_PEM)
    if server:
        context.num_tickets = 0
    pem = node_certificate(identity).public_bytes(serialization.Encoding.PEM) + identity.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # ssl only loads keys from files: a private directory (mode 0700), removed at once.
    with tempfile.TemporaryDirectory(prefix="butter-tls-") as directory:
        path = Path(directory) / "node.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        context.load_cert_chain(path)
    return context


class SecureChannel:
    """TLS 1.3 contexts for one node ``identity``; secures streams in either role.

    On asyncio, an accepted socket (server) or an anyio socket stream (client) is secured with asyncio's
    native TLS (the returned stream is a :class:`~butter_transport_tcp._native.NativeStream`), on trio
    with :mod:`._trio`'s ``TrioTLSStream``; any other stream (an adopted one) through anyio's
    :class:`~anyio.streams.tls.TLSStream`. Either way the
    result is an anyio byte stream with :class:`~anyio.streams.tls.TLSAttribute` and
    :class:`~anyio.abc.SocketAttribute` extras.

    Building one costs a certificate signature and two contexts (about a millisecond); reuse it for every
    connection. Neither method applies a timeout: the caller bounds the handshake (``anyio.fail_after``).
    """

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self.node_id = identity.node_id
        self._client = _context(identity, server=False)
        self._server = _context(identity, server=True)

    async def secure_client(self, stream: ByteStream, expected: str | None = None) -> tuple[ByteStream, str]:
        """Run the client side of the handshake over ``stream``; return the TLS stream and the peer's id.

        Raises :class:`~butter.errors.PeerIdentityMismatch` when ``expected`` (a node id) is given and the
        peer is another node, :class:`~butter.errors.PeerUnreachable` when the handshake fails (the peer
        speaks plaintext, or presents no usable identity). ``stream`` is closed on failure.
        """
        tls = await self._handshake(stream, server=False)
        try:
            peer = peer_node_id(tls.extra(TLSAttribute.peer_certificate_binary))
            if expected is not None and peer != expected:
                raise PeerIdentityMismatch(
                    f"the peer is node {peer}, not the expected {expected}", expected=expected, actual=peer
                )
        except PeerUnreachable:
            await _close(tls)
            raise
        return tls, peer

    async def secure_server(self, stream: ByteStream | socket.socket) -> tuple[ByteStream, str]:
        """Run the server side of the handshake over ``stream``; return the TLS stream and the peer's id.

        ``stream`` is a connected byte stream, or an accepted socket not yet wrapped in one (secured with
        the event loop's own stream, ``_native.open_stream``; a stream would already have read what the
        client sent).
        Raises :class:`~butter.errors.PeerUnreachable` when the handshake fails or the client presents
        no usable identity. ``stream`` is closed on failure.
        """
        tls = await self._handshake(stream, server=True)
        try:
            peer = peer_node_id(tls.extra(TLSAttribute.peer_certificate_binary))
        except PeerUnreachable:
            await _close(tls)
            raise
        return tls, peer

    async def _handshake(self, stream: ByteStream | socket.socket, *, server: bool) -> ByteStream:
        context = self._server if server else self._client
        try:
            if isinstance(stream, socket.socket):  # an accepted socket (server side)
                return await open_stream(stream, context, server_side=True)
            if not server and (sock := await take_socket(stream)) is not None:
                return await open_stream(sock, context, server_side=False)
            return await TLSStream.wrap(
                stream,
                server_side=server,
                hostname=None,
                ssl_context=context,
                standard_compatible=False,  # no close_notify wait: connections end with a forceful close
            )
        except BaseException as exc:
            if isinstance(stream, socket.socket):
                stream.close()
            else:
                await _close(stream)
            if isinstance(exc, NETWORK_ERRORS):
                raise PeerUnreachable(f"TLS handshake failed: {describe_network_error(exc)}") from None
            raise


async def _close(stream: ByteStream) -> None:
    with anyio.CancelScope(shield=True):
        await anyio.aclose_forcefully(stream)
