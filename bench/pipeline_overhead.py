"""Pipeline overhead: end-to-end p50 over model-only p50, and p99 over p50, repeated to show the spread.

    .venv/bin/python bench/pipeline_overhead.py --model m416.onnx --repeats 5 --frames 300 --out runs/overhead
    .venv/bin/python bench/pipeline_overhead.py --model m416.onnx --source 'test://?pattern=snow&size=1280x720&live=0'
    .venv/bin/python bench/pipeline_overhead.py --model edge/assets/stopsign.onnx --backend auto  # the CPU default

Each repeat is one ``edge-bench --mode both`` invocation (model-only, then end-to-end on the same
warm machine) written to ``OUT/repeat_<i>.json``; the table shows every repeat and the median, so
noise from other work on the machine shows up as spread rather than hiding in one number.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from stopsign.edge.cli import bench as bench_cli


def ratios(report: dict) -> dict[str, float]:
    """The overhead figures of one edge-bench report (one model-only and one e2e run)."""
    model = next(r for r in report["runs"] if r["mode"] == "model")
    e2e = next(r for r in report["runs"] if r["mode"] == "e2e")
    return {
        "model_p50": model["latency_ms"]["p50"],
        "e2e_p50": e2e["latency_ms"]["p50"],
        "e2e_over_model_p50": e2e["latency_ms"]["p50"] / model["latency_ms"]["p50"],
        "model_p99_over_p50": model["latency_ms"]["p99"] / model["latency_ms"]["p50"],
        "e2e_p99_over_p50": e2e["latency_ms"]["p99"] / e2e["latency_ms"]["p50"],
        "e2e_infer_p50": e2e["stages_ms"]["infer"],
        "e2e_non_infer_p50": e2e["stages_ms"]["total"] - e2e["stages_ms"]["infer"],
        "model_cpu_ms": model["cpu_ms_per_frame"],
        "e2e_cpu_ms": e2e["cpu_ms_per_frame"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--source", default=bench_cli.DEFAULT_SOURCE)
    parser.add_argument(
        "--backend", default="onnxruntime", help="edge-bench --backend (auto: what edge-detect runs here)"
    )
    parser.add_argument(
        "--rate", type=float, default=0.0, help="edge-bench --rate for the e2e run (default 0: back to back)"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/pipeline_overhead"))
    args = parser.parse_args()
    rows = []
    for i in range(args.repeats):
        out = args.out / f"repeat_{i}.json"
        argv = ["--model", str(args.model), "--backend", args.backend, "--frames", str(args.frames),
                "--warmup", str(args.warmup), "--source", args.source, "--rate", str(args.rate),
                "--json", str(out)]  # fmt: skip
        if bench_cli.main(argv) != 0:
            return 1
        rows.append(ratios(json.loads(out.read_text())))
    keys = list(rows[0])
    print("| repeat | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for i, row in enumerate(rows):
        print(f"| {i} | " + " | ".join(f"{row[k]:.2f}" for k in keys) + " |")
    print("| median | " + " | ".join(f"{statistics.median(r[k] for r in rows):.2f}" for k in keys) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
