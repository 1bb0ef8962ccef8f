"""Project-wide pytest set-up: the recorded-drive regression plugin (``--drives``, ``replay_check``),
and a guard that keeps OpenVINO out of the main test process (and out of every xdist worker)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

pytest_plugins = ["stopsign.edge.replay.pytest_plugin"]


@pytest.fixture(autouse=True)
def openvino_stays_out_of_this_process() -> Iterator[None]:
    """With OpenVINO's libraries loaded, a later test that forked loader workers and spawned DDP
    ranks was killed by SIGSEGV; its tests run in a process of their own
    (tests/edge/backends/test_openvino_isolated.py). A test that loads it here anyway (e.g. through
    ``--backend auto`` on the shipped model, which picks the OpenVINO IR) fails, by name. A fixture,
    not a session hook: under pytest-xdist a worker's session status does not reach the run's."""
    loaded_before = "openvino" in sys.modules
    yield
    if not loaded_before and "openvino" in sys.modules and os.environ.get("STOPSIGN_OPENVINO_TESTS") != "1":
        pytest.fail(
            "this test loaded OpenVINO into the main test process; pass --backend onnxruntime, or move it "
            "to the isolated OpenVINO run (tests/edge/backends/test_openvino_isolated.py)",
            pytrace=False,
        )
