"""``butter sim``: many nodes in one process under a virtual clock (part of :mod:`butter.cli`).

The simulator runs on trio (its ``MockClock``) and draws ``churn.png`` with matplotlib: both are optional
dependencies (``butter-core[trio]``, ``butter-core[plot]``), checked before anything runs.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Annotated

import typer

from ._cli_support import LogLevel, console, err_console, examples, exit_on_errors, require_module, setup_logging

__all__ = ["sim_app"]

sim_app = typer.Typer(help="Simulate many nodes in one process under a virtual clock.", no_args_is_help=True,
                      rich_markup_mode=None)


@sim_app.command(
    "churn",
    epilog=examples(
        "butter sim churn --nodes 250 --death-rate 0.02 --churn 30 --heartbeat 2 --seed 1",
        "butter sim churn --death-rate 0.02 --death-rate 0.01 --death-rate 0.001 --out results/",
        "",
        "Measures how many items Peer Content Groups keep while nodes die: the nodes run the real protocol code "
        "(memory, static, diversity, pcg and bfs drivers) on the in-process memory transport, on trio with a "
        "virtual clock, so 30 s of churn take seconds. Each death is abrupt (no hand-off); a replacement node "
        "keeps the population constant. Each rate is also run with a single copy per item (the naive baseline: "
        "the `single` persistence driver) unless --no-baseline.",
        "--out also writes every run's time series (retention, replicas per item, maintenance messages and all "
        "requests per node per second, known-host list size, every 5 virtual seconds) as churn-timeline.csv and "
        "churn-timeline.png.",
        "Needs trio: pip install 'butter-core[trio]'. The PNGs need matplotlib: pip install 'butter-core[plot]'.",
    ),
)
def sim_churn(
    nodes: Annotated[int, typer.Option(help="Live nodes at all times.", min=2)] = 250,
    death_rate: Annotated[
        list[float] | None,
        typer.Option(help="Probability a node dies in a given second. Repeatable.", min=0.0, max=1.0),
    ] = None,
    churn: Annotated[float, typer.Option(help="Seconds of churn.", min=0)] = 30.0,
    heartbeat: Annotated[float, typer.Option(help="PCG heartbeat interval, seconds.", min=0.01)] = 2.0,
    replicas: Annotated[int, typer.Option(help="PCG target replicas r.", min=1)] = 3,
    grace: Annotated[float, typer.Option(help="Seconds a new node is immune.", min=0)] = 10.0,
    settle: Annotated[float, typer.Option(help="Seconds after churn before measuring.", min=0)] = 30.0,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same run.")] = 1,
    baseline: Annotated[bool, typer.Option(help="Also run the single-copy baseline.")] = True,
    out: Annotated[
        Path | None,
        typer.Option(help="Directory for churn.json, churn.csv, churn-timeline.csv and (with matplotlib) churn.png "
                     "and churn-timeline.png.", file_okay=False),
    ] = None,
) -> None:
    """Run the churn experiment and print the retention table."""
    require_module("trio", "butter sim", "trio")
    if out is not None and importlib.util.find_spec("matplotlib") is None:
        err_console().print("note: the PNG pictures need matplotlib, which is not installed (pip install "
                            "'butter-core[plot]'); writing the JSON and CSV files only", style="yellow",
                            markup=False, highlight=False)

    from dataclasses import replace

    from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from ._cli_data import write_churn_outputs
    from .testing.sim import ChurnConfig, run_churn_sync

    rates = death_rate or [0.02]
    setup_logging(LogLevel.WARNING)
    configs = [ChurnConfig(nodes=nodes, death_rate=r, churn=churn, heartbeat=heartbeat, replicas=replicas,
                           grace=grace, settle=settle, seed=seed) for r in rates]
    rows: list[dict[str, object]] = []
    series: list[dict[str, object]] = []  # every run's timeline
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=err_console(),
                  transient=True) as progress:
        for config in configs:
            runs = [("PCG", config)] + ([("baseline", replace(config, persistence="single"))] if baseline else [])
            outcome = {}
            for label, run in runs:
                task = progress.add_task(f"{label} at {run.death_rate:g}/s", total=1.0)

                def show(phase: str, fraction: float, task: TaskID = task, title: str = f"{label} at "
                         f"{run.death_rate:g}/s") -> None:
                    progress.update(task, completed=fraction, description=f"{title}: {phase}")

                with exit_on_errors():  # a missing driver: one line, from inside the simulation's task group
                    outcome[label] = run_churn_sync(run, show)
                progress.remove_task(task)
                series.extend({"run": label, "death_rate": run.death_rate, **sample}
                              for sample in outcome[label].timeline)
            pcg = outcome["PCG"]
            rows.append({
                "nodes": nodes, "churn": churn, "heartbeat": heartbeat, "death_rate": config.death_rate,
                "items": pcg.items, "deaths": pcg.deaths, "retention": pcg.retention,
                "replicas_per_item": round(pcg.replicas_per_item, 3),
                "maintenance_per_node_second": round(pcg.maintenance_per_node_second, 3),
                "baseline_retention": outcome["baseline"].retention if baseline else None,
                "wall_seconds": round(pcg.wall_seconds, 1),
            })
    table = Table("death rate /s", "items", "deaths", "retained (PCG)", "single copy", "replicas/item",
                  "PCG msgs/node/s", "wall s", title=f"Retention under churn: {nodes} nodes, {churn:g} s, "
                  f"heartbeat {heartbeat:g} s, r = {replicas}, seed {seed}")
    for row in rows:
        base = row["baseline_retention"]
        table.add_row(f"{row['death_rate']:g}", str(row["items"]), str(row["deaths"]), f"{row['retention']:.1%}",
                      "-" if base is None else f"{base:.1%}", f"{row['replicas_per_item']:.2f}",
                      f"{row['maintenance_per_node_second']:.2f}", f"{row['wall_seconds']:.0f}")
    console().print(table)
    if out is not None:
        for path in write_churn_outputs(rows, series, out):
            console().print(f"wrote {path}", style="dim")
