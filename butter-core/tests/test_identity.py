"""Node identities on disk: created once, reused, and a clear one-line error for a data_dir that cannot be
one (issue 17: a data_dir naming a file made identity creation recurse until Python gave up)."""

from __future__ import annotations

from pathlib import Path

import pytest

from butter import ButterConfigError, Identity


def test_created_once_then_reused(tmp_path: Path) -> None:
    first = Identity.load_or_create(tmp_path / "node")
    assert (tmp_path / "node" / "node_key.pem").stat().st_mode & 0o777 == 0o600
    assert Identity.load_or_create(tmp_path / "node").node_id == first.node_id


def test_a_data_dir_that_is_a_file_is_refused_in_one_line(tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("not a directory")
    with pytest.raises(ButterConfigError, match="is not a directory"):
        Identity.load_or_create(file)
    assert file.read_text() == "not a directory"  # nothing written over it


def test_a_data_dir_below_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ButterConfigError, match="cannot create data_dir"):
        Identity.load_or_create(tmp_path / "file" / "below")
