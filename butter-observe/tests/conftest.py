"""Fixtures: small overlays on the memory transport with the observe plugin on, and a throwaway PostgreSQL
server (Debian's ``postgresql`` package: ``initdb`` and ``pg_ctl``, run as ``nobody`` when the tests run as
root, since PostgreSQL refuses root) listening on 127.0.0.1 at a free port."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import butter
from butter.settings import ButterSettings
from butter.testing.overlay import wait_for
from butter_observe import ObservePlugin

MakeSettings = Callable[..., ButterSettings]
FAST_HOSTS = {"refresh_interval": 0.5, "exchange_interval": 0.2, "quality_timeout": 2.0, "max_failures": 3}
FAST_PCG = {"heartbeat_interval": 0.2, "member_timeout": 3.0, "heartbeat_timeout": 1.0, "fetch_timeout": 1.0}


def observer(node: butter.Node) -> ObservePlugin:
    plugin = node.plugins.pm.get_plugin("butter.plugins:observe")
    assert isinstance(plugin, ObservePlugin)
    return plugin



@asynccontextmanager
async def overlay(make: MakeSettings, size: int, observe: dict[str, Any], *, pcg: bool = True
                  ) -> AsyncIterator[list[butter.Node]]:
    """``size`` nodes (PCG persistence unless ``pcg=False``) with ``plugins.observe = observe``, each
    knowing the others once yielded."""
    async with AsyncExitStack() as stack:
        nodes: list[butter.Node] = []
        for _ in range(size):
            settings = make(
                peers=[str(n.address) for n in nodes[:1]],
                host_manager={"driver": "diversity", "options": FAST_HOSTS},
                persistence={"driver": "pcg", "options": FAST_PCG} if pcg else {"driver": ""},
                plugins={"observe": observe},
            )
            nodes.append(await stack.enter_async_context(butter.open_node(settings)))
        await wait_for(lambda: all(len(n.hosts.peers()) >= size - 1 for n in nodes), "every node knows the others")
        yield nodes


# -- PostgreSQL ------------------------------------------------------------------------------------------------


def _postgres_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Postgres:
    """A running throwaway cluster: ``url(dbname)``, ``stop()`` (immediate: as a crash), ``start()``."""

    pg_ctl: str
    data: Path
    port: int
    as_user: list[str]

    def _ctl(self, *args: str) -> None:
        subprocess.run([*self.as_user, self.pg_ctl, "-D", str(self.data), "-w", "-t", "30", *args],
                       check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        self._ctl("-l", str(self.data.parent / "log"), "-o",
                  f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.data.parent} -c fsync=off", "start")

    def stop(self) -> None:
        self._ctl("-m", "immediate", "stop")

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://butter@127.0.0.1:{self.port}/{dbname}"

    def create_database(self) -> str:
        """A fresh database for one test; its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    initdb, pg_ctl = _postgres_bin("initdb"), _postgres_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL's initdb is not installed (Debian package postgresql; .ci/run installs it)")
    pytest.importorskip("psycopg", reason="psycopg is not installed (butter-observe[postgresql])")
    root = Path(tempfile.mkdtemp(prefix="butter-pg-"))
    as_user: list[str] = []
    if os.getuid() == 0:  # PostgreSQL refuses to run as root
        nobody = pwd.getpwnam("nobody")
        os.chown(root, nobody.pw_uid, nobody.pw_gid)
        as_user = ["runuser", "-u", "nobody", "--"]
    data = root / "data"
    subprocess.run([*as_user, initdb, "-D", str(data), "-U", "butter", "--auth=trust", "--no-sync", "-E", "UTF8"],
                   check=True, capture_output=True, timeout=120)
    server = Postgres(pg_ctl, data, _free_port(), as_user)
    server.start()
    try:
        yield server
    finally:
        try:
            server.stop()
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(root, ignore_errors=True)
