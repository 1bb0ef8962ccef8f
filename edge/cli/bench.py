"""``edge-bench``: FPS and latency you can compare across backends, precisions and machines.

    edge-bench                                        shipped model, ONNX Runtime, model-only + end-to-end
    edge-bench --model m416.onnx m640.onnx --batch 1 4 --json out.json --plot out.png
    edge-bench --model m*.onnx --img 416 --precision int8
    edge-bench --mode e2e --source /dev/video0 --duration 60

Input size and precision are properties of a model file (a model cannot be re-exported at run
time): give several files (e.g. exported at 416 and 640, FP32 and INT8); ``--img`` and
``--precision`` select among them. Warm-up is excluded from every figure. The JSON layout is
``{"machine", "versions", "runs": [{"mode", "backend", "precision", "img", "batch", "frames", "fps",
"latency_ms": {"min","p50","p90","p99","max"}, "stages_ms" (e2e), "rss_mb", ...}]}``.

The default end-to-end source repeats one 720p BGR frame (``imagefreeze``): producing a frame then
costs what a camera's DMA delivery costs (one copy into Python), so the figures are the pipeline's,
not those of rendering synthetic video on the same cores. Pass ``--source`` for a camera or a file.

End to end, a ``gst://`` source (the default included) runs twice: paced at a camera's rate
(``--rate``, default 30 frames per second), which is the latency a car gets, and back to back
(rate 0), the figure of a source that hands over the next frame as soon as the last is done. Between
paced frames the threads sleep and wake up cold, so the paced figure is the higher one.
``--rate 30`` alone runs only the paced one; other sources deliver at their own rate.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from stopsign.edge.backends.base import BackendError, parse_property
from stopsign.edge.cli.benchmark import (
    BenchRun,
    FixedBatchError,
    bench_e2e,
    bench_model,
    model_file_spec,
    paced_source,
)
from stopsign.edge.cli.machine import library_versions, machine_info
from stopsign.edge.model.artifacts import atomic_write_text
from stopsign.edge.model.spec import ModelSpecError
from stopsign.edge.vision.tiles import TileConfig, TileConfigError

SHIPPED_MODEL = Path(__file__).resolve().parent.parent / "assets" / "stopsign.onnx"
# One 720p BGR frame rendered once and pushed forever: see the module docstring.
DEFAULT_SOURCE = (
    "gst://videotestsrc pattern=smpte num-buffers=1 ! video/x-raw,format=BGR,width=1280,height=720"
    " ! imagefreeze"
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edge-bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--model", type=Path, nargs="+", default=[SHIPPED_MODEL], help="model file(s) or checkpoint folder(s)"
    )
    p.add_argument(
        "--backend",
        nargs="+",
        default=["auto"],
        help="backend(s): auto, onnxruntime, openvino, torch, tensorrt",
    )
    p.add_argument("--img", type=int, nargs="+", help="keep only models with this input size (px)")
    p.add_argument("--precision", nargs="+", help="keep only models of this precision (fp32, fp16, int8)")
    p.add_argument("--mode", choices=("model", "e2e", "both"), default="both")
    p.add_argument(
        "--batch", type=int, nargs="+", default=[1], help="model-only batch sizes (dynamic-batch models)"
    )
    p.add_argument(
        "--source", default=DEFAULT_SOURCE, help=f"end-to-end source URI (default {DEFAULT_SOURCE})"
    )
    p.add_argument(
        "--tiles",
        nargs="+",
        default=["none"],
        help="end-to-end runs per edge-detect --tiles setting, e.g. none auto (default none)",
    )
    p.add_argument(
        "--rate",
        type=float,
        nargs="+",
        help="end-to-end: pace a gst:// source at these frames per second, 0 = back to back "
        "(default for gst:// sources, the default one included: 30 0; other sources run at their own rate)",
    )
    length = p.add_mutually_exclusive_group()
    length.add_argument("--frames", type=int, default=200, help="measured frames per run (default 200)")
    length.add_argument("--duration", type=float, help="measured seconds per run instead of --frames")
    p.add_argument("--warmup", type=int, default=20, help="frames excluded at the start (default 20)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for the backend (0: one per core)")
    p.add_argument(
        "--backend-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a backend-specific setting, repeatable, as edge-detect's (e.g. ENABLE_CPU_PINNING=NO)",
    )
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--plot", type=Path, help="latency histograms per configuration (PNG)")
    return p


def markdown(runs: list[BenchRun]) -> str:
    lines = ["| mode | backend | precision | img | tiles | pace | batch | frames | FPS | p50 ms | p90 ms | p99 ms | max ms | CPU ms/frame | stages p50 ms (pre/infer/post/track) | file |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for run in runs:
        lat = run.latency_summary()
        st = run.stages_ms
        stages = (
            "/".join(
                f"{st[k]:.2f}" if st.get(k) is not None else "-"
                for k in ("preprocess", "infer", "postprocess", "track")
            )
            if st
            else "-"
        )
        cpu = f"{run.cpu_ms_per_frame:.1f}" if run.cpu_ms_per_frame is not None else "-"
        tiles = run.tiles if run.mode == "e2e" else "-"
        pace = rate_text(run.rate) if run.mode == "e2e" else "-"
        lines.append(f"| {run.mode} | {run.backend} | {run.precision} | {run.img} | {tiles} | {pace} | {run.batch} | {run.frames} | "
                     f"{run.fps:.1f} | {lat['p50']:.2f} | {lat['p90']:.2f} | {lat['p99']:.2f} | {lat['max']:.2f} | {cpu} | {stages} | {Path(run.model).name} |")  # fmt: skip
    return "\n".join(lines)


def run_label(run: BenchRun) -> str:
    """One line naming a configuration: mode, backend, precision, file, size, batch, tiles."""
    tiles = f" tiles {run.tiles}" if run.mode == "e2e" and run.tiles != "none" else ""
    pace = f", {rate_text(run.rate)}" if run.mode == "e2e" else ""
    name = f" {Path(run.model).name}" if run.model else ""
    return f"{run.mode} {run.backend} {run.precision}{name} {run.img}px batch {run.batch}{tiles}{pace}"


def plot(runs: list[BenchRun], out: Path) -> None:
    """A summary (p50 bar, p99 whisker per configuration) above one latency histogram per configuration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary_height = 0.8 + 0.32 * len(runs)
    fig, axes = plt.subplots(
        len(runs) + 1, 1, figsize=(8, summary_height + 2.2 * len(runs)), squeeze=False,
        gridspec_kw={"height_ratios": [summary_height] + [2.2] * len(runs)},
    )  # fmt: skip
    colours = ["tab:blue" if run.mode == "model" else "tab:orange" for run in runs]
    summary = axes[0, 0]
    p50 = [run.latency_summary()["p50"] for run in runs]
    p99 = [run.latency_summary()["p99"] for run in runs]
    rows = list(range(len(runs)))
    summary.barh(
        rows, p50, color=colours, xerr=[[0] * len(runs), [b - a for a, b in zip(p50, p99)]], capsize=3
    )
    summary.set_yticks(rows, [run_label(run) for run in runs], fontsize=7)
    summary.invert_yaxis()
    summary.set_xlabel("latency (ms): bar p50, whisker p99; blue model only, orange end to end", fontsize=8)
    for ax, run, colour in zip(axes[1:, 0], runs, colours):
        ax.hist(run.latencies_ms, bins=50, color=colour)
        lat = run.latency_summary()
        for key, style in (("p50", "-"), ("p99", "--")):
            ax.axvline(
                lat[key], color="black", linestyle=style, linewidth=1, label=f"{key} {lat[key]:.1f} ms"
            )
        ax.set_title(run_label(run), fontsize=9)
        ax.legend(fontsize=7)
    axes[-1, 0].set_xlabel("latency (ms)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def select_models(models: list[Path], img: list[int] | None, precision: list[str] | None) -> list[Path]:
    """The models whose ModelSpec matches ``--img`` / ``--precision``; an error names what is missing."""
    if not img and not precision:
        return models
    specs = {m: model_file_spec(m) for m in models}
    chosen = [
        m
        for m, (size, prec) in specs.items()
        if (not img or size in img) and (not precision or prec in precision)
    ]
    found = ", ".join(f"{m.name} ({size} px {prec})" for m, (size, prec) in specs.items())
    for size in img or []:
        if not any(specs[m][0] == size for m in chosen):
            raise ModelSpecError(
                f"--img {size}: no given model has that input size (given: {found}); the input size is "
                f"fixed at export: `edge-export onnx --img {size}` and pass that file too"
            )
    if not chosen:
        raise ModelSpecError(
            f"--precision {' '.join(precision or [])}: no given model matches (given: {found})"
        )
    return chosen


def _can_run(backend: str, model: Path) -> bool:
    """An OpenVINO IR runs on openvino (or auto) only: other pairings are left out of the plan, said once."""
    if Path(model).suffix.lower() == ".xml" and backend not in ("openvino", "auto"):
        print(f"edge-bench: {backend} cannot run the OpenVINO IR {model}: left out", file=sys.stderr)
        return False
    return True


DEFAULT_RATES = (30.0, 0.0)


def e2e_rates(source: str, rates: Sequence[float] | None) -> list[float | None]:
    """The paces of the end-to-end runs: as given, else a camera's rate and back to back for a
    ``gst://`` source, else the source's own (None)."""
    if rates:
        return list(rates)
    return list(DEFAULT_RATES) if source.startswith("gst://") else [None]


def rate_text(rate: float | None) -> str:
    if rate is None:
        return "source's rate"
    return "back to back" if rate == 0 else f"{rate:g} fps"


def _collect(args: argparse.Namespace) -> list[BenchRun]:
    try:
        properties = dict(parse_property(text) for text in args.backend_option)
    except ValueError as exc:
        raise SystemExit(f"edge-bench: --backend-option: {exc}") from None
    plan = [
        (model, backend, mode, batch, tiles, rate)
        for model in select_models(args.model, args.img, args.precision)
        for backend in args.backend
        if _can_run(backend, model)
        for mode in (("model", "e2e") if args.mode == "both" else (args.mode,))
        for batch in (args.batch if mode == "model" else [1])
        for tiles in (args.tiles if mode == "e2e" else ["none"])
        for rate in (e2e_rates(args.source, args.rate) if mode == "e2e" else [None])
    ]
    runs: list[BenchRun] = []
    for number, (model, backend, mode, batch, tiles, rate) in enumerate(plan, 1):
        what = f"tiles {tiles}, {rate_text(rate)}" if mode == "e2e" else f"batch {batch}"
        print(f"edge-bench: [{number}/{len(plan)}] {mode} {backend} {what} {model}", file=sys.stderr)
        if mode == "e2e":
            runs.append(
                bench_e2e(
                    model,
                    backend,
                    args.source,
                    args.frames,
                    args.warmup,
                    args.threads,
                    args.duration,
                    tiles,
                    rate,
                    options={"backend_options": properties} if properties else None,
                )
            )
            continue
        try:
            runs.append(
                bench_model(
                    model, backend, args.frames, args.warmup, batch, args.threads, args.duration, properties
                )
            )
        except FixedBatchError as exc:
            print(f"edge-bench: skipped: {exc}", file=sys.stderr)
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if (
        args.frames < 2
        or args.warmup < 0
        or any(b < 1 for b in args.batch)
        or (args.duration is not None and args.duration <= 0)
    ):
        print(
            "edge-bench: --frames must be >= 2, --warmup >= 0, --batch >= 1, --duration > 0", file=sys.stderr
        )
        return 2
    try:
        for rate in args.rate or ():
            paced_source(args.source, rate)
    except ValueError as exc:
        print(f"edge-bench: {exc}", file=sys.stderr)
        return 2
    for tiles in args.tiles:
        try:
            TileConfig.parse(tiles)
        except TileConfigError as exc:
            print(f"edge-bench: --tiles: {exc}", file=sys.stderr)
            return 2
    missing = [str(m) for m in args.model if not m.exists()]  # a torch checkpoint is a folder
    if missing:
        print(f"edge-bench: model {', '.join(missing)} not found", file=sys.stderr)
        return 2
    try:
        runs = _collect(args)
    except (BackendError, ModelSpecError, RuntimeError) as exc:
        print(f"edge-bench: {exc}", file=sys.stderr)
        return 1
    print(markdown(runs))
    if args.json:
        report = {
            "machine": machine_info(),
            "versions": library_versions(),
            "runs": [r.to_dict() for r in runs],
        }
        atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")
    if args.plot:
        plot(runs, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
