"""A multi-host test bench: Linux network namespaces joined by bridges, running real ``butter`` processes.

Topology. Everything lives in namespaces this module creates; the root
namespace is not touched (no interface, route, sysctl or firewall rule is added there):

* a **LAN** is a "switch" namespace holding bridge ``br0`` (multicast snooping off: a plain switch that
  floods multicast), and one namespace per **host**, each joined to the bridge by a veth pair whose host end
  is ``eth0``, with ``lo`` up, an address in the LAN's private subnet (default ``10.77.0.0/24``, hosts from
  ``.10``), a multicast route ``224.0.0.0/4 dev eth0`` and a default route (on-link, or via the router), so
  that a node bound to ``0.0.0.0`` advertises its ``eth0`` address;
* a **router** namespace joins several LANs (``.1`` on each) with ``net.ipv4.ip_forward=1`` and no
  multicast routing, so unicast crosses it and multicast does not (later issues add NAT there: use
  :meth:`Router.exec`);
* an **observer** is a host namespace with no node, from which tests query nodes (:meth:`Lab.query`).

Nodes are real processes, ``ip netns exec <ns> butter node ...``; their stdout and stderr are read by
threads that stamp every line with the time it arrived (so benchmarks can time log events to the
millisecond) and copy it to ``<workdir>/<host>.log``. Namespace names are ``btn-<pid>-<random>-<role>``:
unique per run, and a later run deletes the leftovers of runs whose process is gone.

:class:`Lab` is a context manager; leaving it (even on a failed test) kills the processes and deletes every
namespace, which also removes the bridges and veths inside them. Needs root and iproute2
(:func:`missing_requirements`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

__all__ = [
    "DEFAULT_PORT",
    "Host",
    "Lab",
    "Lan",
    "LogLine",
    "NatRouter",
    "NodeProcess",
    "Router",
    "butter_command",
    "cleanup_stale",
    "missing_requirements",
]

PREFIX = "btn"
DEFAULT_PORT = 7000
PROBE = Path(__file__).with_name("probe.py")
STOP_GRACE = 3.0  # seconds a node gets to leave after SIGTERM before SIGKILL


def missing_requirements() -> str | None:
    """Why the bench cannot run here (not root, no ``ip``), or ``None``."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "network-namespace tests need root (they create namespaces, bridges and veth pairs)"
    if shutil.which("ip") is None:
        return "network-namespace tests need the `ip` command (iproute2)"
    return None


def missing_nat_requirements() -> str | None:
    """Why NAT routers cannot be built here (see :func:`missing_requirements`; no ``iptables``), or ``None``."""
    return missing_requirements() or (
        None if shutil.which("iptables") else "NAT routers need the `iptables` command (Debian package iptables)"
    )


def butter_command() -> list[str]:
    """The ``butter`` console script of the running interpreter's environment, else ``python -c``."""
    script = Path(sys.executable).with_name("butter")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from butter.cli import main; main()"]


