"""Test support for Butter and for plugin authors: the memory transport, conformance kits, and pytest
fixtures (registered as the ``butter`` pytest plugin).

Conformance kits, one per slot (each module's docstring shows the few lines a plugin's tests need):
:mod:`.conformance` (transports, ``TRANSPORT_CHECKS``), :mod:`.conformance_discovery`
(``DISCOVERY_CHECKS``, :class:`DiscoveryFactory`), :mod:`.conformance_hosts` (``HOST_MANAGER_CHECKS``,
:class:`HostManagerFactory`), :mod:`.conformance_persistence` (``PERSISTENCE_CHECKS``,
:class:`PersistenceFactory`) and :mod:`.conformance_retrieval` (``RETRIEVAL_CHECKS``,
:class:`RetrievalFactory`).
"""

from .conformance_discovery import DISCOVERY_CHECKS as DISCOVERY_CHECKS
from .conformance_discovery import DiscoveryFactory as DiscoveryFactory
from .conformance_hosts import HOST_MANAGER_CHECKS as HOST_MANAGER_CHECKS
from .conformance_hosts import HostManagerFactory as HostManagerFactory
from .conformance_persistence import PERSISTENCE_CHECKS as PERSISTENCE_CHECKS
from .conformance_persistence import PersistenceFactory as PersistenceFactory
from .conformance_retrieval import RETRIEVAL_CHECKS as RETRIEVAL_CHECKS
from .conformance_retrieval import RetrievalFactory as RetrievalFactory
from .memory import MemoryNetwork as MemoryNetwork
from .memory import MemoryTransport as MemoryTransport

__all__ = [
    "DISCOVERY_CHECKS",
    "HOST_MANAGER_CHECKS",
    "PERSISTENCE_CHECKS",
    "RETRIEVAL_CHECKS",
    "DiscoveryFactory",
    "HostManagerFactory",
    "MemoryNetwork",
    "MemoryTransport",
    "PersistenceFactory",
    "RetrievalFactory",
]
