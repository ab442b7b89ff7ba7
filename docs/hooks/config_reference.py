"""mkdocs hook: the configuration page's tables, generated at build time from the models themselves.

``docs/configuration.md`` holds two markers, each replaced by tables of name, type, default and description:

* ``<!-- butter-config: settings -->``: every field of :class:`butter.settings.ButterSettings`, nested models
  flattened to dotted keys, with the ``BUTTER_*`` environment variable that sets it;
* ``<!-- butter-config: drivers -->``: for each slot, every driver installed as an entry point of its group
  (the workspace installs them all) and the fields of its ``Options`` pydantic model.

Nothing is copied by hand: a new option, default or description shows on the next build. A driver whose entry
point fails to load fails the build. Registered under ``hooks:`` in mkdocs.yml.
"""

from __future__ import annotations

import json
import types
from enum import Enum
from importlib.metadata import EntryPoint, entry_points
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ByteSize
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from butter._plugins import SLOT_GROUPS  # the groups the node loads drivers from (docs tooling, not a plugin)
from butter.settings import ButterSettings

PAGE = "configuration.md"
SETTINGS_MARKER = "<!-- butter-config: settings -->"
DRIVERS_MARKER = "<!-- butter-config: drivers -->"


# Fields of the slot models that carry no description of their own: said once here, from the structure.
SLOT_FIELDS = {
    "driver": "the {slot} driver: the name of an entry point of group `{group}` ([installed drivers](#slot-{slot}))",
    "drivers": "the discovery drivers run together, names of entry points of group `{group}` "
    "([installed drivers](#slot-{slot})); `peers` adds `static`",
    "options": "the driver's options, validated by its `Options` model ([tables below](#slot-{slot}))",
}

CONSTRAINTS = (
    ("ge", "≥"),
    ("gt", ">"),
    ("le", "≤"),
    ("lt", "<"),
    ("min_length", "at least {} items"),
    ("max_length", "at most {} items"),
    ("pattern", "matches `{}`"),
)

UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    for marker in (SETTINGS_MARKER, DRIVERS_MARKER):
        if marker not in markdown:
            raise ValueError(f"docs/{PAGE} lost its marker {marker!r}")
    markdown = markdown.replace(SETTINGS_MARKER, settings_tables())
    return markdown.replace(DRIVERS_MARKER, driver_tables())


# -- settings ------------------------------------------------------------------------------------------------


def settings_tables() -> str:
    rows = list(_settings_rows(ButterSettings, prefix="", slot=None))
    header = "| key | type | default | description |\n|---|---|---|---|\n"
    return header + "\n".join(rows) + "\n"


def _settings_rows(model: type[BaseModel], prefix: str, slot: str | None) -> Any:
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _settings_rows(annotation, f"{key}.", slot=name if name in SLOT_GROUPS else None)
            continue
        description = field.description or ""
        if not description and slot is not None and name in SLOT_FIELDS:
            description = SLOT_FIELDS[name].format(slot=slot, group=SLOT_GROUPS[slot])
        yield _row(f"`{key}`", _type(annotation, field), _default(field), description)


# -- drivers -------------------------------------------------------------------------------------------------


def driver_tables() -> str:
    defaults = ButterSettings.model_construct()
    out: list[str] = []
    for slot, group in SLOT_GROUPS.items():
        selected = defaults.discovery.drivers if slot == "discovery" else [getattr(defaults, slot).driver]
        out.append(f"### Slot `{slot}` {{#slot-{slot}}}\n")
        out.append(f"Entry-point group `{group}`; default: {', '.join(f'`{s}`' for s in selected) or 'none'}.\n")
        points = sorted(entry_points(group=group), key=lambda ep: ep.name)
        if not points:
            out.append("No driver of this slot is installed.\n")
        for point in points:
            out.append(_driver_section(slot, point))
    return "\n".join(out)


