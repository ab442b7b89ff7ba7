"""The fault scenario on real hosts, shared by ``test_faults.py`` and ``benchmarks/faults.py``.

Five ``butter node`` processes (``fault_node.py node``: TCP with TLS, multicast discovery, ``diversity`` host
management, ``pcg`` persistence, all at their default timers but the host refresh, every 2 s without backing
off, and exchange, every 2 s) on one LAN, plus an observer host whose watcher (``fault_node.py watch``) asks
every node four times a second for its known hosts and the replicas in view of each group it keeps. Faults are
made with iptables and tc inside the node hosts' namespaces (this kernel has no ``tc netem``):

* loss: ``-m statistic --mode random --probability P -j DROP`` on every node host's INPUT (the observer's
  packets are exempt, so measuring does not suffer from it);
* rate: a ``tbf`` qdisc on one node's ``eth0``;
* partition: ``DROP`` rules on INPUT for every address of the other side, in both sides' hosts; healing
  deletes them;
* kills: ``SIGKILL`` to node processes.

Every wait returns the time (``time.monotonic()``) at which the watcher's first round showing the condition
arrived, so recovery times are measured from the fault to that round, to within a watcher round (0.25 s).

:func:`run_scenario` is the whole run: loss and a slow link, the overlay forms, three items are stored and
reach 3 replicas, the LAN is split {0,1} / {2,3,4} until each side has forgotten the other and kept its own
replicas, the split heals, then two holders of the first item are killed; it returns :class:`FaultTimes`.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .harness import Host, Lab, NodeProcess, butter_command, missing_requirements

__all__ = ["FaultBench", "FaultTimes", "Snapshot", "missing_fault_requirements", "run_scenario"]

FAULT_NODE = Path(__file__).with_name("fault_node.py")
PORT = 7000
TARGET = 3  # pcg's default replicas
START_TIMEOUT = 60.0
RULE_TAG = "butter-fault"  # iptables comment on the rules this kit adds
HOST_OPTIONS = {"refresh_interval": 2.0, "refresh_max_interval": 2.0, "exchange_interval": 2.0}
MINORITY, MAJORITY = (0, 1), (2, 3, 4)
LOSS = 0.10
RATE = "8mbit"  # node 4's outgoing link
ITEMS = 3
PHASE_TIMEOUT = 60.0  # seconds any phase may take before the run fails

Snapshot = dict[str, dict[str, Any]]  # node address -> its fault-status, or {"error": text}


def missing_fault_requirements() -> str | None:
    """Why the fault suite cannot run here (not root; no ``ip``, ``iptables`` or ``tc``), or ``None``."""
    reason = missing_requirements()
    if reason:
        return reason
    for command, package in (("iptables", "iptables"), ("tc", "iproute2")):
        if shutil.which(command) is None:
            return f"the fault suite needs the `{command}` command (Debian package {package})"
    return None


class FaultBench:
    """The LAN, its nodes and the watcher of one run (module docstring); ``nodes`` node hosts."""

    def __init__(self, lab: Lab, nodes: int = 5, subnet: str = "10.78.0.0/24") -> None:
        self.lab = lab
        self.lan = lab.add_lan("f", nodes, subnet=subnet)
        self.hosts: list[Host] = list(self.lan.hosts)
        self.observer = lab.add_host(self.lan, name="obs")
        self.nodes: list[NodeProcess] = []
        self.ids: dict[str, str] = {}  # address -> node id
        self.killed: set[str] = set()  # addresses of killed nodes
        self.watcher: NodeProcess | None = None
        self._partition: list[tuple[Host, str]] = []

    # -- processes ----------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start every node and the watcher; return once every node listens."""
        for host in self.hosts:
            argv = [
                sys.executable, str(FAULT_NODE), "node", "--port", str(PORT),
                "--host_manager.driver", "diversity", "--host_manager.options", json.dumps(HOST_OPTIONS),
            ]
            self.nodes.append(self.lab.start(host, argv, port=PORT))
        for node in self.nodes:
            self.ids[node.address] = node.wait_started(START_TIMEOUT)
        argv = [sys.executable, str(FAULT_NODE), "watch", "--host", self.observer.ip,
                *[node.address for node in self.nodes]]
        self.watcher = self.lab.start(self.observer, argv, port=0, log_name="watcher")

    @property
    def alive(self) -> list[NodeProcess]:
        return [node for node in self.nodes if node.address not in self.killed]

    def kill(self, addresses: Sequence[str]) -> float:
        """SIGKILL the nodes at ``addresses``; returns when."""
        for node in self.nodes:
            if node.address in addresses:
                node.kill()
                self.killed.add(node.address)
        return time.monotonic()

    def put(self, data: bytes, via: NodeProcess, name: str) -> str:
        """Store ``data`` through node ``via`` (``butter put`` from the observer); returns the content id."""
        path = self.lab.workdir / name
        path.write_bytes(data)
        result = self.observer.exec(
            *butter_command(), "put", str(path), "--node", via.address, "--host", self.observer.ip, timeout=90
        )
        return result.stdout.strip().split()[-1]

    def put_items(self, count: int, seed: int = 1) -> list[str]:
        """``count`` items of 5-20 KiB, stored through nodes 0, 2, 4, ... in turn."""
        rng = random.Random(seed)
        return [
            self.put(rng.randbytes(rng.randint(5_000, 20_000)), self.nodes[(2 * i) % len(self.nodes)], f"item{i}")
            for i in range(count)
        ]

    # -- faults -------------------------------------------------------------------------------------------

    def iptables(self, host: Host, *rule: str) -> None:
        host.exec("iptables", *rule, "-m", "comment", "--comment", RULE_TAG)

    def lose(self, probability: float) -> None:
        """Drop incoming packets at random on every node host, except the observer's."""
        for host in self.hosts:
            self.iptables(host, "-A", "INPUT", "-s", self.observer.ip, "-j", "ACCEPT")
            self.iptables(host, "-A", "INPUT", "-m", "statistic", "--mode", "random", "--probability",
                          str(probability), "-j", "DROP")

    def limit_rate(self, host: Host, rate: str) -> None:
        """Shape ``host``'s outgoing traffic to ``rate`` (e.g. ``"4mbit"``) with a token bucket."""
        host.exec("tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", rate, "burst", "32kbit",
                  "latency", "400ms")

    def partition(self, side: Sequence[int]) -> float:
        """Cut node hosts ``side`` (indexes) off the others, both ways; returns when."""
        inside = [self.hosts[i] for i in side]
        outside = [h for h in self.hosts if h not in inside]
        for mine, theirs in ((inside, outside), (outside, inside)):
            for host in mine:
                for other in theirs:
                    self.iptables(host, "-I", "INPUT", "-s", other.ip, "-j", "DROP")
                    self._partition.append((host, other.ip))
        return time.monotonic()

    def heal(self) -> float:
        """Delete the partition's rules; returns when."""
        for host, address in self._partition:
            self.iptables(host, "-D", "INPUT", "-s", address, "-j", "DROP")
        self._partition.clear()
        return time.monotonic()

    # -- observation ----------------------------------------------------------------------------------------

    def wait(
        self, condition: Callable[[Snapshot], bool], timeout: float, what: str, since: float | None = None
    ) -> float:
        """When the first watcher round arriving at or after ``since`` (default: now) met ``condition``; raises
        ``AssertionError`` naming ``what`` (with the last round seen) ``timeout`` seconds after ``since``."""
        assert self.watcher is not None
        since = time.monotonic() if since is None else since
        deadline = since + timeout
        checked = 0
        last: Snapshot = {}
        while True:
            lines = [line for line in list(self.watcher.lines) if line.at >= since and line.text.startswith("{")]
            for line in lines[checked:]:
                last = json.loads(line.text)["nodes"]
                if condition(last):
                    return line.at
            checked = len(lines)
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {timeout} s: {what}; last round: {json.dumps(last)[:3000]}")
            time.sleep(0.1)

    def latest(self) -> Snapshot:
        """The watcher's last round."""
        assert self.watcher is not None
        lines = [line for line in list(self.watcher.lines) if line.text.startswith("{")]
        return json.loads(lines[-1].text)["nodes"] if lines else {}

    def whole(self, snapshot: Snapshot) -> bool:
        """Every live node knows every other live node."""
        alive = {node.address for node in self.alive}
        return all(set(snapshot.get(a, {}).get("peers", ())) >= {self.ids[b] for b in alive - {a}} for a in alive)

    def split(self, side: Sequence[int]) -> Callable[[Snapshot], bool]:
        """No live node knows a node of the other side of the partition ``side``."""
        inside = {self.nodes[i].address for i in side}

        def condition(snapshot: Snapshot) -> bool:
            for node in self.alive:
                others = {self.ids[a] for a in self.ids if (a in inside) != (node.address in inside)}
                if set(snapshot.get(node.address, {}).get("peers", ())) & others:
                    return False
            return True

        return condition

    def holders(self, snapshot: Snapshot, content_id: str) -> dict[str, int]:
        """Live node address -> replicas in its view, for the nodes keeping ``content_id``."""
        return {node.address: snapshot[node.address]["groups"][content_id] for node in self.alive
                if content_id in snapshot.get(node.address, {}).get("groups", {})}

    def at_target(self, content_ids: Sequence[str], sides: Sequence[Sequence[int]] = ()) -> Callable[[Snapshot], bool]:
        """Every item is kept by ``TARGET`` live nodes (or, given the ``sides`` of a partition, by as many of
        each side's nodes as it has room for, on each side that keeps it), and each keeper's view agrees."""
        parts = [{self.nodes[i].address for i in side} for side in sides] or [{n.address for n in self.nodes}]

        def condition(snapshot: Snapshot) -> bool:
            for content_id in content_ids:
                holders = self.holders(snapshot, content_id)
                for part in parts:
                    mine = {a: n for a, n in holders.items() if a in part}
                    wanted = min(TARGET, len(part - self.killed))
                    if (mine or len(parts) == 1) and (len(mine) != wanted or set(mine.values()) != {wanted}):
                        return False
            return True

        return condition


