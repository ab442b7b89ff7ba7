"""The secure channel with real sockets on 127.0.0.1: mutual authentication, impersonation, pinning, encryption.

Each test checks a real outcome: which node id each side authenticated, that a request never reached a
server that was refused, or which bytes crossed the wire.
"""

from __future__ import annotations

import contextlib
import os
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from anyio.abc import SocketStream
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from butter import Identity
from butter.errors import PeerIdentityMismatch, PeerUnreachable
from butter.peers import PeerAddress
from butter.wire import Reply, Request, encode
from butter_transport_tcp import Network, SecureChannel, TcpTransport
from butter_transport_tcp._secure import _ISSUER_CERT, _ISSUER_KEY, _NOT_AFTER, _NOT_BEFORE, peer_node_id

from .helpers import LOOPBACK, read_events, serving, tcp_transport

pytestmark = pytest.mark.anyio


def transport(**options: Any) -> TcpTransport:
    return tcp_transport(**options)


class Counting:
    """An echo dispatcher that counts the requests it saw."""

    def __init__(self) -> None:
        self.seen = 0

    async def __call__(self, request: Request) -> Reply:
        self.seen += 1
        return Reply(request.id, request.body)


async def test_both_sides_authenticate_each_other() -> None:
    with anyio.fail_after(10):
        server, client = transport(), transport()
        assert server.node_id != client.node_id
        async with serving(server) as address, serving(client):
            assert await client.request(address, "echo", b"hi", timeout=5) == b"hi"
            assert client.expected_node_id(address) == server.node_id  # pinned on first contact
            (inbound,) = server._inbound
            assert inbound.node_id == client.node_id
            (outgoing,) = client._pool.connections.values()
            assert outgoing.node_id == server.node_id


async def test_a_node_presenting_another_identity_is_refused_before_any_request() -> None:
    with anyio.fail_after(10):
        impostor, client, dispatch = transport(), transport(), Counting()
        genuine = Identity.generate()
        async with serving(impostor, dispatch) as address, serving(client):
            client.expect_identity(address, genuine.node_id)
            with pytest.raises(PeerIdentityMismatch) as info:
                await client.request(address, "echo", b"secret", timeout=5)
            assert (info.value.expected, info.value.actual) == (genuine.node_id, impostor.node_id)
            assert isinstance(info.value, PeerUnreachable)
            assert dispatch.seen == 0 and client.stats.identity_mismatches == 1
            assert client.open_connections == 0


async def test_a_new_node_at_a_pinned_address_is_refused_until_forgotten() -> None:
    with anyio.fail_after(10):
        first, client = transport(), transport()
        async with serving(client):
            async with serving(first) as address:
                assert await client.request(address, "echo", b"1", timeout=5) == b"1"
            second = tcp_transport(port=address.port, max_frame=4 * 1024 * 1024)  # same address, other identity
            async with serving(second):
                with pytest.raises(PeerIdentityMismatch):
                    await client.request(address, "echo", b"2", timeout=5)
                client.forget(address)  # what the node does when the first host leaves its known hosts
                assert await client.request(address, "echo", b"3", timeout=5) == b"3"
                assert client.expected_node_id(address) == second.node_id


async def test_expecting_another_identity_closes_an_open_connection() -> None:
    with anyio.fail_after(10):
        server, client = transport(), transport()
        async with serving(server) as address, serving(client):
            assert await client.request(address, "echo", b"x", timeout=5) == b"x"
            client.expect_identity(address, Identity.generate().node_id)
            assert client.open_connections == 0 and client.stats.identity_mismatches == 1
            with pytest.raises(PeerIdentityMismatch):
                await client.request(address, "echo", b"y", timeout=5)


def test_the_node_id_comes_from_the_key_not_the_name() -> None:
    """A certificate naming another node (subject CN) still carries its holder's own key, hence id."""
    victim, attacker = Identity.generate(), Identity.generate()
    forged = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, victim.node_id)]))
        .issuer_name(_ISSUER_CERT.subject)
        .public_key(attacker.public_key)
        .serial_number(7)
        .not_valid_before(_NOT_BEFORE)
        .not_valid_after(_NOT_AFTER)
        .sign(_ISSUER_KEY, None)
    )
    assert peer_node_id(forged.public_bytes(serialization.Encoding.DER)) == attacker.node_id


def test_presenting_a_key_one_does_not_hold_is_impossible(tmp_path: object) -> None:
    """TLS only lets a side present a certificate whose private key it has: OpenSSL refuses the pair."""
    from pathlib import Path

    from butter_transport_tcp._secure import node_certificate

    victim, attacker = Identity.generate(), Identity.generate()
    path = Path(str(tmp_path)) / "forged.pem"
    path.write_bytes(
        node_certificate(victim).public_bytes(serialization.Encoding.PEM)
        + attacker.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    with pytest.raises(ssl.SSLError):
        context.load_cert_chain(path)


def test_a_non_ed25519_certificate_is_not_an_identity() -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(_NOT_BEFORE).not_valid_after(_NOT_AFTER).sign(key, hashes.SHA256())
    )
    with pytest.raises(PeerUnreachable, match="not an Ed25519"):
        peer_node_id(cert.public_bytes(serialization.Encoding.DER))
    with pytest.raises(PeerUnreachable, match="no certificate"):
        peer_node_id(None)


