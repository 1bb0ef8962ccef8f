"""Synthetic-image throughput on ONE core (OpenCV threads pinned to 1), at 416x416 by default.

Measures render + JPEG encode per image (what ``edge-data synth`` does per image, minus the file
write). Usage: ``python bench/synth_throughput.py [--n 500] [--size 416] [--backgrounds DATASET]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2

from stopsign.train.data.synth.backgrounds import negative_photos
from stopsign.train.data.synth.generate import JPEG_QUALITY, SceneRenderer
from stopsign.train.data.synth.scene import SceneConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--size", type=int, default=416)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backgrounds", type=Path, help="canonical dataset for photo backgrounds")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    photos = negative_photos(args.backgrounds) if args.backgrounds else []
    renderer = SceneRenderer(args.seed, args.size, photos, SceneConfig())
    for i in range(min(50, args.n)):  # warm-up: sprite library, photo cache
        renderer.render(10_000_000 + i)
    start = time.perf_counter()
    for i in range(args.n):
        scene = renderer.render(i)
        cv2.imencode(".jpg", scene.image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    elapsed = time.perf_counter() - start
    source = f"photos from {args.backgrounds} + procedural" if photos else "procedural only"
    print(f"synth {args.size}x{args.size}, backgrounds: {source}")
    print(f"{args.n} images in {elapsed:.2f} s: {args.n / elapsed:.1f} img/s on 1 core")


if __name__ == "__main__":
    main()
