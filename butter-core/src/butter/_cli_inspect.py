"""What the inspection commands gather (``butter peers``, ``butter plugins``, ``butter settings``), kept apart
from how :mod:`butter.cli` prints it so that both halves can be tested on their own."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import anyio
from pydantic import BaseModel

from ._node import open_node
from ._plugins import OBSERVER_GROUP, SLOT_GROUPS
from .codec import peer_info
from .errors import ProtocolError
from .peers import PeerAddress, PeerInfo
from .settings import ButterSettings, DiscoverySettings
from .wire import decode_payload

__all__ = [
    "DriverRow",
    "PeersReport",
    "SettingRow",
    "installed_plugins",
    "probe_settings",
    "query_peers",
    "settings_rows",
    "settings_toml",
]


# -- butter peers -----------------------------------------------------------------------------------------


@dataclass
class PeersReport:
    """A remote node's own record (``target``), its round-trip time to ``ping`` (seconds) and the known
    hosts it revealed over ``rounds`` calls of route ``known-hosts`` (each returns a random sample)."""

    dialled: PeerAddress
    target: PeerInfo
    rtt: float
    hosts: list[PeerInfo] = field(default_factory=list)
    rounds: int = 0

    @property
    def complete(self) -> bool:
        """Whether every host the node says it knows was seen."""
        return len(self.hosts) >= self.target.quality.known_hosts

    def to_json(self) -> dict[str, Any]:
        def row(info: PeerInfo) -> dict[str, Any]:
            return {"id": info.node_id, "address": str(info.address), **info.quality.to_wire()}

        return {
            "dialled": str(self.dialled),
            "rtt": self.rtt,
            "node": row(self.target),
            "hosts": [row(info) for info in self.hosts],
            "rounds": self.rounds,
            "complete": self.complete,
        }


def probe_settings(base: ButterSettings, *, host: str, timeout: float) -> ButterSettings:
    """Settings for a short-lived client node: ``base``'s transport and frame limit, every other setting at
    its default, no discovery, no persistence and no peers, so that it stays invisible to the overlay and
    never touches a running node's data. It listens on ``host`` at an OS-chosen port only because every
    node serves."""
    fresh = {name: info.get_default(call_default_factory=True) for name, info in type(base).model_fields.items()}
    fresh.update(
        transport=base.transport,
        max_frame=base.max_frame,
        host=host,
        port=0,
        discovery=DiscoverySettings(drivers=[]),
        persistence=base.persistence.model_copy(update={"driver": "", "options": {}}),
        retrieval=base.retrieval.model_copy(update={"driver": "", "options": {}}),
        connect_timeout=float(timeout),
        request_timeout=float(timeout),
        shutdown_timeout=2.0,
    )
    return base.model_copy(update=fresh)


async def query_peers(settings: ButterSettings, address: PeerAddress, *, timeout: float, rounds: int) -> PeersReport:
    """Ask the node at ``address`` for its id, quality and known hosts, from a client node built with
    ``settings`` (see :func:`probe_settings`).

    Route ``known-hosts`` answers a random sample of at most 16 hosts, so it is asked up to ``rounds`` times,
    stopping as soon as every host the node reports knowing has been seen. Requests are sent with an empty
    body, which neither introduces the client to the node nor counts toward its ``known_by``.

    Raises :class:`~butter.errors.PeerUnreachable`, :class:`~butter.errors.RequestTimeout` (``timeout``
    seconds per request), :class:`~butter.errors.RemoteError` or :class:`~butter.errors.ProtocolError`.
    """
    async with open_node(settings) as client:
        started = anyio.current_time()
        await client.request(address, "ping", timeout=timeout)
        rtt = anyio.current_time() - started
        reply = await client.request(address, "host-quality", timeout=timeout)
        target = peer_info(decode_payload(reply, settings.max_frame), "bad host-quality reply")
        report = PeersReport(address, target, rtt)
        seen: dict[str, PeerInfo] = {}
        while report.rounds < rounds and not (report.rounds and len(seen) >= target.quality.known_hosts):
            body = decode_payload(await client.request(address, "known-hosts", timeout=timeout), settings.max_frame)
            report.rounds += 1
            entries = body.get("sample") if isinstance(body, dict) else None
            if not isinstance(entries, list):
                raise ProtocolError("known-hosts reply has no 'sample' list")
            for entry in entries:
                try:
                    info = PeerInfo.from_wire(entry)
                except ValueError:
                    continue
                seen.setdefault(info.node_id, info)
        report.hosts = sorted(seen.values(), key=lambda info: (-info.quality.uptime, info.node_id))
        return report


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
        return {
            "slot": self.slot,
            "group": self.group,
            "name": self.name,
            "target": self.target,
            "distribution": self.distribution,
            "selected": self.selected,
            "installed": self.installed,
        }


def selected_drivers(settings: ButterSettings) -> dict[str, list[str]]:
    """The driver names each slot's settings select (empty for a slot left off)."""
    selected = {slot: [getattr(settings, slot).driver] for slot in SLOT_GROUPS if slot != "discovery"}
    selected["discovery"] = list(dict.fromkeys(settings.discovery.drivers))
    return {slot: [name for name in names if name] for slot, names in selected.items()}


