"""Project-wide pytest set-up: the recorded-drive regression plugin (``--drives``, ``replay_check``),
and a guard that keeps OpenVINO out of the main test process."""

from __future__ import annotations

import os
import sys

import pytest

pytest_plugins = ["stopsign.edge.replay.pytest_plugin"]


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With OpenVINO's libraries loaded, a later test that forked loader workers and spawned DDP
    ranks was killed by SIGSEGV; its tests run in a process of their own
    (tests/edge/backends/test_openvino_isolated.py). A test that loads it here anyway (e.g. through
    ``--backend auto`` on the shipped model, which picks the OpenVINO IR) fails the session."""
    if "openvino" in sys.modules and os.environ.get("STOPSIGN_OPENVINO_TESTS") != "1":
        print("\nERROR: OpenVINO was loaded in the main test process; pass --backend onnxruntime, or move the "
              "test to the isolated OpenVINO run", file=sys.stderr)  # fmt: skip
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
