"""Butter: build decentralised applications on an unstructured peer-to-peer overlay.

The public API. Start a node with :func:`open_node`, register routes and client behaviours on it, and talk
to peers with :meth:`Node.request`. Strategies (transport, discovery, host management, persistence,
retrieval) are plugins chosen by settings; see :mod:`butter.hookspecs` to write one.
"""

from ._routes import SENDER_MISMATCH as SENDER_MISMATCH
from ._routes import RouteRequest as RouteRequest
from .errors import BlockCorrupted as BlockCorrupted
from .errors import ButterConfigError as ButterConfigError
from .errors import ButterError as ButterError
from .errors import FrameTooLarge as FrameTooLarge
from .errors import ItemNotFound as ItemNotFound
from .errors import PeerUnreachable as PeerUnreachable
from .errors import ProtocolError as ProtocolError
from .errors import RemoteError as RemoteError
from .errors import RequestTimeout as RequestTimeout
from .errors import RouteError as RouteError
from .errors import StoreFull as StoreFull
from .errors import TransportError as TransportError
from .hookspecs import hookimpl as hookimpl
from .identity import Identity as Identity
from .node import Node as Node
from .node import open_node as open_node
from .peers import HostQuality as HostQuality
from .peers import PeerAddress as PeerAddress
from .peers import PeerInfo as PeerInfo
from .settings import ButterSettings as ButterSettings
from .settings import load_settings as load_settings

__version__ = "0.1.0"

__all__ = [
    "SENDER_MISMATCH",
    "BlockCorrupted",
    "ButterConfigError",
    "ButterError",
    "ButterSettings",
    "FrameTooLarge",
    "HostQuality",
    "Identity",
    "ItemNotFound",
    "Node",
    "PeerAddress",
    "PeerInfo",
    "PeerUnreachable",
    "ProtocolError",
    "RemoteError",
    "RequestTimeout",
    "RouteError",
    "RouteRequest",
    "StoreFull",
    "TransportError",
    "hookimpl",
    "load_settings",
    "open_node",
]
