"""Test support for Butter and for plugin authors: the memory transport, conformance kits, and pytest
fixtures (registered as the ``butter`` pytest plugin)."""

from .memory import MemoryNetwork as MemoryNetwork
from .memory import MemoryTransport as MemoryTransport

__all__ = ["MemoryNetwork", "MemoryTransport"]
