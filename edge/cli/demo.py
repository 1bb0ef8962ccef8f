"""The README's first command: the shipped model on a bundled recorded drive, on the CPU, in seconds.

    python -m stopsign.edge.cli.demo [--drive DIR] [--out DIR]

Runs ``edge-detect`` on ``samples/drives/day_approach`` with ``edge/assets/stopsign.onnx``,
printing events and the health line, and writes an annotated video. Without a shipped model
(a checkout before the first training run), it says so and runs the same pipeline on a
synthetic GStreamer test source with a randomly initialised model exported on the spot, which
shows the plumbing but cannot find real signs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from stopsign.edge.cli import detect

EDGE_ROOT = Path(__file__).resolve().parent.parent
REPO_ROOT = EDGE_ROOT.parent
SHIPPED_MODEL = EDGE_ROOT / "assets" / "stopsign.onnx"
DEFAULT_DRIVE = REPO_ROOT / "samples" / "drives" / "day_approach"


def _plumbing_model(folder: Path) -> Path:
    """A random-init yolov5n at 224 px (needs the train and export extras)."""
    from stopsign.export.onnx_export import export_onnx
    from stopsign.train.checkpoint import spec_for_model
    from stopsign.train.model import build_model

    model = build_model("yolov5n", 1).eval()
    return export_onnx(model, spec_for_model(model, ["stop_sign"], 224), folder / "untrained.onnx")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stopsign.edge.cli.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--drive", type=Path, default=DEFAULT_DRIVE, help="recorded drive folder")
    parser.add_argument(
        "--out", type=Path, default=Path("out/demo"), help="folder for the annotated video and logs"
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    outputs = ["--save", str(args.out / "annotated.mp4"), "--detections", str(args.out / "detections.jsonl")]
    if SHIPPED_MODEL.is_file() and args.drive.is_dir():
        print(f"demo: shipped model {SHIPPED_MODEL.name} on recorded drive {args.drive}", file=sys.stderr)
        code = detect.main(["--source", f"drive://{args.drive}", "--model", str(SHIPPED_MODEL), *outputs])
    else:
        missing = SHIPPED_MODEL if not SHIPPED_MODEL.is_file() else args.drive
        print(
            f"demo: {missing} is missing, so this runs the pipeline on a SYNTHETIC test source with an "
            "UNTRAINED model: it shows the plumbing (GStreamer -> ONNX Runtime -> events), not detection.",
            file=sys.stderr,
        )
        with tempfile.TemporaryDirectory() as tmp:
            try:
                model = _plumbing_model(Path(tmp))
            except ImportError as exc:
                print(f"demo: the plumbing model needs the train and export extras ({exc})", file=sys.stderr)
                return 1
            code = detect.main(
                ["--source", "test://?num-buffers=90&size=640x360", "--model", str(model), *outputs]
            )
    print(f"demo: annotated video and detections in {args.out}/", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