def run(*argv: str, check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run a command; raise ``RuntimeError`` with its stderr when it fails and ``check`` is set."""
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def ip(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run("ip", *(("-n", ns) if ns else ()), *args, check=check)


def _namespaces() -> list[str]:
    return [line.split()[0] for line in run("ip", "netns", "list").stdout.splitlines() if line.strip()]


def _delete_namespace(name: str) -> None:
    """Kill whatever still runs in namespace ``name``, then delete it (its interfaces go with it)."""
    pids = run("ip", "netns", "pids", name, check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    run("ip", "netns", "del", name, check=False)


def cleanup_stale(prefix: str = PREFIX) -> list[str]:
    """Delete namespaces left by earlier runs whose process has exited; returns their names."""
    stale = []
    for name in _namespaces():
        match = re.match(rf"{re.escape(prefix)}-(\d+)-", name)
        if match is None:
            continue
        pid = int(match.group(1))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            stale.append(name)
        except PermissionError:
            continue
    for name in stale:
        _delete_namespace(name)
    return stale


@dataclass(frozen=True)
class LogLine:
    """One line a process wrote: ``at`` (``time.monotonic()`` when it arrived), ``stream`` and ``text``."""

    at: float
    stream: str
    text: str


@dataclass(eq=False)
class Host:
    """A namespace with one address on a LAN (``eth0``)."""

    lab: Lab
    name: str
    ns: str
    ip: str
    lan: Lan

    def exec(self, *argv: str, check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside this host's namespace and wait for it."""
        return run("ip", "netns", "exec", self.ns, *argv, check=check, timeout=timeout)

    def __str__(self) -> str:
        return f"{self.name} ({self.ip})"


@dataclass(eq=False)
class Lan:
    """A broadcast domain: bridge ``br0`` in namespace ``switch``, subnet ``network``, its hosts."""

    name: str
    network: ipaddress.IPv4Network
    switch: str
    hosts: list[Host] = field(default_factory=list)
    gateway: str | None = None
    _next_host: int = 10
    _next_port: int = 0

    @property
    def prefixlen(self) -> int:
        return self.network.prefixlen


@dataclass(eq=False)
class Router:
    """A namespace forwarding IPv4 between LANs (``.1`` on each); no multicast routing."""

    ns: str
    addresses: dict[str, str]

    def exec(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run("ip", "netns", "exec", self.ns, *argv, check=check)


@dataclass(eq=False)
class NatRouter(Router):
    """A home router: ``.1`` on its ``inside`` LAN, ``wan_ip`` on the ``outside`` one, NAT (iptables
    MASQUERADE) from inside to outside, and a stateful firewall: from outside only replies and forwarded
    ports get in; anything unsolicited is dropped silently (no reset), as home routers do."""

    inside: Lan
    outside: Lan
    wan_ip: str

    def forward_port(self, port: int, host: Host, host_port: int | None = None) -> None:
        """Manual port forwarding: TCP ``wan_ip:port`` → ``host:host_port`` (DNAT)."""
        self.exec(
            "iptables", "-t", "nat", "-A", "PREROUTING", "-i", "wan", "-p", "tcp", "--dport", str(port),
            "-j", "DNAT", "--to-destination", f"{host.ip}:{host_port or port}",
        )


class NodeProcess:
    """A process started in a host's namespace, with its output captured line by line.

    ``address`` is ``HOST_IP:port`` (the node's port is fixed by the lab, so it is known before start).
    """

    def __init__(self, host: Host, argv: Sequence[str], port: int, log_path: Path, env: dict[str, str]) -> None:
        self.host = host
        self.port = port
        self.argv = list(argv)
        self.log_path = log_path
        self.lines: list[LogLine] = []
        self._changed = threading.Condition()
        self._log = log_path.open("a", buffering=1, encoding="utf-8")
        self.started_at = time.monotonic()
        self._log.write(f"# {time.strftime('%H:%M:%S')} start in {host.ns}: {' '.join(self.argv)}\n")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", host.ns, *self.argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=host.lab.workdir,
            env=env,
            start_new_session=True,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, "out"), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, "err"), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @property
    def address(self) -> str:
        return f"{self.host.ip}:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    @property
    def node_id(self) -> str | None:
        """The full node id, once the node has printed it (``butter node <id>``)."""
        for line in list(self.lines):
            match = re.match(r"\s*butter node ([0-9a-f]{8,})", line.text)
            if match:
                return match.group(1)
        return None

    def _read(self, stream: IO[bytes], name: str) -> None:
        for raw in iter(stream.readline, b""):
            now = time.monotonic()
            text = raw.decode("utf-8", "replace").rstrip("\n")
            with self._changed:
                self.lines.append(LogLine(now, name, text))
                with contextlib.suppress(ValueError):
                    self._log.write(f"{now - self.started_at:9.3f} {name} {text}\n")
                self._changed.notify_all()
        stream.close()

    def matches(self, pattern: str, since: float = 0.0) -> list[LogLine]:
        """Lines (either stream) matching regular expression ``pattern`` that arrived at or after ``since``."""
        regex = re.compile(pattern)
        return [line for line in list(self.lines) if line.at >= since and regex.search(line.text)]

    def wait_for(self, pattern: str, timeout: float, since: float = 0.0) -> LogLine:
        """The first line matching ``pattern`` (arrived at or after ``since``), waiting up to ``timeout``
        seconds. Raises ``TimeoutError`` (with the log's tail) on timeout or if the process exits first."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        with self._changed:
            while True:
                for line in self.lines:
                    if line.at >= since and regex.search(line.text):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and not any(r.is_alive() for r in self._readers)):
                    tail = "\n".join(f"  {line.stream} {line.text}" for line in self.lines[-15:])
                    state = "running" if self.alive else f"exited {self.proc.returncode}"
                    raise TimeoutError(f"{self.host}: no line matching {pattern!r} ({state}); last lines:\n{tail}")
                self._changed.wait(min(remaining, 0.2))

    def wait_started(self, timeout: float) -> str:
        """Wait until ``butter node`` has printed its id and address (it is then serving); return the id."""
        self.wait_for(r"^\s+listening on \S+", timeout)
        node_id = self.node_id
        assert node_id is not None
        return node_id

    def signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL: the node gets no chance to leave gracefully."""
        self.signal(signal.SIGKILL)
        self.proc.wait(10)
        self._finish()

    def stop(self, grace: float = STOP_GRACE) -> int:
        """SIGTERM (graceful leave), then SIGKILL after ``grace`` seconds; returns the exit status."""
        if self.alive:
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait(10)
        self._finish()
        return self.proc.returncode

    def _finish(self) -> None:
        for reader in self._readers:
            reader.join(5)
        with self._changed:
            if not self._log.closed:
                self._log.write(f"# exited {self.proc.returncode}\n")
                self._log.close()