@dataclass(frozen=True)
class FaultTimes:
    """Seconds from each fault to the recovery the watcher saw (module docstring), and what the split did."""

    overlay_formed: float  # from the first node start to every node knowing every other
    stored_at_target: float  # from the last put to every item at 3 replicas
    split_seen: float  # from the partition to no node knowing one of the other side
    sides_recruited: float  # from the partition to each side keeping its items at its own target
    replicas_while_split: list[int]  # per item, the live nodes keeping it at the end of the split
    first_contact: float  # from the heal to a node knowing one of the other side again
    overlay_whole: float  # from the heal to every node knowing every other
    healed_at_target: float  # from the heal to every item back at 3 replicas whose views agree
    killed_at_target: float  # from killing two holders of the first item to every item at target again


def run_scenario(bench: FaultBench) -> FaultTimes:
    """The scenario of the module docstring on a fresh bench; every phase within ``PHASE_TIMEOUT`` seconds."""
    bench.lose(LOSS)
    bench.limit_rate(bench.hosts[4], RATE)
    begun = time.monotonic()
    bench.start()
    formed = bench.wait(bench.whole, PHASE_TIMEOUT, "the overlay forms", since=begun)
    items = bench.put_items(ITEMS)
    stored = time.monotonic()
    at_target = bench.wait(bench.at_target(items), PHASE_TIMEOUT, "every item reaches 3 replicas", since=stored)

    cut = bench.partition(MINORITY)
    split = bench.wait(bench.split(MINORITY), PHASE_TIMEOUT, "each side forgets the other", since=cut)
    recruited = bench.wait(bench.at_target(items, (MINORITY, MAJORITY)), PHASE_TIMEOUT,
                           "each side keeps its items at its own target", since=cut)
    while_split = [len(bench.holders(bench.latest(), content_id)) for content_id in items]

    healed = bench.heal()
    contact = bench.wait(lambda s: not bench.split(MINORITY)(s), PHASE_TIMEOUT, "the sides meet again", since=healed)
    whole = bench.wait(bench.whole, PHASE_TIMEOUT, "the overlay is whole again", since=healed)
    back = bench.wait(bench.at_target(items), PHASE_TIMEOUT, "every item is back at 3 replicas", since=healed)

    killed = bench.kill(sorted(bench.holders(bench.latest(), items[0]))[:2])
    replaced = bench.wait(bench.at_target(items), PHASE_TIMEOUT, "the survivors hold every item again", since=killed)
    return FaultTimes(
        overlay_formed=formed - begun, stored_at_target=at_target - stored, split_seen=split - cut,
        sides_recruited=recruited - cut, replicas_while_split=while_split, first_contact=contact - healed,
        overlay_whole=whole - healed, healed_at_target=back - healed, killed_at_target=replaced - killed,
    )
