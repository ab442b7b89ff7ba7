"""``butter name key|publish|resolve`` through two running nodes on 127.0.0.1 (TCP): a name published through one
node resolves through the other; each bad input has a clear message and exit status."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from typer.testing import CliRunner

import butter
from butter.cli import app
from butter.encryption import Capability
from butter.settings import ButterSettings

runner = CliRunner()
CID = "3f" * 32


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[tuple[BlockingPortal, butter.Node, butter.Node]]:
    settings = ButterSettings(host="127.0.0.1", discovery={"drivers": []}, persistence={"driver": ""},
                              host_manager={"options": {"refresh_interval": 1.0, "exchange_interval": 0.3}})
    with start_blocking_portal() as portal, \
            portal.wrap_async_context_manager(butter.open_node(settings)) as a, \
            portal.wrap_async_context_manager(butter.open_node(
                settings.model_copy(update={"peers": [str(a.address)]}))) as b:
        yield portal, a, b


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
