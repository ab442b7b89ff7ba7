"""The discovery conformance kit for ``multicast``, in a network namespace this test creates (one host on a
bridge of its own, see :mod:`harness`): ``multicast_kit.py`` runs there in a subprocess, through
``ip netns exec``, on asyncio and trio. Skips, naming what is missing, when not root or without ``ip``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .harness import Lab
from .multicast_kit import DISCOVERY_CHECKS, HOST_VARIABLE, NAMESPACE_VARIABLE

pytestmark = pytest.mark.netns

KIT = Path(__file__).with_name("multicast_kit.py")
ROOT = Path(__file__).parents[2]


def test_multicast_discovery_passes_the_discovery_kit(lab: Lab) -> None:
    host = lab.add_lan("k", 1).hosts[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUTTER_")}
    result = subprocess.run(
        ["ip", "netns", "exec", host.ns, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-p", "no:randomly", "-n", "0", str(KIT)],  # one process: the checks count multicast messages on one LAN
        env={**env, HOST_VARIABLE: host.ip, NAMESPACE_VARIABLE: host.ns}, cwd=ROOT, capture_output=True, text=True,
        timeout=600, check=False,
    )
    output = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, output
    assert f"{2 * len(DISCOVERY_CHECKS)} passed" in result.stdout, output
