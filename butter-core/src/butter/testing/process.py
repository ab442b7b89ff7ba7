"""Run a node, a CLI command or an example as a real subprocess and wait for its output lines with a
deadline: :class:`RunningProcess`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["RunningProcess"]


class RunningProcess:
    """A subprocess (``argv``) whose merged stdout/stderr lines are collected by a thread.

    ``env`` defaults to this process's environment; ``PYTHONUNBUFFERED=1`` is always set so lines arrive as
    they are printed. Pass ``stdin=subprocess.PIPE`` to :meth:`type` into it.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        stdin: int = subprocess.DEVNULL,
    ) -> None:
        self.proc = subprocess.Popen(
            list(argv), cwd=cwd, env={**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"},
            text=True, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 20, *, after: int = 0) -> re.Match[str]:
        """The first line (from index ``after``) matching ``pattern``; raises ``AssertionError`` with the
        output so far after ``timeout`` seconds, or as soon as the process has exited without one."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines[after:]:
                    if match := re.search(pattern, line):
                        return match
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._reader.is_alive():
                    raise AssertionError(f"no line matching {pattern!r}; output so far:\n" + "\n".join(self.lines))
                self._changed.wait(min(remaining, 0.2))

    def type(self, line: str) -> int:
        """Write ``line`` to stdin; returns how many output lines existed before, for ``wait_for(after=)``."""
        with self._changed:
            seen = len(self.lines)
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return seen

    def stop(self, signum: int = signal.SIGINT, timeout: float = 20) -> int:
        """Send ``signum`` and return the exit status; kills the process if it has not exited in ``timeout``
        seconds."""
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
