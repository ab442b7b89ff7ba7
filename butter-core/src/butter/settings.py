"""Node settings (pydantic-settings): defaults < ``butter.toml`` < ``BUTTER_*`` environment < CLI flags.

* File: the ``[butter]`` table of ``butter.toml`` in the working directory, or of the file named by
  ``load_settings(config_file=...)`` / ``butter --config``; tables are deep-merged with the defaults.
* Environment: ``BUTTER_PORT=9000``, nested keys joined by ``__``: ``BUTTER_TRANSPORT__DRIVER=tcp``,
  ``BUTTER_HOST_MANAGER__OPTIONS__CAPACITY=32``.
* CLI: ``--port 9000 --transport.driver memory --discovery.drivers '["static"]'``.

Invalid values raise :class:`~butter.errors.ButterConfigError` naming the key, at start, before any socket
is opened.
"""

from __future__ import annotations

import contextvars
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ByteSize, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    CliSettingsSource,
    PydanticBaseSettingsSource,
    PyprojectTomlConfigSettingsSource,
    SettingsConfigDict,
)

from .errors import ButterConfigError

__all__ = [
    "BudgetSplit",
    "ButterSettings",
    "DiscoverySettings",
    "HostManagerSettings",
    "PersistenceSettings",
    "RetrievalSettings",
    "SlotSettings",
    "StoreSettings",
    "TransportSettings",
    "budget_split",
    "describe_validation_error",
    "load_settings",
]

DEFAULT_CONFIG_FILE = Path("butter.toml")
KNOWN_HOST_SHARE = 0.0001  # of the memory budget, for the known-host list
BYTES_PER_HOST = 6  # nominal size of one known host, an IPv4 socket address
_config_file: contextvars.ContextVar[Path | None] = contextvars.ContextVar("butter_config_file", default=None)