class Lab:
    """Namespaces, bridges and processes for one test; :meth:`close` (or leaving ``with``) removes them all.

    ``workdir`` receives one log file per host (``<host>.log``) and is every process's working directory.
    """

    def __init__(self, workdir: Path, *, prefix: str = PREFIX) -> None:
        reason = missing_requirements()
        if reason:
            raise RuntimeError(reason)
        cleanup_stale(prefix)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.tag = f"{prefix}-{os.getpid()}-{secrets.token_hex(3)}"
        self.namespaces: list[str] = []
        self.lans: dict[str, Lan] = {}
        self.routers: list[Router] = []
        self.processes: list[NodeProcess] = []
        self._env = {k: v for k, v in os.environ.items() if not k.startswith("BUTTER_")}
        self._env.update(PYTHONUNBUFFERED="1", NO_COLOR="1", TERM="dumb", COLUMNS="200")

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- topology -----------------------------------------------------------------------------------------

    def _namespace(self, role: str) -> str:
        name = f"{self.tag}-{role}"
        run("ip", "netns", "add", name)
        self.namespaces.append(name)
        ip("link", "set", "lo", "up", ns=name)
        # quiet namespaces: no IPv6 chatter (router solicitations, MLD) on the test links
        run("ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", check=False)
        run("ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1", check=False)
        return name

    def add_lan(self, name: str, hosts: int = 0, subnet: str = "10.77.0.0/24") -> Lan:
        """A LAN called ``name`` (a letter or two) on private ``subnet``, with ``hosts`` hosts."""
        if name in self.lans:
            raise ValueError(f"LAN {name!r} exists")
        switch = self._namespace(f"sw{name}")
        ip("link", "add", "br0", "type", "bridge", "mcast_snooping", "0", "stp_state", "0", ns=switch)
        ip("link", "set", "br0", "up", ns=switch)
        lan = Lan(name, ipaddress.ip_network(subnet), switch)  # type: ignore[arg-type]
        self.lans[name] = lan
        for _ in range(hosts):
            self.add_host(lan)
        return lan

    def _plug(self, lan: Lan, port: str, ns: str, ifname: str, address: str) -> None:
        """A veth from bridge port ``port`` in the LAN's switch to ``ifname`` (with ``address``) in ``ns``."""
        ip("link", "add", port, "type", "veth", "peer", "name", ifname, "netns", ns, ns=lan.switch)
        ip("link", "set", port, "master", "br0", "up", ns=lan.switch)
        ip("addr", "add", f"{address}/{lan.prefixlen}", "dev", ifname, ns=ns)
        ip("link", "set", ifname, "up", ns=ns)

    def add_host(self, lan: Lan, name: str | None = None, address: str | None = None) -> Host:
        """A host namespace on ``lan`` (address: next free from ``.10``)."""
        index = len(lan.hosts)
        name = name or f"{lan.name}{index}"
        if address is None:
            address = str(lan.network.network_address + lan._next_host)
            lan._next_host += 1
        ns = self._namespace(name)
        self._plug(lan, f"h{index}", ns, "eth0", address)
        ip("route", "add", "224.0.0.0/4", "dev", "eth0", ns=ns)
        if lan.gateway:
            ip("route", "add", "default", "via", lan.gateway, ns=ns)
        else:
            ip("route", "add", "default", "dev", "eth0", ns=ns)  # on-link: gives nodes an outbound address
        host = Host(self, name, ns, address, lan)
        lan.hosts.append(host)
        return host

    def add_router(self, lans: Sequence[Lan], name: str = "rt") -> Router:
        """A router with address ``.1`` on each of ``lans`` and IPv4 forwarding on; every host of those
        LANs (present and future) gets it as default gateway. Multicast is not forwarded."""
        ns = self._namespace(name)
        run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        addresses = {}
        for lan in lans:
            gateway = str(lan.network.network_address + 1)
            self._plug(lan, "rt", ns, f"lan{lan.name}"[:15], gateway)
            lan.gateway = gateway
            addresses[lan.name] = gateway
            for host in lan.hosts:
                ip("route", "replace", "default", "via", gateway, ns=host.ns)
        router = Router(ns, addresses)
        self.routers.append(router)
        return router

    def add_nat_router(self, inside: Lan, outside: Lan, name: str | None = None) -> NatRouter:
        """A :class:`NatRouter` between ``inside`` (it becomes the default gateway of its hosts, present and
        future) and ``outside`` (its WAN address is the next free host address there; its default route is
        the outside LAN's gateway, or on-link)."""
        ns = self._namespace(name or f"nat{inside.name}")
        run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        gateway = str(inside.network.network_address + 1)
        self._plug(inside, "rt", ns, "lan", gateway)
        inside.gateway = gateway
        for host in inside.hosts:
            ip("route", "replace", "default", "via", gateway, ns=host.ns)
        wan_ip = str(outside.network.network_address + outside._next_host)
        outside._next_host += 1
        self._plug(outside, f"n{inside.name}"[:15], ns, "wan", wan_ip)
        if outside.gateway:
            ip("route", "add", "default", "via", outside.gateway, ns=ns)
        else:
            ip("route", "add", "default", "dev", "wan", ns=ns)
        rules = [
            ("-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE"),
            ("-A", "FORWARD", "-i", "wan", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED,DNAT", "-j", "ACCEPT"),
            ("-A", "FORWARD", "-i", "wan", "-j", "DROP"),
            ("-A", "INPUT", "-i", "wan", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"),
            ("-A", "INPUT", "-i", "wan", "-j", "DROP"),
        ]
        for rule in rules:
            run("ip", "netns", "exec", ns, "iptables", *rule)
        router = NatRouter(ns, {inside.name: gateway, outside.name: wan_ip}, inside, outside, wan_ip)
        self.routers.append(router)
        return router

    # -- processes ----------------------------------------------------------------------------------------

    def start(
        self, host: Host, argv: Sequence[str], *, port: int = DEFAULT_PORT, log_name: str | None = None
    ) -> NodeProcess:
        """Start ``argv`` in ``host``'s namespace; output goes to ``<workdir>/<log_name or host>.log``."""
        process = NodeProcess(host, argv, port, self.workdir / f"{log_name or host.name}.log", self._env)
        self.processes.append(process)
        return process

    def start_node(self, host: Host, *args: str, port: int = DEFAULT_PORT, log_level: str = "INFO") -> NodeProcess:
        """``butter node --port PORT --log-level LEVEL ARGS...`` on ``host`` (bound to every interface, so it
        advertises its ``eth0`` address; no peer configured: discovery is whatever the settings default to)."""
        argv = [*butter_command(), "node", "--port", str(port), "--log-level", log_level, *args]
        return self.start(host, argv, port=port)

    def query(self, addresses: Sequence[str], *, via: Host, timeout: float = 2.0) -> dict[str, dict[str, Any]]:
        """Ask each node (``HOST:PORT``) for its id and known hosts, from ``via``'s namespace (one process).

        Returns ``{address: {"id", "known_hosts", "known_by", "peers": [{"id", "address"}]}}``, or
        ``{address: {"error": text}}`` for a node that could not be asked.
        """
        result = via.exec(
            sys.executable, str(PROBE), "--host", via.ip, "--timeout", str(timeout), *addresses,
            timeout=timeout * 4 + 60,  # a fresh interpreter importing butter: slow on a loaded machine
        )
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    def butter_peers(self, address: str, *, via: Host, timeout: float = 2.0) -> dict[str, Any]:
        """``butter peers ADDRESS --json`` run in ``via``'s namespace (the CLI's view of one node)."""
        result = via.exec(
            *butter_command(), "peers", address, "--json", "--host", via.ip, "--timeout", str(timeout),
            timeout=timeout * 10 + 60,
        )
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    # -- teardown -----------------------------------------------------------------------------------------

    def stop_all(self) -> None:
        """SIGTERM every process still running, wait up to the grace period, SIGKILL the rest."""
        running = [p for p in self.processes if p.alive]
        for process in running:
            process.signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for process in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.proc.wait(max(0.0, deadline - time.monotonic()))
        for process in self.processes:
            process.stop(grace=0.0)

    def close(self) -> None:
        try:
            self.stop_all()
        finally:
            for name in reversed(self.namespaces):
                _delete_namespace(name)
            self.namespaces.clear()

    def logs(self) -> Iterator[Path]:
        return iter(sorted(self.workdir.glob("*.log")))
