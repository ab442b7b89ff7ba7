"""What ``butter put``, ``get`` and ``sim`` do, apart from printing (see :mod:`butter.cli`)."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import anyio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ._node import Node, open_node
from .blocks import chunk
from .errors import PeerUnreachable, ProtocolError
from .peers import PeerAddress
from .settings import ButterSettings
from .wire import decode_payload, encode_payload

__all__ = ["UPLOAD_BATCH", "download", "remove", "upload", "wait_until_joined", "write_churn_outputs"]

UPLOAD_BATCH = 1024 * 1024  # bytes of blocks per `store` request


async def upload(
    settings: ButterSettings,
    target: PeerAddress,
    data: bytes,
    *,
    media_type: str,
    timeout: float,
    owner: bytes | None = None,
    on_progress: Callable[[int, int], None] = lambda done, total: None,
) -> str:
    """Cut ``data`` into blocks and upload them to the node at ``target`` on its built-in ``store`` route, in
    batches of about 1 MiB, the manifest last; returns the content id the node answers. ``owner`` (a raw
    32-byte Ed25519 public key) goes in the manifest: that key alone can delete the item (:func:`remove`).

    ``on_progress(bytes sent, total bytes)`` is called after each batch. Raises
    :class:`~butter.errors.RemoteError` (``store-full``, ``incomplete``, ``unknown-route``),
    :class:`~butter.errors.PeerUnreachable` or :class:`~butter.errors.RequestTimeout`.
    """
    item = chunk(data, block_size=int(settings.store.block_size), media_type=media_type, owner=owner)
    total = item.stored_size
    sent = 0
    async with open_node(settings) as client:
        batch: list[bytes] = []
        for block in item.blocks.values():
            batch.append(block)
            if sum(map(len, batch)) >= UPLOAD_BATCH:
                await client.request(target, "store", encode_payload({"blocks": batch}), timeout=timeout)
                sent += sum(map(len, batch))
                on_progress(sent, total)
                batch = []
        body = encode_payload({"blocks": batch, "manifest": item.manifest_block})
        reply = decode_payload(await client.request(target, "store", body, timeout=timeout))
        on_progress(total, total)
    if not isinstance(reply, dict) or reply.get("cid") != item.content_id:
        raise ProtocolError(f"the node answered {reply!r}, not the content id {item.content_id}")
    return item.content_id


async def download(
    settings: ButterSettings,
    content_id: str,
    sink: BinaryIO,
    *,
    on_progress: Callable[[int], None] = lambda done: None,
    join_timeout: float = 10.0,
) -> int:
    """Start a client node with ``settings`` (its ``peers`` say where to join), wait until it knows a host
    (at most ``join_timeout`` seconds), then stream the item ``content_id`` into ``sink``, every block
    verified; returns the bytes written. Raises :class:`~butter.errors.ItemNotFound` or a transport error."""
    written = 0
    async with open_node(settings) as client:
        await wait_until_joined(client, join_timeout)
        async for block in client.retrieve_stream(content_id):
            sink.write(block)
            written += len(block)
            on_progress(written)
    sink.flush()
    return written


async def remove(settings: ButterSettings, content_id: str, owner: Ed25519PrivateKey, *,
                 join_timeout: float = 10.0) -> int:
    """Start a client node with ``settings`` (its ``peers`` say where to join, its retrieval driver finds the
    holders), wait until it knows a host, then delete item ``content_id`` as ``owner`` (:meth:`Node.delete`);
    returns how many holders accepted the tombstone. Raises :class:`~butter.errors.TombstoneRejected` (not the
    owner's key, or an item without owner), :class:`~butter.errors.ItemDeleted`,
    :class:`~butter.errors.ItemNotFound` or a transport error."""
    async with open_node(settings) as client:
        await wait_until_joined(client, join_timeout)
        return await client.delete(content_id, owner=owner)


async def wait_until_joined(client: Node, join_timeout: float) -> None:
    """Wait until ``client`` knows a host (its settings' ``peers`` say where to join), at most
    ``join_timeout`` seconds. Raises :class:`~butter.errors.PeerUnreachable` naming the peers otherwise."""
    with anyio.move_on_after(join_timeout):
        while not client.hosts.peers():  # noqa: ASYNC110 (static discovery fills it; bounded)
            await anyio.sleep(0.05)
    if not client.hosts.peers():
        peers = ", ".join(map(str, client.settings.peers)) or "no peer configured"
        raise PeerUnreachable(f"no answer from {peers} within {join_timeout:g} s: is a node running there?")


def write_churn_outputs(
    rows: list[dict[str, Any]], series: list[dict[str, Any]], directory: Path
) -> list[Path]:
    """Write into ``directory``: ``churn.json`` and ``churn.csv`` (``rows``: one per death rate),
    ``churn-timeline.csv`` (``series``: one row per sample of each run, its ``run`` and ``death_rate`` first,
    then :attr:`~butter.testing.sim.ChurnResult.timeline`'s columns) and, when matplotlib is installed,
    ``churn.png`` (retention vs death rate, PCG against the single-copy baseline) and ``churn-timeline.png``
    (retention, replicas per item and maintenance messages per node per second over virtual time). Returns
    the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = [directory / "churn.json", directory / "churn.csv", directory / "churn-timeline.csv"]
    written[0].write_text(json.dumps(rows, indent=2))
    _write_csv(written[1], rows)
    _write_csv(written[2], series)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return written
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, key in (("PCG", "retention"), ("single copy", "baseline_retention")):
        points = sorted((r["death_rate"], r[key]) for r in rows if r.get(key) is not None)
        if points:
            ax.plot([p[0] for p in points], [100 * p[1] for p in points], marker="o", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("death probability per node per second")
    ax.set_ylabel("items retained (%)")
    ax.set_title(f"Retention under churn ({rows[0]['nodes']} nodes, {rows[0]['churn']:g} s)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(directory / "churn.png", dpi=120)
    plt.close(fig)
    written.append(directory / "churn.png")
    fig, axes = plt.subplots(3, 1, figsize=(7, 8), sharex=True)
    runs = sorted({(sample["run"], sample["death_rate"]) for sample in series})
    for (run, rate), style in zip(runs, ["-", "--", "-.", ":"] * len(runs), strict=False):
        samples = [sample for sample in series if (sample["run"], sample["death_rate"]) == (run, rate)]
        for ax, key, scale in zip(axes, ("retention", "replicas_per_item", "maintenance_per_node_second"),
                                  (100, 1, 1), strict=True):
            ax.plot([x["t"] for x in samples], [scale * x[key] for x in samples], style, label=f"{run} at {rate:g}/s")
    for ax, label in zip(axes, ("items retained (%)", "replicas per item", "maintenance msgs / node / s"),
                         strict=True):
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize="small")
    axes[-1].set_xlabel("virtual seconds since the items were stored")
    fig.tight_layout()
    fig.savefig(directory / "churn-timeline.png", dpi=120)
    plt.close(fig)
    written.append(directory / "churn-timeline.png")
    return written


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else [])
        writer.writeheader()
        writer.writerows(rows)
