"""What ``butter plugins`` and ``butter settings`` gather, kept apart from how :mod:`butter.cli` prints it so
that both halves can be tested on their own.

``butter plugins`` reads package metadata only; ``butter plugins --options DRIVER`` and ``butter settings``
import the drivers they describe, to read their pydantic ``Options`` models (so :mod:`butter._plugins`, which
loads drivers, is imported only by the functions that do).
"""

from __future__ import annotations

import difflib
import json
import types
import typing
from dataclasses import asdict, dataclass
from importlib.metadata import entry_points
from typing import Any

import annotated_types
from pydantic import BaseModel, ByteSize, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from ._catalogue import (
    DISTRIBUTIONS,
    OBSERVER_GROUP,
    SLOT_GROUPS,
    effective_discovery,
    installed_drivers,
    missing_driver_message,
)
from .errors import ButterConfigError
from .settings import ButterSettings, describe_validation_error

__all__ = [
    "DriverRow",
    "OptionRow",
    "SettingRow",
    "driver_options",
    "format_size",
    "installed_plugins",
    "resolve_driver",
    "settings_rows",
    "settings_toml",
]


# -- butter plugins ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DriverRow:
    """One installed (or configured but missing) driver. ``target`` is the entry point's ``module:attr``."""

    slot: str
    group: str
    name: str
    target: str
    distribution: str
    selected: bool
    installed: bool = True

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def selected_drivers(settings: ButterSettings) -> dict[str, list[str]]:
    """The driver names each slot's settings select (empty for a slot left off); discovery as the node runs
    it (``static`` added when ``peers`` is set)."""
    selected = {slot: [getattr(settings, slot).driver] for slot in SLOT_GROUPS if slot != "discovery"}
    selected["discovery"] = effective_discovery(settings)
    return {slot: [name for name in names if name] for slot, names in selected.items()}


def installed_plugins(settings: ButterSettings) -> list[DriverRow]:
    """Every driver installed for each slot, read from package metadata without importing any of them.

    A driver the settings select but that is not installed gets a row with ``installed=False``. Observers
    (group ``butter.plugins``) are all loaded by every node, so they are all marked selected.
    """
    chosen = selected_drivers(settings)
    rows: list[DriverRow] = []
    installed = entry_points()  # one scan of every distribution's metadata (a scan per group cost ~0.2 s)
    for slot, group in [*SLOT_GROUPS.items(), ("observers", OBSERVER_GROUP)]:
        found: dict[str, DriverRow] = {}
        for ep in installed.select(group=group):
            if ep.name in found:
                continue
            dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else "?"
            selected = slot == "observers" or ep.name in chosen.get(slot, [])
            found[ep.name] = DriverRow(slot, group, ep.name, ep.value, dist, selected)
        for name in chosen.get(slot, []):
            if name not in found:
                found[name] = DriverRow(slot, group, name, "-", "-", selected=True, installed=False)
        rows.extend(sorted(found.values(), key=lambda row: row.name))
    return rows


# -- butter plugins --options DRIVER ----------------------------------------------------------------------


@dataclass(frozen=True)
class OptionRow:
    """One option of a driver: its ``name``, its type with bounds (``"1 ≤ int ≤ 64"``), its ``default`` as
    text (``"unset"`` for ``None``, ``"required"`` without one), its description, the settings ``key`` that
    sets it and the environment variable for that key."""

    slot: str
    driver: str
    name: str
    type: str
    default: str
    description: str
    key: str
    env: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def resolve_driver(spec: str) -> list[tuple[str, str]]:
    """The installed drivers ``spec`` names, as ``(slot, name)``: ``NAME`` in whichever slots have it, or
    ``SLOT:NAME``. Raises :class:`ButterConfigError` with the missing-driver message (distribution to
    install, "did you mean") when none is installed."""
    slot, _, name = spec.rpartition(":")
    if slot and slot not in SLOT_GROUPS:
        raise ButterConfigError(f"no slot {slot!r}; the slots are {', '.join(SLOT_GROUPS)}")
    slots = [slot] if slot else list(SLOT_GROUPS)
    found = [(each, name) for each in slots if name in installed_drivers(SLOT_GROUPS[each])]
    if found:
        return found
    known = [group for (group, known) in DISTRIBUTIONS if known == name]
    if slot or known:
        raise ButterConfigError(missing_driver_message(SLOT_GROUPS[slot] if slot else known[0], name))

    def closeness(group: str) -> float:  # how near `name` is to the nearest driver of `group`
        names = installed_drivers(group) + [known for (g, known) in DISTRIBUTIONS if g == group]
        return max((difflib.SequenceMatcher(None, name, other).ratio() for other in names), default=0.0)

    nearest = max(SLOT_GROUPS.values(), key=closeness)
    if closeness(nearest) >= 0.6:
        raise ButterConfigError(missing_driver_message(nearest, name))
    raise ButterConfigError(f"no driver {name!r} is installed for any slot; `butter plugins` lists the installed ones")