@dataclass(frozen=True, slots=True)
class BudgetSplit:
    """How a node's memory budget is shared: ``known_hosts`` and ``storage`` bytes (see :func:`budget_split`)."""

    known_hosts: int
    storage: int

    @property
    def host_capacity(self) -> int:
        """Known hosts that fit in the ``known_hosts`` share, at 6 bytes each; at least 1."""
        return max(1, self.known_hosts // BYTES_PER_HOST)


def budget_split(memory_budget: int) -> BudgetSplit:
    """Split ``memory_budget`` (bytes) once for the whole node: 0.01 % for the known-host list
    (the default capacity of host management: 8,947 hosts of 6 bytes at 512 MiB), the rest for block
    storage (the block store's default capacity)."""
    known_hosts = int(KNOWN_HOST_SHARE * memory_budget)
    return BudgetSplit(known_hosts=known_hosts, storage=memory_budget - known_hosts)


class SlotSettings(BaseModel):
    """One slot's driver (an entry-point name) and that driver's raw options (validated by the driver)."""

    model_config = ConfigDict(extra="forbid")
    driver: str
    options: dict[str, Any] = Field(default_factory=dict)


class TransportSettings(SlotSettings):
    driver: str = "tcp"


class HostManagerSettings(SlotSettings):
    driver: str = "diversity"


class PersistenceSettings(SlotSettings):
    """``driver = ""`` runs the node without persistence."""

    driver: str = "pcg"


class RetrievalSettings(SlotSettings):
    """``driver = ""`` runs the node without retrieval."""

    driver: str = "bfs"


class DiscoverySettings(BaseModel):
    """Discovery runs several drivers at once; ``options`` maps a driver name to its options."""

    model_config = ConfigDict(extra="forbid")
    drivers: list[str] = Field(default_factory=lambda: ["multicast"])
    options: dict[str, dict[str, Any]] = Field(default_factory=dict)


class StoreSettings(BaseModel):
    """The node's local block store ."""

    model_config = ConfigDict(extra="forbid")
    driver: str = Field("memory", pattern="^(memory|sqlite)$", description="memory (default) or sqlite (durable)")
    path: Path | None = Field(None, description="sqlite file; default <data_dir>/blocks.sqlite3")
    capacity: ByteSize | None = Field(
        None, description="bytes of block data kept; default the memory budget less the known-host share"
    )
    block_size: ByteSize = Field(ByteSize(4096), description="bytes per block when content is cut")

    @field_validator("block_size")
    @classmethod
    def _block_size_range(cls, value: ByteSize) -> ByteSize:
        if not 64 <= value <= 1024 * 1024:
            raise ValueError("must be between 64 bytes and 1 MiB")
        return value


class ButterSettings(BaseSettings):
    """Everything that configures one node. Units: bytes for sizes (``"4MiB"`` accepted), seconds for time."""

    model_config = SettingsConfigDict(
        env_prefix="BUTTER_",
        env_nested_delimiter="__",
        pyproject_toml_table_header=("butter",),
        extra="forbid",
        validate_default=True,
    )

    host: str = Field("0.0.0.0", description="interface address to listen on (0.0.0.0: every interface)")
    advertise_host: str = Field(
        "", description="address peers should dial; empty: the listening address, or the outbound one"
    )
    port: int = Field(0, ge=0, le=65535, description="TCP port to listen on; 0 lets the OS pick")
    data_dir: Path | None = Field(
        None, description="where the node keeps its identity key and durable data; unset: ephemeral"
    )
    memory_budget: ByteSize = Field(
        ByteSize(512 * 1024 * 1024), description="bytes the node may use; sizes known hosts and storage"
    )
    connect_timeout: float = Field(5.0, gt=0, description="seconds to establish a connection to a peer")
    request_timeout: float = Field(10.0, gt=0, description="seconds to wait for a reply, by default")
    shutdown_timeout: float = Field(
        10.0, ge=0, description="seconds a graceful exit may take before tasks are cancelled"
    )
    max_frame: ByteSize = Field(ByteSize(4 * 1024 * 1024), description="largest frame accepted or sent, bytes")
    peers: list[str] = Field(default_factory=list, description="HOST:PORT addresses for static discovery")
    network_id: str = Field(
        "butter", min_length=1, max_length=32, pattern=r"^[A-Za-z0-9._-]+$",
        description="name of the overlay this node belongs to (1-32 of A-Z a-z 0-9 . _ -); a peer on another "
        "network is refused in the handshake, so unrelated overlays never merge by accident",
    )
    network_key: SecretStr = Field(
        SecretStr(""), description="pre-shared key of a private network (empty: none); only peers holding the "
        "same key are admitted (checked in the handshake with an HMAC bound to the TLS session; never sent)",
    )
    transport: TransportSettings = Field(default_factory=TransportSettings)
    discovery: DiscoverySettings = Field(default_factory=DiscoverySettings)
    host_manager: HostManagerSettings = Field(default_factory=HostManagerSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    persistence: PersistenceSettings = Field(default_factory=PersistenceSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    plugins: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="options of observer plugins (entry-point group butter.plugins), by entry-point name",
    )

    @field_validator("memory_budget")
    @classmethod
    def _budget_floor(cls, value: ByteSize) -> ByteSize:
        if value < 1024 * 1024:
            raise ValueError("must be at least 1 MiB")
        return value

    @field_validator("max_frame")
    @classmethod
    def _frame_floor(cls, value: ByteSize) -> ByteSize:
        if not 1024 <= value <= 2**31:
            raise ValueError("must be between 1 KiB and 2 GiB")
        return value

    @field_validator("peers")
    @classmethod
    def _peers_parse(cls, value: list[str]) -> list[str]:
        from .peers import PeerAddress

        for text in value:
            PeerAddress.parse(text)  # raises ValueError naming the bad entry
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = _config_file.get() or DEFAULT_CONFIG_FILE
        return (init_settings, env_settings, PyprojectTomlConfigSettingsSource(settings_cls, toml_file))


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem, each naming the dotted key: ``port: Input should be less than or equal to 65535``."""
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "(settings)"
        lines.append(f"{key}: {error['msg']} (got {error.get('input')!r})")
    return "invalid settings:\n  " + "\n  ".join(lines)


def load_settings(
    *, config_file: Path | str | None = None, cli_args: Sequence[str] = (), **overrides: Any
) -> ButterSettings:
    """Build settings from every source, highest priority first: ``overrides``, ``cli_args``, environment,
    the config file, defaults.

    ``config_file`` defaults to ``./butter.toml`` (ignored when absent; an explicit path must exist).
    Raises :class:`ButterConfigError` naming each invalid key.
    """
    path = Path(config_file) if config_file is not None else None
    if path is not None and not path.is_file():
        raise ButterConfigError(f"config file {path} does not exist")
    token = _config_file.set(path)
    try:
        if cli_args:
            cli: CliSettingsSource[ButterSettings] = CliSettingsSource(
                ButterSettings, cli_parse_args=list(cli_args), cli_exit_on_error=False
            )
            return ButterSettings(_cli_settings_source=cli, **overrides)
        return ButterSettings(**overrides)
    except ValidationError as exc:
        raise ButterConfigError(describe_validation_error(exc)) from None
    except Exception as exc:  # CLI parse errors and TOML syntax errors arrive as assorted types
        if isinstance(exc, ButterConfigError):
            raise
        raise ButterConfigError(f"invalid settings: {exc}") from None
    finally:
        _config_file.reset(token)
