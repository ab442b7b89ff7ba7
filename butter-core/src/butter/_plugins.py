"""Driver selection: stevedore selects and loads, pluggy dispatches.

For each slot only the configured entry point is loaded (never every installed alternative). Its class is
instantiated with its own validated ``Options`` and registered with a pluggy ``PluginManager`` under the
name ``"<group>:<driver>"``. Observers (metrics, tracing) are every entry point of the ``butter.plugins``
group, loaded too, each with its options from ``settings.plugins[<entry-point name>]`` (validated by its
``Options`` model like a driver's; an observer is off, or on, as its options say).
"""

from __future__ import annotations

import functools
import logging
import sys
from dataclasses import dataclass
from typing import Any

import pluggy
from pydantic import BaseModel, ValidationError
from stevedore import DriverManager

from . import hookspecs
from ._catalogue import (
    OBSERVER_GROUP,
    SLOT_GROUPS,
    effective_discovery,
    installed_drivers,
    missing_driver_message,
    readable_list,
)
from .errors import ButterConfigError
from .settings import ButterSettings, describe_validation_error

__all__ = ["PluginStack", "driver_class", "load_driver", "options_model"]

log = logging.getLogger(__name__)


def driver_class(group: str, name: str) -> type:
    """The class entry point ``name`` of ``group`` names, imported (not instantiated); looked up once per
    ``sys.path`` (every node start asks for each of its drivers).

    Raises :class:`ButterConfigError` when it is not installed (one line: the distribution to install for
    Butter's own drivers, a "did you mean" for a near miss, the installed drivers) or fails to import.
    """
    return _driver_class(group, name, tuple(sys.path))


@functools.lru_cache(maxsize=64)
def _driver_class(group: str, name: str, path: tuple[str, ...]) -> type:
    if name not in installed_drivers(group):  # checked here, so stevedore never logs its own warning
        raise ButterConfigError(missing_driver_message(group, name))

    def failed(_manager: Any, entry_point: Any, exc: BaseException) -> None:
        raise ButterConfigError(
            f"driver {name!r} of {group!r} ({entry_point.value}) failed to load: {type(exc).__name__}: {exc}"
        )

    manager = DriverManager(namespace=group, name=name, invoke_on_load=False, on_load_failure_callback=failed)
    driver = manager.driver
    if not isinstance(driver, type):
        raise ButterConfigError(f"{group}:{name} ({driver!r}) is not a class")
    return driver


def options_model(group: str, name: str, driver: type) -> type[BaseModel] | None:
    """``driver.Options`` (a pydantic model), or ``None`` for a driver that takes no options; raises
    :class:`ButterConfigError` when ``Options`` is something else."""
    model = getattr(driver, "Options", None)
    if model is None:
        return None
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise ButterConfigError(f"{group}:{name}.Options must be a pydantic model")
    return model


def load_driver(group: str, name: str, options: dict[str, Any]) -> object:
    """Load entry point ``name`` of ``group`` and instantiate it with validated ``options``.

    A driver class with an ``Options`` (a pydantic model) attribute receives ``Options(**options)``;
    one without must get no options. Raises :class:`ButterConfigError` when the driver is missing (see
    :func:`driver_class`) or fails to import, and naming the option key when an option is invalid.
    """
    driver = driver_class(group, name)
    model = options_model(group, name, driver)
    if model is None:
        if options:
            raise ButterConfigError(f"{group}:{name} takes no options, got {sorted(options)}")
        return driver()
    try:
        validated = model.model_validate(options)
    except ValidationError as exc:
        raise ButterConfigError(f"{group}:{name} options: {describe_validation_error(exc)}") from None
    return driver(validated)


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
        # Configured peers are contacted by the static driver: a `peers` setting that silently did nothing
        # because another discovery driver is the default would be a trap.
        if settings.peers and "static" not in settings.discovery.drivers:
            log.info("peers are configured: static discovery runs beside %s",
                     readable_list(settings.discovery.drivers, "no other driver"))
        discovery = effective_discovery(settings)
        for name in discovery:
            self._add("discovery", name, settings.discovery.options.get(name, {}))
        unknown = set(settings.discovery.options) - set(discovery)
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

    def describe(self) -> str:
        """The drivers per slot, to read: ``transport tcp, discovery multicast and static, host manager
        diversity, persistence pcg, retrieval none``."""
        return ", ".join(f"{slot.replace('_', ' ')} {readable_list(self.selected(slot))}" for slot in SLOT_GROUPS)
