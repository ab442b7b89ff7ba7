"""``butter put --encrypt``, ``butter get CAPABILITY`` and ``butter name key|publish|rm|resolve`` through two running
nodes on 127.0.0.1 (TCP): what is stored or published through one node is read through the other; each bad
input has a clear message and exit status."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from anyio.from_thread import BlockingPortal
from typer.testing import CliRunner

import butter
from butter.cli import app
from butter.encryption import Capability

runner = CliRunner()
CID = "3f" * 32


def test_a_name_published_through_one_node_resolves_through_another(
        two_nodes: tuple[BlockingPortal, butter.Node, butter.Node], tmp_path: Path) -> None:
    _, a, b = two_nodes
    key = runner.invoke(app, ["name", "key", str(tmp_path / "me.pem"), "--label", "blog"])
    assert key.exit_code == 0, key.output
    label, name = key.stdout.split()
    assert label == "blog"
    capability = str(Capability(CID, bytes(32)))
    for value in (CID, capability):
        published = runner.invoke(app, ["name", "publish", "blog", value, "--key", str(tmp_path / "me.pem"),
                                         "--node", str(a.address)])
        assert published.exit_code == 0, published.output
        assert published.stdout.strip() == name
        resolved = runner.invoke(app, ["name", "resolve", name, "--node", str(b.address)])
        assert resolved.exit_code == 0, resolved.output
        assert resolved.stdout.strip() == value and "sequence" in resolved.stderr
    inline = runner.invoke(app, ["name", "publish", "status", "gone fishing", "--inline", "--key",
                                 str(tmp_path / "me.pem"), "--node", str(b.address)])
    assert inline.exit_code == 0, inline.output
    resolved = runner.invoke(app, ["name", "resolve", inline.stdout.strip(), "--node", str(a.address)])
    assert resolved.exit_code == 0 and resolved.stdout == "gone fishing"


def test_a_name_deleted_through_one_node_resolves_as_deleted_through_another(
        two_nodes: tuple[BlockingPortal, butter.Node, butter.Node], tmp_path: Path) -> None:
    _, a, b = two_nodes
    key = str(tmp_path / "me.pem")
    assert runner.invoke(app, ["name", "key", key]).exit_code == 0
    published = runner.invoke(app, ["name", "publish", "gone", CID, "--key", key, "--node", str(a.address)])
    assert published.exit_code == 0, published.output
    removed = runner.invoke(app, ["name", "rm", "gone", "--key", key, "--node", str(a.address)])
    assert removed.exit_code == 0, removed.output
    assert removed.stdout.strip() == published.stdout.strip()
    resolved = runner.invoke(app, ["name", "resolve", removed.stdout.strip(), "--node", str(b.address)])
    assert resolved.exit_code == 1 and "deleted by its owner" in resolved.stderr, resolved.output


def test_an_unknown_name_exits_1(two_nodes: tuple[BlockingPortal, butter.Node, butter.Node]) -> None:
    _, a, _ = two_nodes
    result = runner.invoke(app, ["name", "resolve", "ab" * 32, "--node", str(a.address)])
    assert result.exit_code == 1 and "no valid record" in result.stderr


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["resolve", "not-a-name"], "64 lowercase hex"),
        (["publish", "blog", CID, "--key", "/nonexistent/me.pem"], "does not exist"),
        (["publish", "blog", "not-a-cid", "--key", "KEY"], "content id (64 lowercase hex) or a capability"),
        (["publish", "blog", "bcap1:" + CID, "--key", "KEY"], "bad capability"),
        (["publish", "x" * 129, CID, "--key", "KEY"], "cannot sign"),
        (["publish", "blog", "x" * 1025, "--inline", "--key", "KEY"], "cannot sign"),
        (["publish", "blog", CID], "no owner key"),
    ],
)
def test_bad_input_exits_2_saying_why(two_nodes: tuple[BlockingPortal, butter.Node, butter.Node], tmp_path: Path,
                                      args: list[str], complaint: str) -> None:
    _, a, _ = two_nodes
    runner.invoke(app, ["name", "key", str(tmp_path / "k.pem")])
    args = [str(tmp_path / "k.pem") if arg == "KEY" else arg for arg in args]
    result = runner.invoke(app, ["name", *args, "--node", str(a.address)])
    assert result.exit_code == 2 and complaint in result.stderr, result.output


def test_an_existing_key_file_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "k.pem").write_text("mine")
    result = runner.invoke(app, ["name", "key", str(tmp_path / "k.pem")])
    assert result.exit_code == 2 and "already exists" in result.stderr
    assert (tmp_path / "k.pem").read_text() == "mine"


# -- put --encrypt, get CAPABILITY -----------------------------------------------------------------------------


def test_put_encrypt_prints_a_capability_that_get_decrypts(
        two_nodes: tuple[BlockingPortal, butter.Node, butter.Node], tmp_path: Path) -> None:
    portal, a, b = two_nodes
    data = b"top secret " + os.urandom(30_000)
    (tmp_path / "in.bin").write_bytes(data)
    put = runner.invoke(app, ["put", str(tmp_path / "in.bin"), "--encrypt", "--node", str(a.address)])
    assert put.exit_code == 0, put.output
    capability = Capability.parse(put.stdout.strip())
    stored = [portal.call(a.blocks.get, block_id) for block_id in portal.call(a.blocks.block_ids)]
    assert stored and not any(block is not None and b"top secret" in block for block in stored)
    out = tmp_path / "out.bin"
    got = runner.invoke(app, ["get", str(capability), "--node", str(b.address), "-o", str(out)])
    assert got.exit_code == 0, got.output
    assert out.read_bytes() == data
    wrong = str(Capability(capability.content_id, bytes(32)))
    refused = runner.invoke(app, ["get", wrong, "--node", str(b.address), "-o", str(tmp_path / "x")])
    assert refused.exit_code == 1 and "wrong key" in refused.stderr


@pytest.mark.parametrize("text", ["bcap1:nothex:" + "A" * 43, "bcap1:" + "ab" * 32])
def test_get_refuses_a_malformed_capability_with_status_2(text: str) -> None:
    result = runner.invoke(app, ["get", text, "--node", "127.0.0.1:1"])
    assert result.exit_code == 2 and "bad capability" in result.stderr


def test_put_refuses_a_media_type_with_encrypt(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    result = runner.invoke(app, ["put", str(tmp_path / "f"), "--encrypt", "--media-type", "text/plain",
                                 "--node", "127.0.0.1:1"])
    assert result.exit_code == 2 and "--media-type cannot go with --encrypt" in result.stderr
