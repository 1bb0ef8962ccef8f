"""Where the time goes at a camera's rate: candidate settings, each alternated with the baseline.

    .venv/bin/python bench/camera_rate_candidates.py --rates 15 0 --rounds 3 --frames 200 \\
        --candidates no-pinning tbb-auto --json bench/results/camera_rate_candidates.json

Every run is ``edge-bench``'s end-to-end measurement (:func:`bench_e2e`: the real ``edge-detect``
loop) on ``bench/camera_rate.py``'s source: one real 720p frame with a stop sign, repeated by
``imagefreeze``, paced at each ``--rates`` value (0: back to back). Round by round, for each rate,
the baseline and every candidate run once each, in turn, so the VM's drift falls on all of them
alike. Printed per rate and configuration: the medians over rounds of e2e p50 and p99, the stage
medians (capture age = the hand-off from the capture thread to the loop; the model), the spread of
p50 over rounds, and p50 relative to the baseline in the same rounds.

Candidates (``--candidates``; the baseline is the CPU default, ``--backend auto``):

- ``no-pinning``: OpenVINO without pinning its threads to cores (``ENABLE_CPU_PINNING=NO``);
- ``tbb-auto``: OpenVINO's TBB partitioner ``AUTO`` instead of ``STATIC``;
- ``one-thread``: one inference thread, leaving the other core to GStreamer and Python;
- ``ort-fp32`` and ``ort-fp32-spin``: ONNX Runtime on the FP32 file, its worker threads sleeping
  (the project's setting) or spinning between frames (``session.intra_op.allow_spinning=1``).

``--rtsp``: the decode's placement, on ``bench/camera_rate.py``'s H.264 720p30 stream from the
project's RTSP camera, alternated the same way: ``rtsp://`` as ``edge-detect`` opens it
(``decodebin``: ``avdec_h264`` with a thread per core), against an explicit chain with
``avdec_h264 max-threads=1`` (the decoder keeps to one thread, leaving the other core to the
model), and that chain with ``videoconvert n-threads=2``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from camera_rate import (  # bench/: this folder
    FPS,
    RtspCamera,
    drive_frames,
    encode_h264,
    free_port,
    write_still,
)

from stopsign.edge.cli.benchmark import BenchRun, bench_e2e
from stopsign.edge.cli.machine import machine_info

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "edge" / "assets"

CANDIDATES: dict[str, dict[str, Any]] = {
    "baseline": {},
    "no-pinning": {"options": {"backend_options": {"ENABLE_CPU_PINNING": "NO"}}},
    "tbb-auto": {"options": {"backend_options": {"TBB_PARTITIONER": "AUTO"}}},
    "one-thread": {"threads": 1},
    "ort-fp32": {"backend": "onnxruntime", "model": ASSETS / "stopsign.onnx"},
    "ort-fp32-spin": {
        "backend": "onnxruntime",
        "model": ASSETS / "stopsign.onnx",
        "options": {"backend_options": {"session.intra_op.allow_spinning": "1"}},
    },
}


RTSP_VARIANTS = {
    "rtsp decodebin": "{url}",
    "rtsp avdec 1 thread": "gst://rtspsrc location={url} latency=100 ! rtph264depay ! h264parse ! "
    "avdec_h264 max-threads=1 ! videoconvert ! video/x-raw,format=BGR",
    "rtsp avdec 1 thread, convert 2": "gst://rtspsrc location={url} latency=100 ! rtph264depay ! h264parse ! "
    "avdec_h264 max-threads=1 ! videoconvert n-threads=2 ! video/x-raw,format=BGR",
}


def run_once(name: str, source: str, rate: float, frames: int, warmup: int) -> BenchRun:
    settings = {"backend": "auto", "model": ASSETS / "stopsign.onnx", **CANDIDATES[name]}
    return bench_e2e(
        settings["model"],
        settings["backend"],
        source,
        frames,
        warmup,
        threads=settings.get("threads", 0),
        rate=rate,
        options=settings.get("options"),
    )


def row(runs: list[BenchRun], baseline: list[BenchRun]) -> dict[str, Any]:
    lat = [run.latency_summary() for run in runs]
    p50s = [x["p50"] for x in lat]
    relative = [x["p50"] / b.latency_summary()["p50"] for x, b in zip(lat, baseline, strict=True)]

    def stage(name: str) -> float | None:
        values = [run.stages_ms.get(name) for run in runs]
        known = [v for v in values if v is not None]
        return statistics.median(known) if known else None

    return {
        "backend": f"{runs[0].backend} {runs[0].precision}",
        "p50": statistics.median(p50s),
        "p99": statistics.median(x["p99"] for x in lat),
        "p50_per_round": p50s,
        "p50_vs_baseline": statistics.median(relative),
        "p50_vs_baseline_per_round": relative,
        "capture_age_p50": stage("capture_age"),
        "preprocess_p50": stage("preprocess"),
        "infer_p50": stage("infer"),
        "fps": statistics.median(run.fps for run in runs),
        "cpu_ms_per_frame": statistics.median(run.cpu_ms_per_frame or 0.0 for run in runs),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--candidates", nargs="+", choices=[c for c in CANDIDATES if c != "baseline"], required=True
    )
    parser.add_argument(
        "--rates", type=float, nargs="+", default=[30.0, 0.0], help="frames per second; 0 = back to back"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--rtsp", action="store_true", help="also the decode variants on the RTSP stream")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    names = ["baseline", *args.candidates]
    runs: dict[tuple[float, str], list[BenchRun]] = {
        (rate, name): [] for rate in args.rates for name in names
    }
    rtsp_runs: dict[str, list[BenchRun]] = {name: [] for name in (RTSP_VARIANTS if args.rtsp else ())}
    camera = None
    with tempfile.TemporaryDirectory() as tmp:
        frames = drive_frames()
        still = write_still(frames, Path(tmp) / "still.png")
        source = (
            f"gst://filesrc location={still} ! pngdec ! videoconvert ! video/x-raw,format=BGR ! imagefreeze"
        )
        if args.rtsp:
            seconds = 2 * (args.warmup + args.frames) / FPS + 4  # each session plays from the start
            camera = RtspCamera(encode_h264(frames, seconds, Path(tmp) / "drive720p30.mp4"), free_port())
        try:
            for number in range(args.rounds):
                for rate in args.rates:
                    for name in names:
                        print(
                            f"candidates: round {number + 1}/{args.rounds}, {rate:g} fps: {name}",
                            file=sys.stderr,
                        )
                        runs[(rate, name)].append(run_once(name, source, rate, args.frames, args.warmup))
                for name, template in RTSP_VARIANTS.items() if camera is not None else ():
                    print(f"candidates: round {number + 1}/{args.rounds}: {name}", file=sys.stderr)
                    rtsp_source = template.format(url=camera.url)
                    rtsp_runs[name].append(
                        bench_e2e(ASSETS / "stopsign.onnx", "auto", rtsp_source, args.frames, args.warmup,
                                  duration_s=args.frames / FPS)
                    )  # fmt: skip
        finally:
            if camera is not None:
                camera.stop()
    results = {
        f"{rate:g}": {name: row(runs[(rate, name)], runs[(rate, "baseline")]) for name in names}
        for rate in args.rates
    }
    if rtsp_runs:
        first = next(iter(rtsp_runs.values()))
        results["rtsp"] = {name: row(values, first) for name, values in rtsp_runs.items()}
    print("| rate | config | backend | e2e p50 ms | e2e p99 ms | p99/p50 | capture age p50 | infer p50 | "
          "p50 / baseline (per round) | p50 per round | fps | CPU ms/frame |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for rate, by_name in results.items():
        for name, r in by_name.items():
            rounds = ", ".join(f"{v:.2f}" for v in r["p50_per_round"])
            relative = ", ".join(f"{v:.2f}" for v in r["p50_vs_baseline_per_round"])
            label = {"0": "back to back", "rtsp": "RTSP 720p30"}.get(rate, f"{rate} fps")
            print(f"| {label} | {name} | {r['backend']} | {r['p50']:.2f} | "
                  f"{r['p99']:.2f} | {r['p99'] / r['p50']:.2f} | {r['capture_age_p50'] or 0:.2f} | "
                  f"{r['infer_p50'] or 0:.2f} | {r['p50_vs_baseline']:.2f} ({relative}) | {rounds} | {r['fps']:.1f} | {r['cpu_ms_per_frame']:.1f} |")  # fmt: skip
    if args.json:
        report = {"machine": machine_info(), "rounds": args.rounds, "frames": args.frames, "results": results}
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