def driver_options(slot: str, name: str) -> list[OptionRow]:
    """Every option of driver ``name`` of ``slot``, from its pydantic ``Options`` model (imported); empty
    for a driver that takes none. Raises :class:`ButterConfigError` when it is not installed."""
    from ._plugins import driver_class, options_model  # loading drivers: only here and in settings_rows

    group = SLOT_GROUPS[slot]
    model = options_model(group, name, driver_class(group, name))
    if model is None:
        return []
    prefix = f"{slot}.options.{name}" if slot == "discovery" else f"{slot}.options"
    return [
        OptionRow(slot, name, field, type_text(info), default_text(info), info.description or "",
                  f"{prefix}.{field}", env_name(f"{prefix}.{field}"))
        for field, info in model.model_fields.items()
    ]


def type_text(info: FieldInfo) -> str:
    """A field's type with its numeric bounds: ``1 ≤ int ≤ 64``, ``float > 0``, ``float > 0, or unset``."""
    args = typing.get_args(info.annotation)
    union = typing.get_origin(info.annotation) in (typing.Union, types.UnionType)
    optional = union and type(None) in args
    kinds = [arg for arg in args if arg is not type(None)] if union else [info.annotation]
    text = " | ".join(_type_name(kind) for kind in kinds)
    lower = upper = ""
    for bound in info.metadata:
        if isinstance(bound, annotated_types.Ge | annotated_types.Gt):
            lower = f"{bound.ge} ≤ " if isinstance(bound, annotated_types.Ge) else f"{bound.gt} < "
        elif isinstance(bound, annotated_types.Le | annotated_types.Lt):
            upper = f" ≤ {bound.le}" if isinstance(bound, annotated_types.Le) else f" < {bound.lt}"
    if lower and not upper:  # one bound reads better after the type: "float > 0"
        number, sign = lower.split()
        text = f"{text} {'≥' if sign == '≤' else '>'} {number}"
    else:
        text = f"{lower}{text}{upper}"
    return f"{text}, or unset" if optional else text


def _type_name(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(json.dumps(arg) for arg in args)
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(_type_name(arg) for arg in args)}]"
    return getattr(annotation, "__name__", str(annotation))


