"""Shared plumbing for the ``butter`` command: consoles, settings, logging, running async code, errors.

Every command follows one shape: build settings with :func:`load_or_exit`, set up logging, then run one
coroutine with :func:`run_async`. Errors become a one-line red message and an exit status, never a traceback:

* 2: invalid settings or usage (:class:`~butter.errors.ButterConfigError`);
* 1: a runtime failure (an unreachable peer, a bind failure, any other :class:`~butter.errors.ButterError`);
* 130: interrupted before a graceful exit could be arranged.
"""

from __future__ import annotations

import enum
import functools
import importlib.util
import logging
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

if TYPE_CHECKING:  # the rest is imported when used, so that `butter --help` starts quickly
    from rich.console import Console

    from .peers import PeerAddress
    from .settings import ButterSettings

__all__ = [
    "EXTRA_ARGS",
    "Backend",
    "BackendOption",
    "ClientHostOption",
    "ConfigOption",
    "LogFormat",
    "LogFormatOption",
    "LogLevel",
    "NodeOption",
    "address_or_exit",
    "console",
    "err_console",
    "examples",
    "exit_on_errors",
    "fail",
    "item_or_exit",
    "load_or_exit",
    "require_module",
    "run_async",
    "setup_logging",
]

T = TypeVar("T")

PIPED_WIDTH = 200  # columns when not on a terminal: tables shrink to their content, so this only stops wrapping


@functools.cache
def console() -> Console:
    """The rich console on stdout (made on first use)."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else PIPED_WIDTH)


@functools.cache
def err_console() -> Console:
    """The rich console on stderr: errors, progress, notes (made on first use)."""
    from rich.console import Console

    return Console(stderr=True, width=None if sys.stderr.isatty() else PIPED_WIDTH)


EXTRA_ARGS: dict[str, Any] = {"allow_extra_args": True, "ignore_unknown_options": True}
"""``context_settings`` for commands that forward unknown ``--section.key VALUE`` pairs to the settings."""


def examples(*lines: str) -> str:
    """A command's epilog: ``Examples:``, then ``lines`` up to an empty one, each on its own line as given;
    the ``lines`` after the empty one are paragraphs (click rewraps them to the terminal's width)."""
    cut = lines.index("") if "" in lines else len(lines)
    commands = "\n".join(f"  {line}" for line in lines[:cut])
    return "\n\n".join(["Examples:", f"\b\n{commands}", *lines[cut + 1:]])  # \b: click keeps this paragraph


class LogLevel(enum.StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


class LogFormat(enum.StrEnum):
    text = "text"
    json = "json"


class Backend(enum.StrEnum):
    asyncio = "asyncio"
    trio = "trio"


# -- options shared by several commands ---------------------------------------------------------------------

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        metavar="FILE",
        help="TOML file whose [butter] table holds settings. Default: ./butter.toml if present.",
        dir_okay=False,
    ),
]
BackendOption = Annotated[
    Backend,
    typer.Option("--backend", help="Async library to run on (trio: pip install 'butter-core[trio]').",
                 case_sensitive=False),
]
LogFormatOption = Annotated[
    LogFormat,
    typer.Option("--log-format", envvar="BUTTER_LOG_FORMAT", case_sensitive=False,
                 help="Logs on stderr as text, or json: one object per line (time, level, logger, message, "
                 "node_id, event, peer), for log shippers."),
]
NodeOption = Annotated[str, typer.Option("--node", "-n", metavar="HOST:PORT", help="A running node.")]
ClientHostOption = Annotated[str, typer.Option(help="Address the short-lived client node listens on.")]


EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    """Print ``error: message`` in red on stderr and exit with ``code``."""
    from rich.markup import escape

    err_console().print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def address_or_exit(text: str) -> PeerAddress:
    """Parse ``HOST:PORT`` or exit with status 2 saying why."""
    from .peers import PeerAddress

    try:
        return PeerAddress.parse(text)
    except ValueError as exc:
        fail(str(exc), 2)


