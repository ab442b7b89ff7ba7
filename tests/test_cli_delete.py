"""``butter put --owner`` and ``butter rm`` through two running nodes on 127.0.0.1 (TCP): the owner deletes
through one node what it stored through the other, after which ``butter get`` says the item is deleted; each
bad input (another key, an item without owner, a missing key file, a malformed CID, a deleted item) has a
clear message and exit status."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from anyio.from_thread import BlockingPortal
from typer.testing import CliRunner

import butter
from butter.cli import app

runner = CliRunner()


def put(tmp_path: Path, node: butter.Node, *extra: str) -> str:
    (tmp_path / "in.bin").write_bytes(os.urandom(9000))
    result = runner.invoke(app, ["put", str(tmp_path / "in.bin"), "--node", str(node.address), *extra])
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def test_the_owner_removes_an_item_and_get_then_says_it_is_deleted(
        two_nodes: tuple[BlockingPortal, butter.Node, butter.Node], tmp_path: Path) -> None:
    _, a, b = two_nodes
    assert runner.invoke(app, ["name", "key", str(tmp_path / "me.pem")]).exit_code == 0
    assert runner.invoke(app, ["name", "key", str(tmp_path / "other.pem")]).exit_code == 0
    content_id = put(tmp_path, a, "--owner", "--key", str(tmp_path / "me.pem"))

    other = runner.invoke(app, ["rm", content_id, "--key", str(tmp_path / "other.pem"), "--node", str(b.address)])
    assert other.exit_code == 1 and "another owner" in other.stderr, other.output
    got = runner.invoke(app, ["get", content_id, "--node", str(b.address), "-o", str(tmp_path / "out.bin")])
    assert got.exit_code == 0, got.output

    removed = runner.invoke(app, ["rm", content_id, "--key", str(tmp_path / "me.pem"), "--node", str(b.address)])
    assert removed.exit_code == 0, removed.output
    assert removed.stdout.startswith(f"deleted {content_id}: ")
    got = runner.invoke(app, ["get", content_id, "--node", str(b.address)])
    assert got.exit_code == 1 and "deleted" in got.stderr, got.output
    again = runner.invoke(app, ["rm", content_id, "--key", str(tmp_path / "me.pem"), "--node", str(a.address)])
    assert again.exit_code == 1 and "deleted" in again.stderr, again.output


def test_an_item_put_without_owner_cannot_be_removed(two_nodes: tuple[BlockingPortal, butter.Node, butter.Node],
                                                     tmp_path: Path) -> None:
    _, a, b = two_nodes
    assert runner.invoke(app, ["name", "key", str(tmp_path / "me.pem")]).exit_code == 0
    content_id = put(tmp_path, a)
    result = runner.invoke(app, ["rm", content_id, "--key", str(tmp_path / "me.pem"), "--node", str(b.address)])
    assert result.exit_code == 1 and "no owner" in result.stderr, result.output


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["rm", "not-a-cid", "--key", "KEY"], "64 lowercase hex"),
        (["rm", "ab" * 32, "--key", "/nonexistent/me.pem"], "does not exist"),
        (["rm", "ab" * 32], "no owner key"),
        (["put", "FILE", "--owner", "--key", "/nonexistent/me.pem"], "does not exist"),
        (["put", "FILE", "--key", "KEY"], "--key goes with --owner"),
    ],
)
def test_bad_input_exits_2_saying_why(tmp_path: Path, args: list[str], complaint: str) -> None:
    assert runner.invoke(app, ["name", "key", str(tmp_path / "k.pem")]).exit_code == 0
    (tmp_path / "f").write_bytes(b"x")
    args = [{"KEY": str(tmp_path / "k.pem"), "FILE": str(tmp_path / "f")}.get(arg, arg) for arg in args]
    result = runner.invoke(app, [*args, "--node", "127.0.0.1:1"])
    assert result.exit_code == 2, result.output
    assert complaint in result.stderr