def installed_plugins(settings: ButterSettings) -> list[DriverRow]:
    """Every driver installed for each slot, read from package metadata without importing any of them.

    A driver the settings select but that is not installed gets a row with ``installed=False``. Observers
    (group ``butter.plugins``) are all loaded by every node, so they are all marked selected.
    """
    chosen = selected_drivers(settings)
    rows: list[DriverRow] = []
    for slot, group in [*SLOT_GROUPS.items(), ("observers", OBSERVER_GROUP)]:
        found: dict[str, DriverRow] = {}
        for ep in entry_points(group=group):
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


# -- butter settings --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SettingRow:
    """One leaf setting: dotted ``key``, effective ``value``, the environment variable that sets it, and
    the field's description."""

    key: str
    value: Any
    env: str
    description: str


def settings_rows(settings: ButterSettings) -> list[SettingRow]:
    """Flatten settings into one row per leaf key (slot tables split into ``driver`` and ``options``)."""
    rows: list[SettingRow] = []
    data = settings.model_dump(mode="json")
    for name, info in type(settings).model_fields.items():
        value = getattr(settings, name)
        if isinstance(value, BaseModel):
            for sub, sub_info in type(value).model_fields.items():
                key = f"{name}.{sub}"
                description = sub_info.description or _SLOT_HELP.get(sub, "")
                rows.append(SettingRow(key, data[name][sub], _env(key), description))
        else:
            rows.append(SettingRow(name, data[name], _env(name), info.description or ""))
    return rows


_SLOT_HELP = {
    "driver": "entry-point name of the driver (see `butter plugins`); empty: slot unused",
    "drivers": "entry-point names of the discovery drivers run together",
    "options": "the driver's own options (validated by the driver)",
}


def _env(key: str) -> str:
    return "BUTTER_" + key.replace(".", "__").upper()


def settings_toml(settings: ButterSettings) -> str:
    """The effective settings as a ``butter.toml`` document (unset values commented out)."""

    def assignment(key: str, value: Any) -> str:
        return f"# {key} = ...  (unset)" if value is None else f"{key} = {_toml_value(value)}"

    data = settings.model_dump(mode="json")
    sections = [name for name in data if isinstance(getattr(settings, name), BaseModel)]
    lines = ["[butter]", *(assignment(key, value) for key, value in data.items() if key not in sections)]
    for name in sections:
        lines += ["", f"[butter.{name}]", *(assignment(key, value) for key, value in data[name].items())]
    return "\n".join(lines) + "\n"


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
