"""Pack an imported dataset for a trip to a lent GPU machine: same layout, images shrunk.

    python recipes/shipped_model/pack.py data/real gpu_pack/real [--max-side 448] [--quality 80]

Copies data.yaml, sources.jsonl, the split lists and the label files unchanged (labels are
normalised, so they hold for any size) and re-encodes every image in its own format (JPEG at
``--quality``) with its longer side at most ``--max-side`` pixels (smaller ones are not enlarged): 1,532 real photos come to about 37 MiB, under the 64 MiB a device call
carries. Then: recipes/shipped_model/train_gpu.sh gpu_pack/real OUT on the device.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import cv2
from tqdm import tqdm

from stopsign.train.data.layout import IMAGE_SUFFIXES
from stopsign.train.dataset import load_resized


def pack(src: Path, dst: Path, max_side: int, quality: int) -> int:
    images = sorted(p for p in (src / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise SystemExit(f"{src}/images: no images (give an imported dataset folder)")
    (dst / "images").mkdir(parents=True, exist_ok=True)
    shutil.copytree(src / "labels", dst / "labels", dirs_exist_ok=True)
    for name in ("data.yaml", "sources.jsonl", "train.txt", "val.txt"):
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)
    total = 0
    for path in tqdm(images, desc="packing", unit="img"):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise SystemExit(f"{path}: cannot decode image")
        if max(image.shape[:2]) > max_side:
            image = load_resized(path, max_side)
        # Same file name: the split lists and sources.jsonl name images by it.
        out = dst / "images" / path.name
        ok, encoded = cv2.imencode(
            path.suffix.lower() if path.suffix.lower() != ".jpeg" else ".jpg",
            image,
            [cv2.IMWRITE_JPEG_QUALITY, quality],
        )
        if not ok:
            raise SystemExit(f"{path}: cannot encode")
        out.write_bytes(encoded.tobytes())
        total += len(encoded)
    print(f"packed {len(images)} images into {dst} ({total / 2**20:.1f} MiB of images)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("src", type=Path, help="imported dataset folder (images/, labels/, sources.jsonl)")
    parser.add_argument("dst", type=Path)
    parser.add_argument("--max-side", type=int, default=448)
    parser.add_argument("--quality", type=int, default=80, help="JPEG quality")
    args = parser.parse_args(argv)
    return pack(args.src, args.dst, args.max_side, args.quality)


if __name__ == "__main__":
    sys.exit(main())
