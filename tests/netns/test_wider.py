"""Wider discovery on real routed networks with NAT (issue 6): ``butter node`` processes in namespaces.

Topology: LAN a (10.1.0.0/24) and LAN b (10.2.0.0/24), each behind its own NAT router (iptables
MASQUERADE, a stateful firewall that silently drops anything unsolicited), and a "public" segment
(203.0.113.0/24, a documentation prefix that exists only inside these namespaces) holding the routers'
WAN sides and an ambassador. Multicast discovery runs everywhere, so each LAN finds itself; only the
ambassador can bring the two LANs together.

Shown here: multicast finds nothing across the routers; with the ambassador, nodes of a and b come to know
each other; an item stored in a is retrieved from b through a port-forwarded node (DNAT), through the relay,
and directly over a hole-punched connection; a relayed circuit over its byte limit is closed; killing the
ambassador does not break the port-forwarded and hole-punched links already made.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from .harness import Host, Lab, NatRouter, NodeProcess, butter_command, missing_nat_requirements

pytestmark = pytest.mark.netns

PORT = 7000
SERVICE_PORT = 7001
START_TIMEOUT = 60.0
WIDER_NODE = Path(__file__).with_name("wider_node.py")
FAST = (
    "--host_manager.driver", "diversity",
    "--host_manager.options", '{"refresh_interval": 1.0, "exchange_interval": 1.0, "max_failures": 2}',
)


@pytest.fixture(autouse=True)
def _needs_nat() -> None:
    reason = missing_nat_requirements()
    if reason:
        pytest.skip(reason)


def client_args(ambassadors: Sequence[str] = (), **options: Any) -> tuple[str, ...]:
    opts = {"ambassadors": list(ambassadors), "interval": 1.0, "exchange_timeout": 2.0, **options}
    return (
        *FAST,
        "--discovery.drivers", '["multicast", "ambassador"]',
        "--discovery.options", json.dumps({"ambassador": opts}),
    )


def ambassador_args(**options: Any) -> tuple[str, ...]:
    opts = {"serve": True, "service_port": SERVICE_PORT, "relay_ports": "7100-7131", "exchange_timeout": 2.0, **options}
    return (*FAST, "--discovery.drivers", '["ambassador"]', "--discovery.options", json.dumps({"ambassador": opts}))


class Net:
    """Two NATed LANs and a public segment with an ambassador host."""

    def __init__(self, lab: Lab, a_hosts: int, b_hosts: int) -> None:
        self.lab = lab
        self.a = lab.add_lan("a", a_hosts, subnet="10.1.0.0/24")
        self.b = lab.add_lan("b", b_hosts, subnet="10.2.0.0/24")
        self.aobs = lab.add_host(self.a, name="aobs")
        self.bobs = lab.add_host(self.b, name="bobs")
        self.public = lab.add_lan("p", 1, subnet="203.0.113.0/24")
        self.ra: NatRouter = lab.add_nat_router(self.a, self.public)
        self.rb: NatRouter = lab.add_nat_router(self.b, self.public)
        self.amb_host = self.public.hosts[0]
        self.amb_address = f"{self.amb_host.ip}:{PORT}"

    def start(self, host: Host, *args: str) -> NodeProcess:
        return self.lab.start_node(host, *args, port=PORT)

    def start_ambassador(self, **options: Any) -> NodeProcess:
        node = self.start(self.amb_host, *ambassador_args(**options))
        node.wait_started(START_TIMEOUT)
        return node

    def start_retriever(self, host: Host, *args: str) -> NodeProcess:
        argv = [sys.executable, str(WIDER_NODE), host.name, "--port", str(PORT), *args]
        return self.lab.start(host, argv, port=PORT)

    def peers(self, node: NodeProcess, via: Host) -> dict[str, str]:
        """``{node id: address}`` of ``node``'s known hosts."""
        view = self.lab.query([node.address], via=via)[node.address]
        return {p["id"]: p["address"] for p in view.get("peers", [])}

    def put(self, node: NodeProcess, via: Host, data: bytes, name: str) -> str:
        path = self.lab.workdir / name
        path.write_bytes(data)
        result = via.exec(*butter_command(), "put", str(path), "--node", node.address, "--host", via.ip, timeout=60)
        return result.stdout.strip().split()[-1]

    def get(self, cid: str, node: NodeProcess, via: Host, name: str, *, check: bool = True) -> bytes | None:
        out = self.lab.workdir / name
        result = via.exec(
            *butter_command(), "get", cid, "--node", node.address, "--host", via.ip, "-o", str(out),
            "--timeout", "5", check=False, timeout=90,
        )
        (self.lab.workdir / f"{name}.log").write_text(result.stdout + result.stderr)
        assert result.returncode == 0 or not check, result.stderr[-2000:]
        return out.read_bytes() if result.returncode == 0 else None


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {timeout} s: {what}")
        time.sleep(0.3)