async def test_secure_and_plaintext_do_not_talk() -> None:
    with anyio.fail_after(10):
        plain, secure = transport(secure=False), transport(handshake_timeout=1.0)
        async with serving(plain) as plain_address, serving(secure) as secure_address:
            with pytest.raises(PeerUnreachable, match="secure"):
                await secure.request(plain_address, "echo", b"x", timeout=5)
            with pytest.raises(PeerUnreachable):
                await plain.request(secure_address, "echo", b"x", timeout=5)
            while secure.stats.handshakes_failed < 2:  # our dial, and their plaintext frame on our listener
                await anyio.sleep(0.01)


async def test_a_client_that_never_handshakes_is_cut_off_and_others_are_served() -> None:
    with anyio.fail_after(10):
        server = transport(handshake_timeout=0.3)
        async with serving(server) as address:
            async with await anyio.connect_tcp(LOOPBACK, address.port) as silent:
                start = anyio.current_time()
                with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                    await silent.receive()
                assert anyio.current_time() - start < 2
            while server.open_connections:  # the server closes first, then counts
                await anyio.sleep(0.01)
            assert server.stats.handshakes_failed == 1
            client = transport()
            async with serving(client):
                assert await client.request(address, "echo", b"ok", timeout=5) == b"ok"


@asynccontextmanager
async def recording_relay(target: PeerAddress, seen: bytearray) -> AsyncIterator[PeerAddress]:
    """A TCP relay on 127.0.0.1 that forwards both ways to ``target`` and records every byte it carries."""

    async def pump(source: SocketStream, sink: SocketStream) -> None:
        try:
            while True:
                data = await source.receive()
                seen.extend(data)
                await sink.send(data)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass

    async def relay(downstream: SocketStream) -> None:
        async with downstream, await anyio.connect_tcp(target.host, target.port) as upstream:
            async with anyio.create_task_group() as tg:
                tg.start_soon(pump, downstream, upstream)
                await pump(upstream, downstream)
                tg.cancel_scope.cancel()

    listener = await anyio.create_tcp_listener(local_host=LOOPBACK, local_port=0)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, relay)
        yield PeerAddress(LOOPBACK, listener.extra(anyio.abc.SocketAttribute.local_port))
        tg.cancel_scope.cancel()


@pytest.mark.parametrize("secure", [True, False])
async def test_what_crosses_the_wire(secure: bool) -> None:
    marker = b"the-body-nobody-else-should-read-" * 4
    with anyio.fail_after(10):
        server, client = transport(secure=secure), transport(secure=secure)
        seen = bytearray()
        async with serving(server) as address, serving(client), recording_relay(address, seen) as relay:
            assert await client.request(relay, "echo", marker, timeout=5) == marker
        assert len(seen) > len(marker)
        assert (marker in seen) is not secure


async def test_a_raw_secure_client_speaks_frames_over_the_channel() -> None:
    """The secure step on its own (what a hole-punched stream goes through) talks to a transport."""
    with anyio.fail_after(10):
        server = transport()
        channel = SecureChannel(Identity.generate())
        async with serving(server) as address:
            raw = await anyio.connect_tcp(LOOPBACK, address.port)
            stream, peer = await channel.secure_client(raw, server.node_id)
            assert peer == server.node_id
            await Network("butter").exchange(stream, server=False)
            async with stream:
                await stream.send(encode(Request(5, "echo", b"over tls")))
                assert await read_events(stream, 1) == [Reply(5, b"over tls")]  # type: ignore[arg-type]


async def test_large_requests_on_many_connections_at_once_arrive_intact() -> None:
    """Several peers send 1 MiB requests to one node at the same time, over TLS: every reply is its own
    request's bytes (on asyncio the TLS layer of every connection reads the socket into one shared
    buffer, so interleaved reads must not mix connections)."""
    with anyio.fail_after(60):
        server = tcp_transport(max_frame=4 * 1024 * 1024)
        clients = [tcp_transport(max_frame=4 * 1024 * 1024) for _ in range(4)]
        async with serving(server) as address:
            async with contextlib.AsyncExitStack() as stack:
                for client in clients:
                    await stack.enter_async_context(serving(client))
                replies: dict[int, bool] = {}

                async def send(index: int, body: bytes) -> None:
                    for _ in range(3):
                        assert await clients[index].request(address, "echo", body, timeout=30) == body
                    replies[index] = True

                async with anyio.create_task_group() as tg:
                    for index in range(len(clients)):
                        tg.start_soon(send, index, os.urandom(1024 * 1024))
                assert len(replies) == len(clients)
