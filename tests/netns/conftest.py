"""Fixtures for multi-host tests in network namespaces (see :mod:`harness`).

* ``lab``: a :class:`harness.Lab` writing node logs to the test's ``tmp_path``; everything it created is
  removed after the test, pass or fail. On failure the tail of every node's log is printed.

Test modules here mark themselves ``netns`` (deselect with ``-m "not netns"``) and skip, naming what is missing, when
not run as root or without the ``ip`` command. CI runs as root, so they run there.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from .harness import Lab, missing_requirements

TAIL = 25  # log lines shown per node when a test fails


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "netns: runs real nodes in network namespaces (needs root and iproute2)")


FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[FAILED] = report.failed
    return report


@pytest.fixture
def lab(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Lab]:
    reason = missing_requirements()
    if reason:
        pytest.skip(reason)
    bench = Lab(tmp_path / "lab")
    try:
        yield bench
    finally:
        bench.close()
        if request.node.stash.get(FAILED, False):
            for path in bench.logs():
                lines = path.read_text(errors="replace").splitlines()[-TAIL:]
                print(f"\n==== {path} (last {len(lines)} lines)\n" + "\n".join(lines))
