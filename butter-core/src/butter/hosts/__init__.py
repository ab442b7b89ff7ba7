"""Known-host management: the default ``diversity`` driver and its sans-IO optimiser."""

from ._diversity import CLASS_NAMES as CLASS_NAMES
from ._diversity import Decision as Decision
from ._diversity import classify as classify
from ._diversity import decide as decide
from ._manager import DiversityHostManager as DiversityHostManager
from ._manager import DiversityHostManagerPlugin as DiversityHostManagerPlugin
from ._manager import DiversityOptions as DiversityOptions

__all__ = [
    "CLASS_NAMES",
    "Decision",
    "DiversityHostManager",
    "DiversityHostManagerPlugin",
    "DiversityOptions",
    "classify",
    "decide",
]
