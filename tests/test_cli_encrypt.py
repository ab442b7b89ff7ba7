"""``butter put --encrypt`` and ``butter get CAPABILITY`` through two running nodes on 127.0.0.1 (TCP)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from anyio.from_thread import start_blocking_portal
from typer.testing import CliRunner

import butter
from butter.cli import app
from butter.encryption import Capability
from butter.settings import ButterSettings

runner = CliRunner()


def test_put_encrypt_prints_a_capability_that_get_decrypts(tmp_path: Path) -> None:
    pytest.importorskip("butter_retrieve_bfs", reason="butter-retrieve-bfs is not installed")
    fast = {"heartbeat_interval": 0.3}
    settings = ButterSettings(host="127.0.0.1", discovery={"drivers": []}, persistence={"options": fast},
                              host_manager={"options": {"refresh_interval": 1.0, "exchange_interval": 0.3}})
    with start_blocking_portal() as portal, \
            portal.wrap_async_context_manager(butter.open_node(settings)) as a, \
            portal.wrap_async_context_manager(butter.open_node(
                settings.model_copy(update={"peers": [str(a.address)]}))) as b:
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
