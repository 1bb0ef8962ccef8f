"""The control arm of the same-budget experiment: N frames drawn uniformly at random from the same
drives, pre-labelled by the same detector with tiles at the same proposal threshold as
``edge-data mine`` (so the two arms differ only in which frames are chosen), written as a task
folder of the same form (``mined.jsonl``, ``images/``, ``cvat_coco_1.0.zip``).

    .venv/bin/python recipes/data_engine/random_frames.py data/train_drives/* --n 150 --seed 0 --out out/de/random
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from stopsign.edge.model.artifacts import atomic_write_text
from stopsign.edge.replay.runner import load_backend
from stopsign.edge.vision.tiles import TileConfig
from stopsign.train.data.mine.export import write_cvat_coco, write_label_studio
from stopsign.train.data.mine.pipeline import MINED, write_images
from stopsign.train.data.mine.records import Candidate, Proposal
from stopsign.train.data.mine.scan import (
    FrameDetector,
    ModelRun,
    drive_name,
    iterate_frames,
    principal_point,
    read_meta,
)

REPO = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sources", nargs="+")
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tiles", default="auto")
    parser.add_argument("--model", type=Path, default=REPO / "edge" / "assets" / "stopsign.onnx")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    backend, spec = load_backend(args.model, "onnxruntime", args.threads)
    proposal_threshold = 0.8 * spec.operating_threshold  # as edge-data mine
    counts = {s: sum(1 for _ in iterate_frames(s)) for s in sorted(args.sources)}
    pool = [(s, i) for s, n in counts.items() for i in range(n)]
    rng = np.random.default_rng(args.seed)
    picked = sorted(pool[k] for k in rng.choice(len(pool), min(args.n, len(pool)), replace=False))
    wanted: dict[str, set[int]] = {}
    for source, index in picked:
        wanted.setdefault(source, set()).add(index)
    chosen = []
    for source, indices in wanted.items():
        centre = principal_point(read_meta(source))
        detector = FrameDetector(ModelRun(backend, spec), TileConfig.parse(args.tiles), False, centre, 0.05)
        for frame in iterate_frames(source):
            if frame.index not in indices:
                continue
            merged, _, _ = detector(frame.image)
            proposals = [
                Proposal([round(v, 2) for v in r[:4]], r[4], "detector")
                for r in merged
                if r[4] >= proposal_threshold
            ]
            h, w = frame.image.shape[:2]
            chosen.append(
                Candidate(
                    source, drive_name(source), frame.index, frame.pts_ns, w, h, ["random"], 0.0, proposals
                )
            )
    write_images(chosen, args.out, progress=False)
    atomic_write_text(args.out / MINED, "".join(c.to_json() + "\n" for c in chosen))
    write_cvat_coco(chosen, args.out)
    write_label_studio(chosen, args.out, "random control")
    print(f"{len(chosen)} random frames, {sum(len(c.proposals) for c in chosen)} proposals -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