def _driver_section(slot: str, point: EntryPoint) -> str:
    plugin = point.load()  # an import error fails the build, as it should
    dist = point.dist.name if point.dist is not None else "?"
    options = getattr(plugin, "Options", None)
    if slot == "discovery":
        table, env = f"[butter.discovery.options.{point.name}]", f"BUTTER_DISCOVERY__OPTIONS__{point.name.upper()}__"
    else:
        table, env = f"[butter.{slot}.options]", f"BUTTER_{slot.upper()}__OPTIONS__"
    lines = [f"#### `{point.name}` {{#driver-{slot}-{point.name}}}\n"]
    lines.append(f"Distribution `{dist}`, class `{point.value}`.")
    if options is None:
        lines.append(" It takes no options.\n")
        return "\n".join(lines)
    lines.append(f" Options go in `{table}` of `butter.toml`, or in environment variables `{env}<OPTION>`.\n")
    lines.append(_model_table(options))
    for nested in _nested_models(options):
        lines.append(f"\nEach `{nested.__name__}`: {_first_paragraph(nested)}\n")
        lines.append(_model_table(nested))
    return "\n".join(lines) + "\n"


def _model_table(model: type[BaseModel]) -> str:
    rows = [
        _row(f"`{name}`", _type(field.annotation, field), _default(field), field.description or "")
        for name, field in model.model_fields.items()
    ]
    return "| option | type | default | description |\n|---|---|---|---|\n" + "\n".join(rows) + "\n"


def _nested_models(model: type[BaseModel]) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []

    def walk(annotation: Any) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation not in found:
                found.append(annotation)
            return
        for arg in get_args(annotation):
            walk(arg)

    for field in model.model_fields.values():
        walk(field.annotation)
    return found


def _first_paragraph(model: type[BaseModel]) -> str:
    doc = (model.__doc__ or "").strip()
    return " ".join(doc.split("\n\n")[0].split()) if doc else ""


# -- rendering -------------------------------------------------------------------------------------------------


def _row(*cells: str) -> str:
    return "| " + " | ".join(_cell(cell) for cell in cells) + " |"


def _cell(text: str) -> str:
    """One table cell: outside code spans, ``|`` is escaped and ``<``/``>`` are text, not HTML."""
    parts = text.replace("\n", " ").split("`")
    for i in range(0, len(parts), 2):  # even parts are outside backticks
        parts[i] = parts[i].replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(parts)


def _type(annotation: Any, field: FieldInfo | None = None) -> str:
    text = f"`{_type_name(annotation)}`"
    limits = []
    for meta in field.metadata if field is not None else ():
        for attr, template in CONSTRAINTS:
            value = getattr(meta, attr, None)
            if value is not None:
                limits.append(template.format(value) if "{}" in template else f"{template} {value}")
    return f"{text} ({', '.join(limits)})" if limits else text


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    args = get_args(annotation)
    if annotation is type(None):
        return "None"
    if origin is Annotated:
        return _type_name(args[0])
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin is not None:
        inner = ", ".join(_type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    if annotation is ByteSize:
        return "size"
    if annotation is Path:
        return "path"
    if annotation in (IPv4Address, IPv6Address):
        return annotation.__name__.replace("Address", " address")
    return getattr(annotation, "__name__", str(annotation))


def _default(field: FieldInfo) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "*required*"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "*unset*"
    if field.annotation is ByteSize or isinstance(value, ByteSize):
        return f"`{_size(int(value))}`"
    return f"`{_plain(value)}`"


def _size(value: int) -> str:
    unit = 0
    while value >= 1024 and value % 1024 == 0 and unit < len(UNITS) - 1:
        value //= 1024
        unit += 1
    return f"{value}{UNITS[unit]}"


def _plain(value: Any) -> str:
    """A default as it would be written in ``butter.toml`` (JSON spelling: ``true``, ``"text"``, lists)."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    elif isinstance(value, list):
        value = [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value]
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, IPv4Address | IPv6Address | Path):
        return str(value)
    return json.dumps(value, default=str, ensure_ascii=False)
