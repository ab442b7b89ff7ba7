"""Butter: build decentralised applications on an unstructured peer-to-peer overlay.

The public API. Start a node with :func:`open_node`, register routes and client behaviours on it, and talk
to peers with :meth:`Node.request`. Strategies (transport, discovery, host management, persistence,
retrieval) are plugins chosen by settings; see :mod:`butter.hookspecs` to write one.

What is public (trio's rule): this package's names, and the modules whose names do not start with an
underscore. An application needs only ``butter``: the node, its settings, peers, identity, and every error
the API raises. A plugin author also imports the plugin modules: :mod:`butter.slots` (the slot protocols,
:class:`~butter.slots.NodeServices`, :data:`~butter.slots.EventName`), :mod:`butter.capabilities`,
:mod:`butter.hookspecs`, :mod:`butter.codec`, :mod:`butter.wire`, :mod:`butter.channel`, :mod:`butter.blocks`,
:mod:`butter.store`, :mod:`butter.hosts` and the kits of :mod:`butter.testing`. Modules named ``_*`` are
implementation: they change without notice, and plugins may not import them (import-linter checks it in CI).

The names are imported on first use (PEP 562), so that ``import butter`` and the ``butter`` command start
quickly; ``from butter import open_node`` imports the node and what it needs at that moment.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._catalogue import installed_drivers as installed_drivers
    from ._identity import Identity as Identity
    from ._identity import node_id_from_public_key as node_id_from_public_key
    from ._node import Node as Node
    from ._node import open_node as open_node
    from ._plugins import load_driver as load_driver
    from ._routes import SENDER_MISMATCH as SENDER_MISMATCH
    from ._routes import RouteRequest as RouteRequest
    from .errors import BlockCorrupted as BlockCorrupted
    from .errors import BlockNotFound as BlockNotFound
    from .errors import ButterConfigError as ButterConfigError
    from .errors import ButterError as ButterError
    from .errors import DecryptionFailed as DecryptionFailed
    from .errors import DocumentDeleted as DocumentDeleted
    from .errors import DocumentNotFound as DocumentNotFound
    from .errors import FrameTooLarge as FrameTooLarge
    from .errors import IncompleteItem as IncompleteItem
    from .errors import InvalidCapability as InvalidCapability
    from .errors import InvalidManifest as InvalidManifest
    from .errors import ItemDeleted as ItemDeleted
    from .errors import ItemNotFound as ItemNotFound
    from .errors import ItemTooLarge as ItemTooLarge
    from .errors import PeerGone as PeerGone
    from .errors import PeerIdentityMismatch as PeerIdentityMismatch
    from .errors import PeerUnreachable as PeerUnreachable
    from .errors import ProtocolError as ProtocolError
    from .errors import RecordDeleted as RecordDeleted
    from .errors import RecordExpired as RecordExpired
    from .errors import RecordNameMismatch as RecordNameMismatch
    from .errors import RecordNotFound as RecordNotFound
    from .errors import RecordRejected as RecordRejected
    from .errors import RecordSignatureInvalid as RecordSignatureInvalid
    from .errors import RemoteError as RemoteError
    from .errors import RequestTimeout as RequestTimeout
    from .errors import RevisionRefused as RevisionRefused
    from .errors import RouteError as RouteError
    from .errors import StoreError as StoreError
    from .errors import StoreFull as StoreFull
    from .errors import TombstoneRejected as TombstoneRejected
    from .errors import TransportBusy as TransportBusy
    from .errors import TransportError as TransportError
    from .hookspecs import hookimpl as hookimpl
    from .peers import HostQuality as HostQuality
    from .peers import PeerAddress as PeerAddress
    from .peers import PeerInfo as PeerInfo
    from .settings import ButterSettings as ButterSettings
    from .settings import load_settings as load_settings

__version__: str  # butter-core's installed version, read from its package metadata on first use (the
# repository's VERSION file is the one source: every distribution's build reads it)

_EXPORTS = {  # name -> the module that defines it, imported on first use (PEP 562)
    "Identity": "._identity",
    "node_id_from_public_key": "._identity",
    "installed_drivers": "._catalogue",
    "load_driver": "._plugins",
    "BlockCorrupted": ".errors",
    "BlockNotFound": ".errors",
    "ButterConfigError": ".errors",
    "ButterError": ".errors",
    "RecordDeleted": ".errors",
    "RecordNotFound": ".errors",
    "RecordSignatureInvalid": ".errors",
    "RecordRejected": ".errors",
    "RecordNameMismatch": ".errors",
    "RecordExpired": ".errors",
    "InvalidCapability": ".errors",
    "DecryptionFailed": ".errors",
    "DocumentDeleted": ".errors",
    "DocumentNotFound": ".errors",
    "RevisionRefused": ".errors",
    "FrameTooLarge": ".errors",
    "IncompleteItem": ".errors",
    "InvalidManifest": ".errors",
    "ItemDeleted": ".errors",
    "ItemNotFound": ".errors",
    "ItemTooLarge": ".errors",
    "PeerGone": ".errors",
    "PeerIdentityMismatch": ".errors",
    "PeerUnreachable": ".errors",
    "ProtocolError": ".errors",
    "RemoteError": ".errors",
    "RequestTimeout": ".errors",
    "RouteError": ".errors",
    "StoreError": ".errors",
    "StoreFull": ".errors",
    "TombstoneRejected": ".errors",
    "TransportBusy": ".errors",
    "TransportError": ".errors",
    "hookimpl": ".hookspecs",
    "Node": "._node",
    "open_node": "._node",
    "RouteRequest": "._routes",
    "SENDER_MISMATCH": "._routes",
    "HostQuality": ".peers",
    "PeerAddress": ".peers",
    "PeerInfo": ".peers",
    "ButterSettings": ".settings",
    "load_settings": ".settings",
}

__all__ = [
    "SENDER_MISMATCH",
    "BlockCorrupted",
    "BlockNotFound",
    "ButterConfigError",
    "ButterError",
    "ButterSettings",
    "DecryptionFailed",
    "DocumentDeleted",
    "DocumentNotFound",
    "FrameTooLarge",
    "HostQuality",
    "Identity",
    "IncompleteItem",
    "InvalidCapability",
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
    "RecordDeleted",
    "RecordExpired",
    "RecordNameMismatch",
    "RecordNotFound",
    "RecordRejected",
    "RecordSignatureInvalid",
    "RemoteError",
    "RequestTimeout",
    "RevisionRefused",
    "RouteError",
    "RouteRequest",
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


if not TYPE_CHECKING:  # for type checkers every name above is imported; an unknown name stays an error

    def __getattr__(name: str) -> Any:
        if name == "__version__":
            from importlib.metadata import version

            globals()[name] = value = version("butter-core")
            return value
        module = _EXPORTS.get(name)
        if module is None:
            raise AttributeError(f"module 'butter' has no attribute {name!r}")
        value = getattr(importlib.import_module(module, __name__), name)
        globals()[name] = value  # later lookups are plain attribute reads
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})
