"""bench/camera_faults.py end to end, small: a real RTSP camera killed once and a leak-check cycle.

The numbers in docs/reliability.md come from the full run; this keeps the bench working and its
goals met on a short run (stall reported within 1 s, first frame within 2 s of the camera's
return, no second announcement of the held sign).
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.bench_scripts import load_bench_script
from tests.edge.helpers import requires_gstreamer, requires_rtsp_server


@requires_gstreamer
@requires_rtsp_server
def test_one_kill_and_return_meets_the_goals(tmp_path: Path) -> None:
    bench = load_bench_script("camera_faults")
    out = tmp_path / "faults.json"
    argv = [
        "--faults",
        "kill:1",
        "--cycles",
        "1",
        "--warmup-cycles",
        "0",
        "--settle",
        "2",
        "--json",
        str(out),
    ]
    assert bench.main(argv) == 0
    summary = json.loads(out.read_text())
    (fault,) = summary["faults"]
    assert fault["fault"] == "kill:1"
    assert fault["stall_s"] is not None and fault["stall_s"] < bench.GOALS["stall_s"], fault
    assert fault["first_frame_s"] is not None and fault["first_frame_s"] < bench.GOALS["first_frame_s"], fault
    assert fault["ahead_events"] == 0 and fault["lost_events"] == [], fault  # the sign was held
    assert summary["cycles"]["fd_growth"] == 0
    assert summary["detector_exit"] == 0
