"""The churn simulator with PCG (virtual clock, memory transport): small runs of the report's churn experiment."""

from butter.testing.sim import ChurnConfig, run_churn_sync

SMALL = ChurnConfig(nodes=40, death_rate=0.03, churn=20.0, settle=20.0, seed=7)


def test_pcg_keeps_every_item_through_heavy_churn() -> None:
    result = run_churn_sync(SMALL)
    assert result.deaths >= 10  # about 0.03 x 40 x 20 = 24 deaths
    assert result.items == 40
    assert result.retention >= 0.975  # at most one item of 40 lost while most first holders die
    assert 2.5 <= result.replicas_per_item <= 3.5
    assert result.virtual_seconds >= SMALL.warmup + SMALL.churn + SMALL.settle


def test_single_copy_baseline_loses_items_under_the_same_churn() -> None:
    from dataclasses import replace

    result = run_churn_sync(replace(SMALL, persistence="single"))
    assert result.deaths >= 10
    assert result.retention < 0.9
    assert result.replicas_per_item == 1.0


def test_same_seed_same_outcome() -> None:
    from dataclasses import replace

    config = replace(SMALL, nodes=15, churn=10.0, settle=10.0)
    first, second = run_churn_sync(config), run_churn_sync(config)
    assert (first.deaths, first.retained) == (second.deaths, second.retained)


def test_items_whose_storers_die_are_still_found_and_replicas_return_to_target_after_a_burst() -> None:
    """Retrievals while churn runs (each as an item's storer dies), then every item retrieved once and two
    virtual minutes with no churn: the groups are at r = 3 (the back-to-target rule)."""
    from dataclasses import replace

    config = replace(SMALL, nodes=20, churn=10.0, settle=10.0, queries=4, retrieve_all=True, linger=120.0)
    result = run_churn_sync(config)
    during, burst = result.churn_queries, result.popularity
    assert during.started == 4 and during.found + during.abandoned >= 3
    assert during.requests_per_query > 0  # each storer is dead: the item came from elsewhere
    assert during.live == during.finished  # every group outlived its storer: each item was still kept
    assert during.live_found == during.found and during.requests_found + during.requests_missed == during.requests
    assert burst.started == result.items and burst.success >= result.retention - 0.001
    assert 2.5 <= result.replicas_per_item <= 3.5
    assert result.virtual_seconds >= config.warmup + config.churn + config.settle + config.linger


def test_retrievals_of_lost_items_are_counted_apart() -> None:
    """With a single copy per item, each item whose storer dies is lost: its retrieval misses, and the
    counters say the item was kept nowhere (``live`` 0), so the search is not blamed (``success_live`` 1)."""
    from dataclasses import replace

    config = replace(SMALL, nodes=20, churn=10.0, settle=10.0, queries=4, persistence="single")
    during = run_churn_sync(config).churn_queries
    assert during.started == 4 and during.finished >= 3
    assert during.found == 0 and during.missed == during.finished
    assert during.live == during.live_found == 0 and during.success_live == 1.0 and during.success == 0.0
    assert during.requests_missed == during.requests > 0 and during.requests_found == 0
    assert during.requests_per_missed == during.requests / during.missed



def test_requests_are_counted_by_route_and_known_hosts_are_sampled() -> None:
    """What a run sends, split by route, adds up to the requests every node counted (the network counts only
    requests of a serving transport, so at most those); the timeline follows the known-host lists."""
    from dataclasses import replace

    config = replace(SMALL, nodes=15, churn=10.0, settle=10.0)
    result = run_churn_sync(config)
    by_route = result.requests_by_route
    assert {"host-quality", "known-hosts", "pcg-heartbeat", "pcg-join"} <= set(by_route)
    assert 0.9 * result.requests_per_node_second <= sum(by_route.values()) <= result.requests_per_node_second
    last = result.timeline[-1]
    # a list may still hold a host that died since its last poll, never one that never lived
    assert 1 <= last["known_hosts"] <= last["known_hosts_max"] <= config.nodes - 1 + result.deaths
    assert all(sample["requests_per_node_second"] > 0 for sample in result.timeline[1:])
