"""LAN discovery for Butter over UDP multicast: entry point ``butter.discovery:multicast``.

A node that knows nobody multicasts a small ``ping`` carrying its node id and transport address; every other
node on the LAN answers over the transport with its own record and a sample of its known hosts. The protocol
is the sans-IO :class:`Beacon`; :class:`MulticastDiscovery` drives it with a UDP socket and the node.
"""

from ._messages import BEACON_VERSION as BEACON_VERSION
from ._messages import Dropped as Dropped
from ._messages import Ping as Ping
from ._messages import decode_datagram as decode_datagram
from ._messages import encode_ping as encode_ping
from ._plugin import MulticastDiscoveryPlugin as MulticastDiscoveryPlugin
from ._plugin import MulticastOptions as MulticastOptions
from ._protocol import Beacon as Beacon
from ._protocol import BeaconStats as BeaconStats
from ._protocol import Ignored as Ignored
from ._protocol import PeerFound as PeerFound
from ._protocol import State as State
from ._protocol import Tick as Tick
from ._service import MulticastDiscovery as MulticastDiscovery
from ._socket import BeaconLink as BeaconLink
from ._socket import MulticastLink as MulticastLink
from ._socket import open_multicast_link as open_multicast_link

__all__ = [
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
]
