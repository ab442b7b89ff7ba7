"""LAN discovery on real separate hosts: ``butter node`` processes in network namespaces (issue 3).

Every node runs with the default discovery (multicast) and no address configured anywhere: no ``--peer``,
no ``--host`` (each binds ``0.0.0.0`` and advertises its ``eth0`` address). Multicast only ever flows on the
namespaces' own bridges. Host management refreshes every second, without backing off
(``refresh_max_interval`` = ``refresh_interval``), so deaths are noticed fast.

Liveness bound for a SIGKILLed node: its port then refuses connections, so it is removed at its first failed
refresh (``PeerGone``, whatever ``max_failures``): ``refresh_interval × 1.2 (jitter) + quality_timeout + 1 s
margin = 1.2 + 3 + 1 = 5.2 s``. In these namespaces the dead port answers with a reset at once, so it is
usually about one refresh interval.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from .harness import Host, Lab, NodeProcess

pytestmark = pytest.mark.netns

REFRESH = 1.0  # seconds between host-quality refreshes
MAX_FAILURES = 1
QUALITY_TIMEOUT = 3.0
LIVENESS_BOUND = REFRESH * 1.2 * MAX_FAILURES + QUALITY_TIMEOUT + 1.0
# --host_manager.driver is repeated because a partial --host_manager.options alone is refused by the settings
FAST = (
    "--host_manager.driver", "diversity",
    "--host_manager.options",
    f'{{"refresh_interval": {REFRESH}, "refresh_max_interval": {REFRESH}, "exchange_interval": 2.0}}',
)
START_TIMEOUT = 60.0  # many Python processes importing at once on a small CI machine


def start_nodes(lab: Lab, hosts: Sequence[Host], *extra: str) -> list[NodeProcess]:
    nodes = [lab.start_node(host, *FAST, *extra) for host in hosts]
    for node in nodes:
        node.wait_started(START_TIMEOUT)
        assert node.matches(r"multicast discovery on 239\.255\.42\.99:9999 via 0\.0\.0\.0 ")
    return nodes


def wait_until(
    lab: Lab, nodes: Sequence[NodeProcess], via: Host, done: Callable[[dict[str, dict[str, Any]]], bool],
    timeout: float,
) -> dict[str, dict[str, Any]]:
    """Query ``nodes`` from ``via`` until ``done(views)``; returns the last views."""
    deadline = time.monotonic() + timeout
    while True:
        views = lab.query([n.address for n in nodes], via=via)
        if done(views):
            return views
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached in {timeout} s; last views: {views}")
        time.sleep(0.3)


def known(view: dict[str, Any]) -> set[str]:
    return {peer["id"] for peer in view.get("peers", [])}


def full_view(nodes: Sequence[NodeProcess]) -> Callable[[dict[str, dict[str, Any]]], bool]:
    def done(views: dict[str, dict[str, Any]]) -> bool:
        ids = {views[n.address].get("id") for n in nodes}
        return all(known(views[n.address]) == ids - {views[n.address].get("id")} for n in nodes)

    return done


def test_eight_hosts_on_one_lan_find_each_other(lab: Lab) -> None:
    lan = lab.add_lan("a", 8)
    observer = lab.add_host(lan, name="aobs")
    nodes = start_nodes(lab, lan.hosts[:8])
    views = wait_until(lab, nodes, observer, full_view(nodes), timeout=30)
    for node in nodes:
        view = views[node.address]
        assert view["id"] == node.node_id
        assert view["known_hosts"] == 7
        assert {peer["address"] for peer in view["peers"]} == {n.address for n in nodes} - {node.address}
    # nobody is lonely any more, so nobody keeps pinging: every node sent only a few pings in all
    lab.stop_all()
    for node in nodes:
        [summary] = node.matches(r"multicast discovery stopped: ")
        stats = dict(part.split("=") for part in summary.text.split("stopped: ")[1].split())
        assert 1 <= int(stats["pings_sent"]) <= 5, summary.text
        assert int(stats["dropped"]) == 0 and int(stats["answers_failed"]) == 0, summary.text


def test_a_killed_node_disappears_then_rejoins_when_restarted(lab: Lab) -> None:
    lan = lab.add_lan("a", 8)
    observer = lab.add_host(lan, name="aobs")
    data = lab.workdir / "data"
    nodes = [
        lab.start_node(host, *FAST, "--data-dir", str(data / host.name)) for host in lan.hosts[:8]
    ]  # a data dir keeps the node id across the restart
    for node in nodes:
        node.wait_started(START_TIMEOUT)
    wait_until(lab, nodes, observer, full_view(nodes), timeout=30)

    victim, others = nodes[3], nodes[:3] + nodes[4:]
    victim_id = victim.node_id
    assert victim_id is not None
    killed_at = time.monotonic()
    victim.kill()
    gone = [other.wait_for(rf"peer left: {victim_id[:8]} ", LIVENESS_BOUND + 2, since=killed_at) for other in others]
    slowest = max(line.at for line in gone) - killed_at
    print(f"SIGKILLed node removed by all {len(others)} peers after {slowest:.2f} s (bound {LIVENESS_BOUND} s)")
    assert slowest <= LIVENESS_BOUND, f"last removal after {slowest:.2f} s, bound {LIVENESS_BOUND} s"
    views = lab.query([n.address for n in others], via=observer)
    assert all(victim_id not in known(views[n.address]) and len(known(views[n.address])) == 6 for n in others)

    restarted = lab.start_node(victim.host, *FAST, "--data-dir", str(data / victim.host.name))
    assert restarted.wait_started(START_TIMEOUT) == victim_id
    everyone = [*others, restarted]
    wait_until(lab, everyone, observer, full_view(everyone), timeout=20)


def test_a_host_outside_the_lan_is_not_found_by_multicast(lab: Lab) -> None:
    inside = lab.add_lan("a", 3, subnet="10.77.0.0/24")
    outside = lab.add_lan("b", 1, subnet="10.78.0.0/24")
    lab.add_router([inside, outside])  # unicast is routed between the subnets; multicast is not
    observer = lab.add_host(inside, name="aobs")
    lan_nodes = start_nodes(lab, inside.hosts[:3])
    far = outside.hosts[0]
    # two nodes on the far host: they share the group port and find each other, but nobody across the router
    far_nodes = [*start_nodes(lab, [far]), lab.start_node(far, *FAST, port=7001)]
    far_nodes[1].wait_started(START_TIMEOUT)
    wait_until(lab, lan_nodes, observer, full_view(lan_nodes), timeout=30)
    views = wait_until(lab, far_nodes, observer, full_view(far_nodes), timeout=30)  # reachable by unicast
    far_ids = {views[n.address]["id"] for n in far_nodes}
    time.sleep(3.0)  # several more ping rounds would have crossed by now if multicast could
    views = lab.query([n.address for n in lan_nodes + far_nodes], via=observer)
    lan_ids = {views[n.address]["id"] for n in lan_nodes}
    for node in lan_nodes:
        assert known(views[node.address]) == lan_ids - {views[node.address]["id"]}
    for node in far_nodes:
        assert known(views[node.address]) == far_ids - {views[node.address]["id"]}


def test_a_node_listening_on_loopback_pings_on_loopback_only(lab: Lab) -> None:
    lan = lab.add_lan("a", 2)
    observer = lab.add_host(lan, name="aobs")
    lan_nodes = start_nodes(lab, lan.hosts[:2])
    # on host a0, beside the LAN node: two loopback-only nodes, which can only be reached from a0 itself
    local = [lab.start_node(lan.hosts[0], *FAST, "--host", "127.0.0.1", port=port) for port in (7100, 7101)]
    for node in local:
        node.wait_started(START_TIMEOUT)
        assert node.matches(r"multicast discovery on .* via 127\.0\.0\.1 ")
    wait_until(lab, lan_nodes, observer, full_view(lan_nodes), timeout=30)
    time.sleep(2.0)
    views = lab.query([n.address for n in lan_nodes], via=observer)
    for node in lan_nodes:  # the LAN never heard of the loopback nodes
        assert {peer["address"] for peer in views[node.address]["peers"]} <= {n.address for n in lan_nodes}
    deadline = time.monotonic() + 20  # a loaded machine may start the second loopback node late
    while True:
        local_views = lab.query(["127.0.0.1:7100", "127.0.0.1:7101"], via=lan.hosts[0])
        if [len(v["peers"]) for v in local_views.values()] == [1, 1] or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert [len(v["peers"]) for v in local_views.values()] == [1, 1]  # but they found each other on loopback
    assert all(p["address"].startswith("127.0.0.1:") for v in local_views.values() for p in v["peers"])