def item_or_exit(text: str, what: str, hint: str = "") -> None:
    """Exit with status 2 unless ``text`` (named ``what`` in the message, then ``hint``) is a content id or a
    well-formed capability (``bcap1:…``, :mod:`butter.encryption`)."""
    from .blocks import is_block_id
    from .encryption import Capability, is_capability
    from .errors import InvalidCapability

    if is_capability(text):
        try:
            Capability.parse(text)
        except InvalidCapability as exc:
            fail(f"bad capability: {exc}", 2)
    elif not is_block_id(text):
        fail(f"{what} must be a content id (64 lowercase hex) or a capability, got {text!r}{hint}", 2)


def require_module(module: str, needed_for: str, extra: str) -> None:
    """Exit with status 2 and one line naming ``butter-core[extra]`` when ``module`` is not installed
    (``needed_for`` says what needs it, e.g. ``"--backend trio"``)."""
    if importlib.util.find_spec(module) is None:
        fail(f"{needed_for} needs {module}, which is not installed: pip install 'butter-core[{extra}]'", EXIT_USAGE)


def load_or_exit(config: Path | None, extra_args: list[str], **overrides: Any) -> ButterSettings:
    """Settings from every source (see :mod:`butter.settings`); ``overrides`` that are ``None`` are dropped.

    ``extra_args`` are the command line's unknown ``--section.key VALUE`` pairs. Exits with status 2 on
    invalid settings, naming each bad key.
    """
    from .errors import ButterConfigError
    from .settings import load_settings

    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return load_settings(config_file=config, cli_args=extra_args, **given)
    except ButterConfigError as exc:
        fail(str(exc), EXIT_USAGE)


def setup_logging(level: LogLevel | str = LogLevel.INFO, log_format: LogFormat | str = LogFormat.text) -> None:
    """Send log records at ``level`` and above to stderr. ``text``: through rich on a terminal, plain text
    otherwise (so that piped logs are not wrapped at 80 columns); ``json``: one JSON object per line (see
    :class:`butter._logs.JsonFormatter`). Third-party chatter stays at WARNING unless DEBUG."""
    name = level.value if isinstance(level, LogLevel) else str(level).upper()
    handler: logging.Handler
    if LogFormat(log_format) is LogFormat.json:
        from ._logs import JsonFormatter

        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
    elif sys.stderr.isatty():
        from rich.logging import RichHandler

        handler = RichHandler(console=err_console(), show_path=False, rich_tracebacks=True, markup=False)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s", datefmt="[%X]"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
    logging.basicConfig(level=name, handlers=[handler], force=True)
    if name != "DEBUG":
        for noisy in ("stevedore", "asyncio", "trio"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


@contextmanager
def exit_on_errors(context: str = "") -> Iterator[None]:
    """Turn what the block raises into a red message and an exit status: status 2 for a
    :class:`~butter.errors.ButterConfigError`, 1 for any other Butter error or ``OSError``, 130 for Ctrl-C.

    ``context`` prefixes runtime error messages (``"cannot query 1.2.3.4:9000: ..."``). Errors are looked
    for inside exception groups too (a task group wraps what its tasks raise); anything else propagates.
    """
    from .errors import ButterConfigError, ButterError

    prefix = f"{context}: " if context else ""
    try:
        yield
    except KeyboardInterrupt:
        err_console().print("[yellow]interrupted[/]")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except (ButterError, OSError, BaseExceptionGroup) as exc:
        leaves = _leaves(exc)
        for leaf in leaves:
            if isinstance(leaf, ButterConfigError):
                fail(str(leaf), EXIT_USAGE)
        for leaf in leaves:
            if isinstance(leaf, ButterError | OSError):
                fail(prefix + (f"{type(leaf).__name__}: {leaf}" if isinstance(leaf, OSError) else str(leaf)))
        raise


def run_async(
    fn: Callable[..., Awaitable[T]],
    *args: Any,
    backend: Backend | str = Backend.asyncio,
    context: str = "",
    **kwargs: Any,
) -> T:
    """``anyio.run(fn, *args, **kwargs)`` on ``backend``, with errors handled by :func:`exit_on_errors`.

    Exits with status 2 and the ``pip install`` line when the backend is trio and trio is not installed.
    """
    import anyio

    name = backend.value if isinstance(backend, Backend) else backend
    if name == Backend.trio:
        require_module("trio", "--backend trio", "trio")
    with exit_on_errors(context):
        return anyio.run(functools.partial(fn, *args, **kwargs), backend=name)
