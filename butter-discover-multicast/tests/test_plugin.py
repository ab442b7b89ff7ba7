"""The entry point, its options, and that multicast is the default discovery."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from butter import installed_drivers, load_driver
from butter.errors import ButterConfigError
from butter.settings import ButterSettings
from butter_discover_multicast import MulticastDiscoveryPlugin, MulticastOptions


def test_the_entry_point_is_installed_and_loads_with_validated_options() -> None:
    assert "multicast" in installed_drivers("butter.discovery")
    plugin = load_driver("butter.discovery", "multicast", {"interval": 0.5, "group": "239.255.1.2"})
    assert isinstance(plugin, MulticastDiscoveryPlugin)
    assert plugin.options.interval == 0.5 and plugin.options.group == IPv4Address("239.255.1.2")


def test_defaults() -> None:
    options = MulticastOptions()
    assert options.group == IPv4Address("239.255.42.99") and options.group.is_multicast
    assert options.group in __import__("ipaddress").ip_network("239.255.0.0/16")
    assert (options.port, options.ttl, options.interval) == (9999, 1, 1.0)
    assert options.interface == IPv4Address("0.0.0.0")
    assert all(field.description for field in MulticastOptions.model_fields.values())


def test_multicast_is_the_default_discovery() -> None:
    assert ButterSettings().discovery.drivers == ["multicast"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"group": "10.0.0.1"}, "not a multicast address"),
        ({"port": 0}, "port"),
        ({"ttl": 256}, "ttl"),
        ({"jitter": 1}, "jitter"),
        ({"interval": 0}, "interval"),
        ({"max_datagram": 70000}, "max_datagram"),
        ({"intervall": 1}, "intervall"),
    ],
)
def test_bad_options_are_refused_naming_the_key(options: dict[str, object], message: str) -> None:
    with pytest.raises(ButterConfigError, match=message):
        load_driver("butter.discovery", "multicast", options)


def test_public_api_is_pinned() -> None:
    import butter_discover_multicast as package

    assert sorted(package.__all__) == [
        "BEACON_VERSION", "Beacon", "BeaconLink", "BeaconStats", "Dropped", "Ignored", "MulticastDiscovery",
        "MulticastDiscoveryPlugin", "MulticastLink", "MulticastOptions", "PeerFound", "Ping", "State", "Tick",
        "decode_datagram", "encode_ping", "open_multicast_link",
    ]
    assert all(hasattr(package, name) for name in package.__all__)
