"""The ``tcp`` driver: public surface, options, address selection, and two real nodes over TCP."""

from __future__ import annotations

import ipaddress

import anyio
import pytest

import butter
import butter_transport_tcp
from butter import Identity, load_driver
from butter.capabilities import OutgoingAdoption
from butter.errors import ButterConfigError
from butter.peers import PeerAddress, PeerInfo
from butter.settings import ButterSettings
from butter.slots import Transport
from butter.wire import decode_payload
from butter_transport_tcp import TcpOptions, TcpTransport, TcpTransportPlugin
from butter_transport_tcp._address import advertised_address, outbound_ipv4

pytestmark = pytest.mark.anyio


def test_public_api_is_pinned() -> None:
    assert butter_transport_tcp.__all__ == [
        "Network", "NetworkRefused", "SecureChannel", "TcpOptions", "TcpStats", "TcpTransport", "TcpTransportPlugin"
    ]
    transport = TcpTransport(ButterSettings(host="127.0.0.1", port=0))
    assert isinstance(transport, Transport)
    assert isinstance(transport, OutgoingAdoption)  # the capability butter-wider-ambassador's hole punch uses
    assert TcpTransportPlugin.Options is TcpOptions


def test_entry_point_loads_with_validated_options() -> None:
    plugin = load_driver("butter.transport", "tcp", {"idle_timeout": 5, "max_connections": 8})
    assert isinstance(plugin, TcpTransportPlugin)
    assert plugin.options.idle_timeout == 5.0 and plugin.options.max_connections == 8
    with pytest.raises(ButterConfigError, match="max_conections"):
        load_driver("butter.transport", "tcp", {"max_conections": 8})
    with pytest.raises(ButterConfigError, match="idle_timeout"):
        load_driver("butter.transport", "tcp", {"idle_timeout": 0})


class FakeNode:
    """The part of :class:`~butter.slots.NodeServices` the plugin uses: settings, identity, subscribe."""

    def __init__(self) -> None:
        self.settings = ButterSettings(
            host="127.0.0.1", port=4321, advertise_host="198.51.100.2", max_frame="64KiB", connect_timeout=1.5
        )
        self.identity = Identity.generate()
        self.observers: list[object] = []

    def subscribe(self, observer: object) -> None:
        self.observers.append(observer)


def test_plugin_builds_the_transport_from_node_settings() -> None:
    node = FakeNode()
    options = TcpTransportPlugin.Options(read_chunk=4096, max_concurrent_requests=3)
    made = TcpTransportPlugin(options).butter_transport(node)  # type: ignore[arg-type]
    assert (made.host, made.port, made.advertise_host) == ("127.0.0.1", 4321, "198.51.100.2")
    assert (made.max_frame, made._pool.connect_timeout) == (64 * 1024, 1.5)
    assert made.options is options and made.node_id == node.identity.node_id


def test_the_transport_expects_the_identities_of_the_known_hosts() -> None:
    node = FakeNode()
    transport = TcpTransportPlugin(TcpOptions()).butter_transport(node)  # type: ignore[arg-type]
    (observer,) = node.observers
    peer = PeerInfo("ab" * 32, PeerAddress("127.0.0.1", 9))
    observer.butter_peer_discovered(peer=peer)  # type: ignore[attr-defined]
    assert transport.expected_node_id(peer.address) == peer.node_id
    observer.butter_peer_lost(peer=peer)  # type: ignore[attr-defined]
    assert transport.expected_node_id(peer.address) is None


def test_outbound_ipv4_is_an_ipv4_address() -> None:
    assert isinstance(ipaddress.ip_address(outbound_ipv4()), ipaddress.IPv4Address)
    assert outbound_ipv4(("::1", 9)) == "127.0.0.1"  # an error falls back to loopback


@pytest.mark.parametrize(
    ("bound", "advertise", "expected"),
    [("127.0.0.1", "", "127.0.0.1"), ("127.0.0.1", "203.0.113.9", "203.0.113.9"), ("::1", "", "::1")],
)
def test_advertised_address(bound: str, advertise: str, expected: str) -> None:
    assert advertised_address(bound, 7000, advertise) == butter.PeerAddress(expected, 7000)


@pytest.mark.parametrize("wildcard", ["0.0.0.0", "::", ""])
def test_wildcard_bind_advertises_the_outbound_address(wildcard: str) -> None:
    address = advertised_address(wildcard, 7000)
    assert address.host == outbound_ipv4() and address.port == 7000


async def test_two_nodes_talk_over_tcp() -> None:
    def settings() -> ButterSettings:
        return ButterSettings(host="127.0.0.1", port=0, transport={"driver": "tcp"}, discovery={"drivers": ["static"]})

    with anyio.fail_after(15):
        async with butter.open_node(settings()) as a, butter.open_node(settings()) as b:

            @a.route("reverse")
            async def reverse(request: butter.RouteRequest) -> bytes:
                return request.body[::-1]

            assert isinstance(a.transport, TcpTransport)
            assert a.address.host == "127.0.0.1" and a.address.port > 0
            assert await b.request(a.address, "reverse", b"olleh") == b"hello"
            assert decode_payload(await b.request(a.address, "ping"))["id"] == a.node_id
            with pytest.raises(butter.RemoteError) as info:
                await b.request(a.address, "no-such-route")
            assert info.value.code == "unknown-route"
