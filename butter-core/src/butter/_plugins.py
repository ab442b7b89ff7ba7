"""Driver selection: stevedore selects and loads, pluggy dispatches.

For each slot only the configured entry point is loaded (never every installed alternative). Its class is
instantiated with its own validated ``Options`` and registered with a pluggy ``PluginManager`` under the
name ``"<group>:<driver>"``. Observers (metrics, tracing) are every entry point of the ``butter.plugins``
group, loaded too, each with its options from ``settings.plugins[<entry-point name>]`` (validated by its
``Options`` model like a driver's; an observer is off, or on, as its options say).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

import pluggy
from pydantic import BaseModel, ValidationError
from stevedore import DriverManager
from stevedore.exception import NoMatches

from . import hookspecs
from .errors import ButterConfigError
from .settings import ButterSettings, describe_validation_error

__all__ = ["SLOT_GROUPS", "PluginStack", "installed_drivers", "load_driver"]

log = logging.getLogger(__name__)

SLOT_GROUPS = {
    "transport": "butter.transport",
    "discovery": "butter.discovery",
    "host_manager": "butter.host_manager",
    "persistence": "butter.persistence",
    "retrieval": "butter.retrieval",
}
OBSERVER_GROUP = "butter.plugins"


def installed_drivers(group: str) -> list[str]:
    """Names of the entry points installed in ``group``, sorted, without importing any of them."""
    return sorted({ep.name for ep in entry_points(group=group)})


def load_driver(group: str, name: str, options: dict[str, Any]) -> object:
    """Load entry point ``name`` of ``group`` and instantiate it with validated ``options``.

    A driver class with an ``Options`` (a pydantic model) attribute receives ``Options(**options)``;
    one without must get no options. Raises :class:`ButterConfigError` naming the group, the name and the
    installed drivers when it is missing or fails to import, and naming the option key when an option is
    invalid.
    """

    def failed(_manager: Any, entry_point: Any, exc: BaseException) -> None:
        raise ButterConfigError(
            f"driver {name!r} of {group!r} ({entry_point.value}) failed to load: {type(exc).__name__}: {exc}"
        )

    try:
        manager = DriverManager(
            namespace=group, name=name, invoke_on_load=False, on_load_failure_callback=failed
        )
    except NoMatches:
        available = ", ".join(installed_drivers(group)) or "none"
        raise ButterConfigError(
            f"no driver {name!r} in entry-point group {group!r}; installed: {available}"
        ) from None
    driver_cls = manager.driver
    options_model = getattr(driver_cls, "Options", None)
    if options_model is None:
        if options:
            raise ButterConfigError(f"{group}:{name} takes no options, got {sorted(options)}")
        return driver_cls()
    if not (isinstance(options_model, type) and issubclass(options_model, BaseModel)):
        raise ButterConfigError(f"{group}:{name}.Options must be a pydantic model")
    try:
        validated = options_model.model_validate(options)
    except ValidationError as exc:
        raise ButterConfigError(f"{group}:{name} options: {describe_validation_error(exc)}") from None
    return driver_cls(validated)


@dataclass(frozen=True)
class LoadedDriver:
    slot: str
    name: str
    plugin: object


class PluginStack:
    """The pluggy manager holding one driver per slot (several for discovery) and the observers.

    ``extra`` plugin objects are registered as they are (hook implementations given directly, for tests
    and embedding); they take part in event hooks and may also answer factory hooks.
    """

    def __init__(self, settings: ButterSettings, extra: tuple[object, ...] = ()) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.drivers: list[LoadedDriver] = []
        for slot in ("transport", "host_manager", "persistence", "retrieval"):
            slot_settings = getattr(settings, slot)
            if slot_settings.driver:
                self._add(slot, slot_settings.driver, slot_settings.options)
        discovery = list(dict.fromkeys(settings.discovery.drivers))
        if settings.peers and "static" not in discovery:
            # Configured peers are contacted by the static driver: a `peers` setting that silently did
            # nothing because another discovery driver is the default would be a trap.
            log.info("peers are configured: enabling static discovery beside %s", discovery or "nothing")
            discovery.append("static")
        for name in discovery:
            self._add("discovery", name, settings.discovery.options.get(name, {}))
        unknown = set(settings.discovery.options) - set(settings.discovery.drivers)
        if unknown:
            raise ButterConfigError(f"discovery.options names drivers that are not enabled: {sorted(unknown)}")
        observers = installed_drivers(OBSERVER_GROUP)
        unknown = set(settings.plugins) - set(observers)
        if unknown:
            raise ButterConfigError(
                f"plugins names observers that are not installed: {sorted(unknown)}; installed: {observers}"
            )
        for name in observers:
            observer = load_driver(OBSERVER_GROUP, name, settings.plugins.get(name, {}))
            self.pm.register(observer, name=f"{OBSERVER_GROUP}:{name}")
        for index, plugin in enumerate(extra):
            self.pm.register(plugin, name=f"extra:{index}:{type(plugin).__name__}")

    def _add(self, slot: str, name: str, options: dict[str, Any]) -> None:
        group = SLOT_GROUPS[slot]
        plugin = load_driver(group, name, options)
        self.pm.register(plugin, name=f"{group}:{name}")
        self.drivers.append(LoadedDriver(slot, name, plugin))
        log.debug("loaded %s driver %r (%s)", slot, name, type(plugin).__qualname__)

    @property
    def hook(self) -> Any:
        return self.pm.hook

    def selected(self, slot: str) -> list[str]:
        return [d.name for d in self.drivers if d.slot == slot]
