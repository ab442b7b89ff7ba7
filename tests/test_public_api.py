"""The public API, pinned: ``butter.__all__`` and each plugin package's exports, written out in full.

A change to what a package exports must change this file too, on purpose. The rule for butter-core (trio's):
modules whose dotted name has a part starting with ``_`` are private; every other module is public and
declares ``__all__``, and every name it lists exists. Which modules plugins may import is checked by
import-linter (``[tool.importlinter]`` in the root pyproject.toml).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

import butter
import butter.errors

BUTTER = [
    "RecordNotFound",
    "DocumentDeleted",
    "DocumentNotFound",
    "RevisionRefused",
    "RecordDeleted",
    "DecryptionFailed",
    "InvalidCapability",
    "RecordExpired",
    "RecordNameMismatch",
    "RecordRejected",
    "RecordSignatureInvalid",
    "BlockCorrupted",
    "BlockNotFound",
    "ButterConfigError",
    "ButterError",
    "ButterSettings",
    "FrameTooLarge",
    "HostQuality",
    "Identity",
    "IncompleteItem",
    "InvalidManifest",
    "ItemDeleted",
    "ItemNotFound",
    "ItemTooLarge",
    "Node",
    "PeerAddress",
    "PeerGone",
    "PeerIdentityMismatch",
    "PeerInfo",
    "PeerUnreachable",
    "ProtocolError",
    "RemoteError",
    "RequestTimeout",
    "RouteError",
    "RouteRequest",
    "SENDER_MISMATCH",
    "StoreError",
    "StoreFull",
    "TombstoneRejected",
    "TransportBusy",
    "TransportError",
    "hookimpl",
    "installed_drivers",
    "load_driver",
    "load_settings",
    "node_id_from_public_key",
    "open_node",
]

PLUGINS = {
    "butter_transport_tcp": [
        "Network", "NetworkRefused", "SecureChannel", "TcpOptions", "TcpStats", "TcpTransport", "TcpTransportPlugin"
    ],
    "butter_persist_pcg": ["GroupView", "PcgOptions", "PcgPersistence", "PcgPersistencePlugin"],
    "butter_retrieve_bfs": [
        "ROUTE_DIGEST",
        "ROUTE_DIGEST_PUSH",
        "ROUTE_QUERY",
        "Ask",
        "BfsOptions",
        "BfsRetrieval",
        "BfsRetrievalPlugin",
        "BloomFilter",
        "DigestAsk",
        "DigestBook",
        "DigestKept",
        "DigestReply",
        "HandlerStats",
        "Hit",
        "LocalDigest",
        "Miss",
        "Query",
        "QueryHandler",
        "QueryReply",
        "QueryStats",
        "RetrievalTotals",
        "Ring",
        "Search",
        "Seen",
        "decode_reply",
    ],
    "butter_discover_multicast": [
        "BEACON_VERSION",
        "Beacon",
        "BeaconLink",
        "BeaconStats",
        "Dropped",
        "Ignored",
        "MulticastDiscovery",
        "MulticastDiscoveryPlugin",
        "MulticastLink",
        "MulticastOptions",
        "PeerFound",
        "Ping",
        "State",
        "Tick",
        "decode_datagram",
        "encode_ping",
        "open_multicast_link",
    ],
    "butter_wider_ambassador": [
        "MAX_MESSAGE",
        "Accept",
        "AmbassadorClient",
        "AmbassadorDiscovery",
        "AmbassadorOptions",
        "AmbassadorPlugin",
        "AmbassadorService",
        "CircuitBudget",
        "ClientStats",
        "Dialed",
        "Hello",
        "IndexEntry",
        "Introduction",
        "LimitExceeded",
        "Message",
        "Open",
        "PeerIndex",
        "Ping",
        "PortMapping",
        "Punch",
        "PunchCall",
        "PunchGo",
        "PunchReady",
        "Refusal",
        "Refused",
        "RelayLedger",
        "RelayLimits",
        "RelayStats",
        "Reserve",
        "Reserved",
        "Welcome",
        "connect",
        "decode_message",
        "encode_message",
        "map_port",
        "simultaneous_open",
        "splice",
        "subnet_key",
    ],
    "butter_retrieve_flood": ["ROUTE_FLOOD", "FloodOptions", "FloodRetrieval", "FloodRetrievalPlugin"],
}


def _public_modules() -> list[str]:
    names = ["butter"]
    for info in pkgutil.walk_packages(butter.__path__, "butter."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


def _exports(module: ModuleType) -> list[str]:
    exported = list(module.__all__)
    assert len(exported) == len(set(exported)), f"{module.__name__}.__all__ lists a name twice"
    return sorted(exported)


def test_butter_exports_exactly_the_pinned_names() -> None:
    assert _exports(butter) == sorted(BUTTER)


@pytest.mark.parametrize("package", sorted(PLUGINS))
def test_each_plugin_package_exports_exactly_the_pinned_names(package: str) -> None:
    assert _exports(importlib.import_module(package)) == sorted(PLUGINS[package])


def test_the_private_module_rule_holds() -> None:
    public = _public_modules()
    assert "butter.slots" in public and "butter.capabilities" in public and "butter.testing.conformance" in public
    assert not {"butter._plugins", "butter._identity", "butter._static", "butter._demo"} & set(public)


@pytest.mark.parametrize("name", [*_public_modules(), *sorted(PLUGINS)])
def test_every_public_module_declares_all_and_every_name_in_it_exists(name: str) -> None:
    module = importlib.import_module(name)
    assert hasattr(module, "__all__"), f"public module {name} has no __all__"
    missing = [export for export in module.__all__ if not hasattr(module, export)]
    assert not missing, f"{name}.__all__ lists names it does not define: {missing}"


def test_butter_exports_every_error_its_api_raises() -> None:
    errors = {
        name
        for name, value in vars(butter.errors).items()
        if inspect.isclass(value) and issubclass(value, butter.errors.ButterError)
    }
    assert errors - set(butter.__all__) == set()
    for name in errors:
        assert getattr(butter, name) is getattr(butter.errors, name)
