"""Soak test of the edge pipeline: RSS, open fds, threads and latency over time -> JSON + PNG.

    .venv/bin/python bench/soak.py --model model.onnx --minutes 30 --out bench/results/soak

Runs ``edge-detect``'s pipeline in this process on a live test source (or --source) and samples
/proc/self every --sample-s seconds; latency p50/p99 come from the 1 Hz heartbeat events.
The summary compares RSS after warm-up with the end and p99 in the first and last fifths.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path

from tqdm import tqdm

from stopsign.edge.cli.detect import run_detect
from stopsign.edge.cli.detect_config import DetectConfig


def proc_stats() -> dict[str, float]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "Threads"):
            fields[key] = int(value.split()[0])
    return {
        "rss_mb": fields["VmRSS"] / 1024,
        "threads": fields["Threads"],
        "fds": len(os.listdir("/proc/self/fd")),
    }


def sample(stop: threading.Event, every_s: float, duration_s: float, out: list[dict[str, float]]) -> None:
    start = time.monotonic()
    with tqdm(total=int(duration_s), unit="s", desc="soak") as bar:
        while not stop.wait(every_s):
            elapsed = time.monotonic() - start
            out.append({"t_s": round(elapsed, 1), **proc_stats()})
            bar.n = min(int(elapsed), int(duration_s))
            bar.refresh()
            if elapsed >= duration_s:
                stop.set()


def summarise(samples: list[dict[str, float]], beats: list[dict], warmup_s: float) -> dict[str, float | None]:
    after = [s for s in samples if s["t_s"] >= warmup_s] or samples
    p99 = [b["p99_ms"] for b in beats if b.get("p99_ms") is not None]
    fifth = max(1, len(p99) // 5)

    def mean(xs: list[float]) -> float | None:
        return round(sum(xs) / len(xs), 2) if xs else None

    rss0, rss1 = after[0]["rss_mb"], after[-1]["rss_mb"]
    return {
        "rss_after_warmup_mb": round(rss0, 1),
        "rss_end_mb": round(rss1, 1),
        "rss_growth_pct": round(100 * (rss1 - rss0) / rss0, 2),
        "fds_start": after[0]["fds"],
        "fds_end": after[-1]["fds"],
        "threads_start": after[0]["threads"],
        "threads_end": after[-1]["threads"],
        "p99_ms_first_fifth": mean(p99[:fifth]),
        "p99_ms_last_fifth": mean(p99[-fifth:]),
        "heartbeats": len(beats),
    }


def plot(samples: list[dict[str, float]], beats: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(4, 1, figsize=(8, 9), sharex=True)
    t = [s["t_s"] for s in samples]
    for ax, key in zip(axes[:3], ("rss_mb", "fds", "threads")):
        ax.plot(t, [s[key] for s in samples])
        ax.set_ylabel(key)
    t0 = beats[0]["monotonic_ns"] if beats else 0
    bt = [(b["monotonic_ns"] - t0) / 1e9 for b in beats]
    for key in ("p50_ms", "p99_ms"):
        axes[3].plot(bt, [b.get(key) or float("nan") for b in beats], label=key)
    axes[3].set_ylabel("latency ms")
    axes[3].set_xlabel("seconds")
    axes[3].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--source", default="test://?size=640x480&fps=30")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--sample-s", type=float, default=5.0)
    parser.add_argument("--warmup-s", type=float, default=60.0)
    parser.add_argument("--budget-ms", type=float, default=100.0)
    parser.add_argument("--out", default="bench/results/soak")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    events = out / "events.jsonl"
    events.unlink(missing_ok=True)
    config = DetectConfig(
        source=args.source, model=args.model, events=str(events), health=False, budget_ms=args.budget_ms
    )
    stop, samples = threading.Event(), []
    sampler = threading.Thread(
        target=sample, args=(stop, args.sample_s, args.minutes * 60, samples), daemon=True
    )
    sampler.start()
    code = run_detect(config, stop)
    stop.set()
    sampler.join()
    beats = [e for e in map(json.loads, events.read_text().splitlines()) if e["event"] == "heartbeat"]
    result = {
        "config": {**vars(args)},
        "exit_code": code,
        "summary": summarise(samples, beats, args.warmup_s),
        "samples": samples,
        "latency": [
            {k: b.get(k) for k in ("monotonic_ns", "fps", "p50_ms", "p99_ms", "drop_rate")} for b in beats
        ],
    }
    (out / "soak.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(samples, beats, out / "soak.png")
    print(json.dumps(result["summary"], indent=2))


if __name__ == "__main__":
    main()
