"""DetectorStatus rate and jitter, and how soon a StopSignEvent follows its JSON event, with
``edge-detect --can`` sending to a python-can-remote bus on 127.0.0.1 (``bench/can_loopback.py``).

    .venv/bin/python bench/can_status_rate.py --json bench/results/can_status_rate.json

Two configurations, alternated round by round because this VM's speed swings within minutes:

- ``drive``: the sample drive ``samples/drives/day_approach`` (two events: ahead and lost), frames
  delivered back to back, as fast as the detector runs;
- ``paced``: a live ``test://`` source at 15 fps (the drive's camera rate), for the status rate at
  a camera's pace (no stop sign in it, so no events).

Per run: the status rate, the standard deviation of its periods (jitter) and their worst distance
from 100 ms, counter gaps and CRC failures, and for each event the delay from the JSON line to the
CAN frame, both read by this process (``delay_ms``), against the run's mean time per frame.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from can_loopback import (
    LoopbackCanBus,
    counter_gaps,
    decode_frames,
    event_delays_ms,
    frame_period_ms,
    run_detect_stamped,
    status_rate,
)

from stopsign.edge.sinks.can_dbc import DEFAULT_DBC, EVENT_MESSAGE, STATUS_MESSAGE, load_dbc

REPO = Path(__file__).resolve().parent.parent
DRIVE = REPO / "samples" / "drives" / "day_approach"
CONFIGS: dict[str, list[str]] = {
    "drive": ["--source", f"drive://{DRIVE}"],
    "paced": ["--source", "test://?fps=15&live=1&size=640x360", "--max-frames", "90"],
}


def one_run(name: str, backend: str) -> dict[str, Any]:
    database = load_dbc(DEFAULT_DBC)
    with LoopbackCanBus() as bus:
        run = run_detect_stamped([*CONFIGS[name], "--backend", backend, "--no-health", "--can", bus.target])
        time.sleep(0.2)  # the last frames cross the websocket
        frames = bus.frames()
    if run.returncode != 0:
        raise RuntimeError(f"edge-detect ({name}) exited {run.returncode}: {run.stderr[-2000:]}")
    decoded = decode_frames(frames, database)
    delays = event_delays_ms(run, frames, database)
    return {
        "config": name,
        "load_average_1min": round(os.getloadavg()[0], 2),  # this VM is shared: a busy CPU shows as jitter
        "frames_on_bus": len(frames),
        "undecodable": sum("error" in d for d in decoded),
        "crc_failures": sum(d.get("crc_ok") is False for d in decoded),
        "counter_gaps": {m: counter_gaps(decoded, m) for m in (STATUS_MESSAGE, EVENT_MESSAGE)},
        "status": status_rate(frames, database),
        "frame_ms": round(frame_period_ms(run) or 0.0, 2),
        "events": delays,
    }


def summary_row(run: dict[str, Any]) -> str:
    status = run["status"]
    delays = [e["delay_ms"] for e in run["events"] if "delay_ms" in e]
    delay_text = ", ".join(f"{d:.1f}" for d in delays) or "-"
    return (
        f"| {run['config']} | {status.get('rate_hz', '-')} | {status.get('jitter_ms', '-')} | "
        f"{status.get('max_deviation_ms', '-')} | {status.get('periods_within_10pct', '-')} | "
        f"{run['counter_gaps'][STATUS_MESSAGE]} | {run['crc_failures']} | "
        f"{delay_text} | {run['frame_ms']} | {run['load_average_1min']} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    runs = [one_run(name, args.backend) for _ in range(args.rounds) for name in CONFIGS]
    print(
        "| config | status Hz | jitter ms (sd) | worst period - 100 ms | periods within ±10 % | "
        "counter gaps | CRC failures | "
        "event delay after JSON (ms) | mean ms per frame | load (1 min) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        print(summary_row(run))
    if args.json:
        args.json.write_text(json.dumps({"backend": args.backend, "runs": runs}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
