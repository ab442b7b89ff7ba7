"""Wider discovery for Butter across subnetworks and NAT: entry point ``butter.discovery:ambassador``.

An **ambassador** is an ordinary, publicly reachable node run with ``serve = true``: it flags itself in its
host-quality record, tells nodes the address it sees them at and whether it can dial them back, keeps a
bounded, expiring index of reachable peers per subnetwork and introduces peers of other subnetworks to each
other. For nodes that are not reachable it relays (byte-level circuits with strict limits) and coordinates
TCP hole punches. Every other node runs the **client**: it finds ambassadors among its known hosts (or in
its configured list), publishes itself and admits the introductions through ordinary host management.

Sans-IO parts: :mod:`._messages` (service protocol), :mod:`._index` (the index), :mod:`._limits` (relay
accounting); thin anyio drivers: :class:`AmbassadorService`, :class:`AmbassadorClient`.
"""

from ._client import AmbassadorClient as AmbassadorClient
from ._client import ClientStats as ClientStats
from ._index import IndexEntry as IndexEntry
from ._index import PeerIndex as PeerIndex
from ._index import subnet_key as subnet_key
from ._io import connect as connect
from ._io import splice as splice
from ._limits import CircuitBudget as CircuitBudget
from ._limits import LimitExceeded as LimitExceeded
from ._limits import Refusal as Refusal
from ._limits import RelayLedger as RelayLedger
from ._limits import RelayLimits as RelayLimits
from ._limits import RelayStats as RelayStats
from ._messages import MAX_MESSAGE as MAX_MESSAGE
from ._messages import Accept as Accept
from ._messages import Dialed as Dialed
from ._messages import Hello as Hello
from ._messages import Introduction as Introduction
from ._messages import Message as Message
from ._messages import Open as Open
from ._messages import Ping as Ping
from ._messages import Punch as Punch
from ._messages import PunchCall as PunchCall
from ._messages import PunchGo as PunchGo
from ._messages import PunchReady as PunchReady
from ._messages import Refused as Refused
from ._messages import Reserve as Reserve
from ._messages import Reserved as Reserved
from ._messages import Welcome as Welcome
from ._messages import decode_message as decode_message
from ._messages import encode_message as encode_message
from ._plugin import AmbassadorDiscovery as AmbassadorDiscovery
from ._plugin import AmbassadorOptions as AmbassadorOptions
from ._plugin import AmbassadorPlugin as AmbassadorPlugin
from ._punch import simultaneous_open as simultaneous_open
from ._server import AmbassadorService as AmbassadorService
from ._upnp import PortMapping as PortMapping
from ._upnp import map_port as map_port

__all__ = [
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
]
