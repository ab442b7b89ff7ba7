"""The simulator's start topology (ChurnConfig.topology, e.g. from a networkx graph): node i's first peers
are exactly its neighbours started before it, and a topology naming a node outside the population is refused."""

from __future__ import annotations

import anyio
import networkx
import pytest

from butter.errors import ButterConfigError
from butter.testing.sim import ChurnConfig, Population, run_churn

pytestmark = pytest.mark.anyio


async def test_each_node_starts_knowing_its_earlier_neighbours_in_the_graph() -> None:
    graph = networkx.cycle_graph(6)
    graph.add_edge(0, 3)
    config = ChurnConfig(nodes=6, topology=networkx.to_dict_of_lists(graph), seed=3)
    population = Population(config, "sim-topology-test")
    seen: list[list[str]] = []
    async with anyio.create_task_group() as tg:
        for _ in range(config.nodes):
            settings, _ = population.settings()
            population.counter -= 1  # spawn() draws the same settings again
            seen.append(list(settings.peers))
            await population.spawn(tg)
        tg.cancel_scope.cancel()
    first = population.first
    assert seen == [[], [first[0]], [first[1]], [first[0], first[2]], [first[3]], [first[0], first[4]]]


async def test_a_topology_outside_the_population_is_refused() -> None:
    with pytest.raises(ButterConfigError, match=r"outside the population 0\.\.3"):
        await run_churn(ChurnConfig(nodes=4, topology={0: [1], 1: [7]}))
