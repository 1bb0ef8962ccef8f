"""bench/source_rebuilds.py, small: real drive-source rebuilds, the heap release timed or turned off."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.edge.helpers import requires_gstreamer

SCRIPT = Path(__file__).resolve().parents[3] / "bench" / "source_rebuilds.py"


def run(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--cycles", "3", "--frames", "2", *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


@requires_gstreamer
def test_every_teardown_releases_the_heap_and_is_timed() -> None:
    out = run()
    assert len(re.findall(r"^cycle \d+: RSS \d+\.\d MB$", out, re.M)) == 4
    found = re.search(r"heap release after a teardown, (\d+) times: mean ([\d.]+) ms", out)
    assert found is not None, out
    assert int(found[1]) == 4  # cycles 0-3 each close one pipeline


@requires_gstreamer
def test_the_baseline_keeps_the_free_heap() -> None:
    assert "heap release after a teardown: off (--keep-free-heap)" in run("--keep-free-heap")


@pytest.mark.parametrize("args", [["--cycles", "0"], ["--frames", "-1"]])
def test_bad_counts_are_refused(args: list[str]) -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--cycles must be >= 1 and --frames >= 0" in done.stderr