def test_two_nated_lans_meet_through_an_ambassador(lab: Lab) -> None:
    net = Net(lab, a_hosts=2, b_hosts=1)
    net.ra.forward_port(PORT, net.a.hosts[0])  # a0 is port-forwarded; a1 and b0 are not reachable
    a0 = net.start(net.a.hosts[0], *client_args([net.amb_address]))
    a1 = net.start(net.a.hosts[1], *client_args())  # configured with no ambassador: learns it from a0
    b0 = net.start(net.b.hosts[0], *client_args([net.amb_address]))
    ids = {node: node.wait_started(START_TIMEOUT) for node in (a0, a1, b0)}

    # multicast alone: each LAN finds itself, nothing crosses the routers
    wait_until(lambda: set(net.peers(a0, net.aobs)) == {ids[a1]}, 30, "a0 and a1 meet by multicast")
    time.sleep(3.0)
    assert net.peers(b0, net.bobs) == {}
    assert set(net.peers(a1, net.aobs)) == {ids[a0]}

    amb = net.start_ambassador()
    public_a0 = f"{net.ra.wan_ip}:{PORT}"
    wait_until(lambda: net.peers(b0, net.bobs).get(ids[a0]) == public_a0, 30, "b0 knows a0 at its public address")
    wait_until(lambda: ids[b0] in net.peers(a0, net.aobs), 30, "a0 knows b0 (relayed)")
    assert a0.matches(rf"sees this node at {net.ra.wan_ip} .*reachable at {public_a0}")
    b0.wait_for(r"relay reservation at ambassador", 15)
    b0.wait_for(r"not reachable from outside", 30)  # the dial-back ends by timing out: after the relay is in use
    # no UPnP gateway in these namespaces: the attempt is logged and the node goes on
    b0.wait_for(rf"UPnP: port {PORT} not mapped: .*; going on without it", 15)
    assert b0.alive
    relayed_b0 = net.peers(a0, net.aobs)[ids[b0]]
    assert relayed_b0.startswith(f"{net.amb_host.ip}:71"), relayed_b0
    # a1 was never configured with the ambassador: it found it in its neighbours' known hosts
    a1.wait_for(rf"ambassador {net.amb_address} sees this node at {net.ra.wan_ip} ", 30)
    assert not amb.matches(r"Traceback")

    data = random.Random(5).randbytes(20 * 1024)  # 5 distinct blocks
    cid = net.put(a0, net.aobs, data, "item.bin")
    assert net.get(cid, b0, net.bobs, "item.out") == data

    # the ambassador dies: the port-forwarded link stays (b0 keeps a0 through several refreshes)
    killed = time.monotonic()
    amb.kill()
    time.sleep(5.0)
    assert net.peers(b0, net.bobs).get(ids[a0]) == public_a0
    assert not b0.matches(rf"peer left: {ids[a0][:8]} ", since=killed)
    assert net.get(cid, b0, net.bobs, "item2.out") == data


def test_relay_limits_and_hole_punching(lab: Lab) -> None:
    net = Net(lab, a_hosts=1, b_hosts=2)
    amb = net.start_ambassador(circuit_bytes=96 * 1024)
    one_replica = ("--persistence.driver", "pcg", "--persistence.options", '{"replicas": 1}')
    a0 = net.start(net.a.hosts[0], *client_args([net.amb_address]), *one_replica)
    b0 = net.start_retriever(net.b.hosts[0], *client_args([net.amb_address], punch=False))  # relay only
    b1 = net.start_retriever(net.b.hosts[1], *client_args([net.amb_address]))  # punches
    ids = {node: node.wait_started(START_TIMEOUT) for node in (a0, b0, b1)}

    line = a0.wait_for(r"relay reservation at ambassador \S+: relayed address (\S+) ", 30)
    relayed_a0 = line.text.split("relayed address ")[1].split()[0]
    wait_until(lambda: net.peers(b0, net.bobs).get(ids[a0]) == relayed_a0, 30, "b0 knows a0 by its relayed address")
    b1.wait_for(rf"hole punch to {relayed_a0} succeeded", 30)

    rng = random.Random(6)
    small = rng.randbytes(10 * 1024)
    large = rng.randbytes(200 * 1024)  # 50 distinct blocks: more than a circuit may carry
    small_cid = net.put(a0, net.aobs, small, "small.bin")
    large_cid = net.put(a0, net.aobs, large, "large.bin")

    # through the relay: b0 knows a0 only by its relayed address and does not punch
    (lab.workdir / "b0.get").write_text(small_cid)
    b0.wait_for(rf"retrieved {small_cid} {len(small)}", 30)
    assert (lab.workdir / "b0.out").read_bytes() == small
    # a circuit that exceeds its byte budget is closed by the ambassador
    (lab.workdir / "b0.get").write_text(large_cid)
    amb.wait_for(r"relay circuit \d+ .* closed: bytes limit exceeded", 30)

    # the ambassador dies; b1's hole-punched connection to a0 carries the large item directly
    amb.kill()
    time.sleep(2.0)
    (lab.workdir / "b1.get").write_text(large_cid)
    b1.wait_for(rf"retrieved {large_cid} {len(large)}", 60)
    assert (lab.workdir / "b1.out").read_bytes() == large
    assert not b1.matches(rf"peer left: {ids[a0][:8]} ")
