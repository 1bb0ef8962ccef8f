"""Is reading a ROS bag the bottleneck? ``bag://`` against the same frames from ``file://``.

    .venv/bin/python bench/bag_source.py --rounds 3 --json bench/results/bag_source.json

Builds, once, the same 240 frames (``--repeat`` times over) at 1280x720 (the four bundled sample drives, upscaled) two ways:
a rosbag2 MCAP of ``sensor_msgs/CompressedImage`` JPEG (quality 90, stamps at the drives' 15 fps),
and an MJPEG AVI of the very same JPEG bytes (muxed by GStreamer) that ``file://`` reads through
GStreamer (demux, jpegdec, BGR). Then, alternating bag and file within each round (this VM's speed swings within minutes):

- source cost per frame: ``read()`` of every frame, decode to the loop's BGR frame included,
  nothing else running in the process;
- end-to-end through ``edge-detect``'s pipeline (``edge-bench``'s ``bench_e2e``: sanity,
  letterbox, ONNX Runtime, decode + NMS, tracker), back to back (as fast as the model goes) and
  at the camera's rate (15 fps, both live: ``bag://...?realtime=1`` against the file paced by
  GStreamer's clock, ``identity sync=true``, with ``--live``). Back to back, latency is preprocess
  to the tracker's result (ordered sources have no capture age); paced, capture age is added, as
  edge-bench reports it. A bag frame is "captured" at its stamp's place on the timeline, before its
  JPEG is decoded; a file frame when GStreamer hands it over decoded: the bag's capture age carries
  its decode, the file's does not.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from stopsign.edge.cli.benchmark import bench_e2e
from stopsign.edge.replay.drive import open_drive, read_frames
from stopsign.edge.sources.base import SourceOptions
from stopsign.edge.sources.factory import open_source

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "edge" / "assets" / "stopsign.onnx"
SIZE = (1280, 720)
FPS = 15
JPEG_QUALITY = 90


def build_inputs(folder: Path, repeat: int = 1) -> tuple[Path, Path, int]:
    """(bag, avi, frame count): the sample drives' frames at 720p (``repeat`` times over), as JPEG in both."""
    from stopsign.edge.rosmsg import build
    from stopsign.edge.rosmsg.images import encode_compressed
    from stopsign.edge.rosmsg.types import COMPRESSED_IMAGE, typestore
    from stopsign.edge.rosmsg.writer import bag_writer

    frames = [cv2.resize(image, SIZE, interpolation=cv2.INTER_LINEAR)
              for drive in sorted((REPO / "samples" / "drives").iterdir())
              for image in read_frames(open_drive(drive))] * repeat  # fmt: skip
    bag, avi = folder / "720p.mcap", folder / "720p.avi"
    t0 = 1_700_000_000_000_000_000
    with bag_writer(bag) as writer:
        connection = writer.add_connection(
            "/camera/image_raw/compressed", COMPRESSED_IMAGE, typestore=typestore()
        )
        for i, image in enumerate(frames):
            stamp = t0 + i * 1_000_000_000 // FPS
            fmt, data = encode_compressed(image, "jpeg", JPEG_QUALITY)
            writer.write(connection, stamp, build.serialize(build.compressed_image(stamp, fmt, data)))
    # The AVI holds the very JPEG bytes the bag holds (GStreamer muxes the files as they are), so
    # both sources decode the same data.
    jpegs = folder / "jpeg"
    jpegs.mkdir()
    for i, image in enumerate(frames):
        (jpegs / f"{i:05d}.jpg").write_bytes(encode_compressed(image, "jpeg", JPEG_QUALITY)[1])
    subprocess.run(["gst-launch-1.0", "-q", "multifilesrc", f"location={jpegs}/%05d.jpg", "index=0",
                    f"caps=image/jpeg,framerate={FPS}/1", "!", "jpegparse", "!", "avimux", "!", "filesink",
                    f"location={avi}"], check=True)  # fmt: skip
    return bag, avi, len(frames)


def source_cost(uri: str) -> dict[str, float]:
    """ms per ``read()`` over every frame of ``uri`` (median, p99, mean) and the frame count."""
    source = open_source(uri, SourceOptions(live=False), lambda *_: None)
    times: list[float] = []
    try:
        while True:
            start = time.perf_counter()
            frame = source.read(5.0)
            elapsed = time.perf_counter() - start
            if frame is None:
                if source.eos:
                    break
                continue
            assert frame.image.shape[:2] == (SIZE[1], SIZE[0]), frame.image.shape
            times.append(elapsed * 1e3)
    finally:
        source.close()
    return {"frames": len(times), "p50": float(np.median(times)), "p99": float(np.percentile(times, 99)),
            "mean": float(np.mean(times))}  # fmt: skip


def e2e(uri: str, frames: int, warmup: int, live: bool | None = None) -> dict[str, Any]:
    run = bench_e2e(MODEL, "onnxruntime", uri, frames, warmup, threads=2, source_live=live)
    data = run.to_dict() if hasattr(run, "to_dict") else vars(run)
    latency = data["latency_ms"]
    return {"fps": round(float(data["fps"]), 1), "p50": latency["p50"], "p99": latency["p99"],
            "stages_ms": data.get("stages_ms")}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=200, help="measured back-to-back frames per run")
    parser.add_argument("--paced-frames", type=int, default=40, help="measured frames per paced run")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=1, help="play the 240 frames this many times over")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        bag, avi, count = build_inputs(Path(tmp), args.repeat)
        uris = {
            "bag": {"fast": f"bag://{bag}", "paced": f"bag://{bag}?realtime=1"},
            "file": {"fast": f"file://{avi}",
                     "paced": f"gst://filesrc location={avi} ! avidemux ! jpegdec ! identity sync=true"},
        }  # fmt: skip
        print(f"{count} frames at {SIZE[0]}x{SIZE[1]}: bag {bag.stat().st_size / 1e6:.1f} MB, "
              f"avi {avi.stat().st_size / 1e6:.1f} MB")  # fmt: skip
        for round_no in range(args.rounds):
            for kind in ("bag", "file"):  # alternated within the round: the machine's speed drifts
                row: dict[str, Any] = {
                    "round": round_no,
                    "source": kind,
                    "cost_ms": source_cost(uris[kind]["fast"]),
                }
                row["e2e_fast"] = e2e(uris[kind]["fast"], args.frames, args.warmup)
                # A live source skips what the detector is too late for: fewer frames get processed.
                row["e2e_paced"] = e2e(uris[kind]["paced"], args.paced_frames, 10, live=True)
                results.append(row)
                print(json.dumps(row), flush=True)
    print("\n| source | read+decode ms/frame p50 (p99), per round | e2e back to back: FPS, p50 / p99 ms | "
          "e2e at 15 fps (live): FPS, p50 / p99 ms |")  # fmt: skip
    print("|---|---|---|---|")
    for kind in ("bag", "file"):
        rows = [r for r in results if r["source"] == kind]
        cost = ", ".join(f"{r['cost_ms']['p50']:.2f} ({r['cost_ms']['p99']:.2f})" for r in rows)
        fast = ", ".join(
            f"{r['e2e_fast']['fps']}: {r['e2e_fast']['p50']:.1f} / {r['e2e_fast']['p99']:.1f}" for r in rows
        )
        paced = ", ".join(
            f"{r['e2e_paced']['fps']}: {r['e2e_paced']['p50']:.1f} / {r['e2e_paced']['p99']:.1f}"
            for r in rows
        )
        med = statistics.median(r["cost_ms"]["p50"] for r in rows)
        print(f"| {kind} | {cost} (median {med:.2f}) | {fast} | {paced} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