def default_text(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    default = info.get_default(call_default_factory=True)
    if isinstance(default, ByteSize):
        return format_size(default)
    return display_value(TypeAdapter(Any).dump_python(default, mode="json"))


# -- butter settings --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SettingRow:
    """One leaf setting: dotted ``key``, the effective value as text, the environment variable that sets it,
    and what it means."""

    key: str
    value: str
    env: str
    description: str


_SLOT_HELP = {
    "driver": "entry-point name of the driver (see `butter plugins`); empty: slot unused",
    "drivers": "entry-point names of the discovery drivers run together",
}


def settings_rows(settings: ButterSettings) -> list[SettingRow]:
    """Flatten settings into one row per leaf key, as the node uses them: each slot's driver with every one
    of its options (defaults filled in, read from the driver's ``Options`` model), the discovery drivers
    that actually run (``static`` added when ``peers`` is set), sizes human-readable (``512MiB``).

    Raises :class:`ButterConfigError` when a driver's options are invalid. A driver that is not installed
    gets one ``options`` row saying so.
    """
    rows: list[SettingRow] = []
    for name, info in type(settings).model_fields.items():
        value = getattr(settings, name)
        if name == "discovery":
            drivers = effective_discovery(settings)
            note = "; static added because peers are set" if drivers != list(dict.fromkeys(value.drivers)) else ""
            rows.append(SettingRow("discovery.drivers", display_value(drivers), env_name("discovery.drivers"),
                                   _SLOT_HELP["drivers"] + note))
            for driver in drivers:
                rows += _option_rows("discovery", driver, value.options.get(driver, {}))
        elif name in SLOT_GROUPS:
            rows.append(SettingRow(f"{name}.driver", value.driver, env_name(f"{name}.driver"), _SLOT_HELP["driver"]))
            if value.driver:
                rows += _option_rows(name, value.driver, value.options)
        elif isinstance(value, BaseModel):
            rows += _model_rows(name, value)
        else:
            rows.append(SettingRow(name, display_value(_with_sizes(settings)[name]), env_name(name),
                                   info.description or ""))
    return rows


def _model_rows(prefix: str, model: BaseModel) -> list[SettingRow]:
    data = _with_sizes(model)
    return [SettingRow(f"{prefix}.{name}", display_value(data[name]), env_name(f"{prefix}.{name}"),
                       info.description or "")
            for name, info in type(model).model_fields.items()]


def _option_rows(slot: str, driver: str, options: dict[str, Any]) -> list[SettingRow]:
    from ._plugins import driver_class, options_model

    group = SLOT_GROUPS[slot]
    prefix = f"{slot}.options.{driver}" if slot == "discovery" else f"{slot}.options"
    try:
        model = options_model(group, driver, driver_class(group, driver))
    except ButterConfigError as exc:
        return [SettingRow(prefix, display_value(options), env_name(prefix), str(exc))]
    if model is None:
        return []
    try:
        effective = model.model_validate(options)
    except ValidationError as exc:
        raise ButterConfigError(f"{group}:{driver} options: {describe_validation_error(exc)}") from None
    return _model_rows(prefix, effective)


def env_name(key: str) -> str:
    """The environment variable that sets settings key ``key``: ``transport.driver`` ->
    ``BUTTER_TRANSPORT__DRIVER``."""
    return "BUTTER_" + key.replace(".", "__").upper()


def format_size(size: int) -> str:
    """Bytes in the largest binary unit that divides them exactly (``536870912`` -> ``"512MiB"``), else the
    plain number; either form is read back by a size setting."""
    for unit, factor in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def display_value(value: Any) -> str:
    """A setting's value (as JSON data, sizes already written as text) as a person reads it: ``unset`` for
    ``None``, strings as they are, anything else as JSON."""
    if value is None:
        return "unset"
    return value if isinstance(value, str) else json.dumps(value)


def settings_toml(settings: ButterSettings) -> str:
    """The effective settings as a ``butter.toml`` document (unset values commented out, sizes in binary
    units)."""

    def assignment(key: str, value: Any) -> str:
        return f"# {key} = ...  (unset)" if value is None else f"{key} = {_toml_value(value)}"

    data = _with_sizes(settings)
    sections = [name for name in data if isinstance(getattr(settings, name), BaseModel)]
    lines = ["[butter]", *(assignment(key, value) for key, value in data.items() if key not in sections)]
    for name in sections:
        lines += ["", f"[butter.{name}]", *(assignment(key, value) for key, value in data[name].items())]
    return "\n".join(lines) + "\n"


def _with_sizes(model: BaseModel) -> dict[str, Any]:
    """``model.model_dump(mode="json")`` with every size written in binary units (``"512MiB"``)."""
    data = model.model_dump(mode="json")
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, ByteSize):
            data[name] = format_size(value)
        elif isinstance(value, BaseModel):
            data[name] = _with_sizes(value)
    return data


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        items = (f"{json.dumps(str(key))} = {_toml_value(item)}" for key, item in value.items() if item is not None)
        return "{" + ", ".join(items) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")

