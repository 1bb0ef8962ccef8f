"""Runs the OpenVINO tests (backend, calibration report) in a process of their own, so OpenVINO is never loaded in the main test process.

With OpenVINO's libraries loaded, a later training test that forks persistent loader workers and
spawns DDP ranks was killed by SIGSEGV (seen here with OpenVINO 2026.4 and torch 2.13); the runtime
never trains, so only the test process needs keeping apart.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stopsign.edge.backends.openvino import OpenVinoBackend

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.skipif(not OpenVinoBackend.is_available(), reason="openvino is not installed")
def test_openvino_backend_in_its_own_process(tmp_path: Path) -> None:
    env = {**os.environ, "STOPSIGN_OPENVINO_TESTS": "1", "XDG_CACHE_HOME": str(tmp_path)}
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/edge/backends/test_openvino.py",
        "tests/calibration/test_report_openvino.py",
    ]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout, done.stdout[-2000:]
