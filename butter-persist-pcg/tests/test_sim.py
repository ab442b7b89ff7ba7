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
