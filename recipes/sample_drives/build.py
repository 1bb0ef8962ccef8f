"""Build the sample drives shipped in ``samples/drives/`` from validation photos of the real data.

    python recipes/sample_drives/build.py DATASET [--out samples/drives]

DATASET is the canonical real set made by ``recipes/shipped_model/train.sh`` (its ``val.txt`` is
the committed validation split). Every still used here is a validation image, so the shipped
model never trained on it. The licence and origin of each still is recorded in its meta.json and
credited in NOTICE.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

from stopsign.train.data import layout
from stopsign.train.data.drives import DriveOptions, build_drive, load_still

# (folder, kind, still, what to approach: "stop" = the largest stop sign, else a confuser class name)
SAMPLES = [
    (
        "day_approach",
        "approach",
        "roboflow-stop-signs_15_jpg.rf.a26e45357ebbfddeaaf22bf48a69dbe5.jpg",
        "stop",
    ),
    (
        "night_approach",
        "night",
        "roboflow-stop-signs_002121_jpg.rf.f691c49212e5570ec41922ff6debe23a.jpg",
        "stop",
    ),
    ("no_entry_and_yield", "confuser", "gtsdb_00482.jpg", "17"),
    (
        "occluded_approach",
        "approach",
        "roboflow-stop-signs_stop10_jpg.rf.ff52d83722c88b333a9f510a8634eb70.jpg",
        "stop",
    ),
]
OPTIONS = DriveOptions(frames=60, fps=15.0, width=640, height=360)


def build(dataset: Path, out: Path, seed: int = 1) -> list[Path]:
    val = {Path(e).name for e in layout.read_list(dataset, layout.VAL_LIST)}
    records = layout.read_sources(dataset)
    written = []
    for index, (folder, kind, name, target_name) in enumerate(SAMPLES):
        if name not in val:
            raise SystemExit(
                f"{name} is not a validation image of {dataset}: refusing to build a drive from it"
            )
        still, stops = load_still(dataset, name)
        h, w = still.shape[:2]
        if target_name == "stop":
            target = stops[int(np.argmax((stops[:, 2] - stops[:, 0]) * (stops[:, 3] - stops[:, 1])))]
        else:
            box = next(c["xyxy"] for c in records[name].confusers if c["name"] == target_name)
            target = np.array(box, np.float64) * [w, h, w, h]
        record = records[name]
        source = {
            "image": name,
            "original": record.original,
            "licence": record.licence,
            "target": target_name,
        }
        destination = out / folder
        if destination.exists():
            shutil.rmtree(destination)
        build_drive(still, target, stops, destination, kind, source, OPTIONS, seed + index)
        written.append(destination)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--out", type=Path, default=Path("samples/drives"))
    args = parser.parse_args()
    for folder in build(args.dataset, args.out):
        print(folder)


if __name__ == "__main__":
    main()
