"""``butter doc key|new|append|read|history|rm`` through two running nodes on 127.0.0.1 (TCP): what is written
through one node is read through the other; the writers list and the creator's delete hold; each bad input
has a clear message and exit status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from anyio.from_thread import BlockingPortal
from typer.testing import CliRunner

import butter
from butter.cli import app

runner = CliRunner()
TWO_NODES_SETTINGS = {"persistence": {"driver": ""}, "retrieval": {"driver": ""}}  # see conftest.two_nodes


def doc(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, ["doc", *args], input=stdin)
    return result.exit_code, result.stdout, result.stderr


def test_a_document_written_through_one_node_is_read_and_deleted_through_another(
        two_nodes: tuple[BlockingPortal, butter.Node, butter.Node], tmp_path: Path) -> None:
    _, a, b = two_nodes
    for name in ("me", "friend", "stranger"):
        assert runner.invoke(app, ["name", "key", str(tmp_path / f"{name}.pem")]).exit_code == 0
    me, friend, stranger = (str(tmp_path / f"{name}.pem") for name in ("me", "friend", "stranger"))
    code, friend_key, _ = doc("key", "--key", friend)
    assert code == 0 and len(friend_key.strip()) == 64
    code, out, err = doc("new", "-f", "-", "--writer", friend_key.strip(), "--key", me, "--node", str(a.address),
                         stdin="first draft")
    assert code == 0, err
    document_id = out.strip()
    (tmp_path / "v2.md").write_text("second draft")
    code, revision, err = doc("append", document_id, "-f", str(tmp_path / "v2.md"), "--key", friend,
                              "--node", str(b.address))
    assert code == 0 and "clock 1, 1 parent(s)" in err, err
    code, out, err = doc("read", document_id, "--node", str(a.address))
    assert code == 0 and out == "second draft" and "1 head(s), 2 revision(s)" in err, err
    code, out, _ = doc("history", document_id, "--json", "--node", str(b.address))
    rows = json.loads(out)
    assert [(r["clock"], r["head"], r["bytes"]) for r in rows] == [(0, "", 11), (1, "current", 12)]
    assert rows[1]["revision"] == revision.strip()
    code, out, _ = doc("history", document_id, "--node", str(b.address))
    assert code == 0 and out.splitlines()[1].startswith("1\t" + revision[:16]) and out.rstrip().endswith("current")
    code, _, err = doc("append", document_id, "sneaky", "--key", stranger, "--node", str(a.address))
    assert code == 1 and "writers list" in err
    code, _, err = doc("rm", document_id, "--key", friend, "--node", str(a.address))
    assert code == 1 and "another creator" in err
    code, out, err = doc("rm", document_id, "--key", me, "--node", str(b.address))
    assert code == 0 and out.startswith(f"deleted {document_id}"), err
    code, _, err = doc("read", document_id, "--node", str(a.address))
    assert code == 1 and "deleted by its creator" in err


def test_an_unknown_document_exits_1(two_nodes: tuple[BlockingPortal, butter.Node, butter.Node]) -> None:
    _, a, _ = two_nodes
    code, _, err = doc("read", "ab" * 32, "--node", str(a.address))
    assert code == 1 and "not found" in err


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["read", "not-an-id"], "64 lowercase hex"),
        (["append", "ab" * 32, "--key", "KEY"], "TEXT or with --file"),
        (["append", "ab" * 32, "x", "-f", "FILE", "--key", "KEY"], "TEXT or with --file"),
        (["new", "-f", "/nonexistent/x.md", "--key", "KEY"], "cannot read"),
        (["new", "x" * (16 * 1024 + 1), "--key", "KEY"], "at most 16384 bytes"),
        (["new", "x", "--writer", "not-a-key", "--key", "KEY"], "neither a public key"),
        (["new", "x", "--writer", "00" * 32, "--key", "KEY"], "small order"),
        (["new", "x", "--key", "/nonexistent/me.pem"], "does not exist"),
        (["rm", "ab" * 32], "no owner key"),
    ],
)
def test_bad_input_exits_2_saying_why(two_nodes: tuple[BlockingPortal, butter.Node, butter.Node], tmp_path: Path,
                                      args: list[str], complaint: str) -> None:
    _, a, _ = two_nodes
    runner.invoke(app, ["name", "key", str(tmp_path / "k.pem")])
    (tmp_path / "f.md").write_text("x")
    args = [str(tmp_path / "k.pem") if x == "KEY" else str(tmp_path / "f.md") if x == "FILE" else x for x in args]
    code, _, err = doc(*args, "--node", str(a.address))
    assert code == 2 and complaint in " ".join(err.split()), err
