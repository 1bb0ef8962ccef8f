"""Contact sheet of a canonical dataset: images with stop boxes (green) and confuser boxes (orange)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from stopsign.train.data import layout
from stopsign.train.data.labels import parse_label_text, to_array
from stopsign.train.data.layout import DatasetError


def _tile(image: Path, record: layout.SourceRecord | None, tile: int) -> np.ndarray:
    img = cv2.imread(str(image))
    if img is None:
        raise DatasetError(f"{image}: cannot be decoded")
    h, w = img.shape[:2]
    scale = tile / max(h, w)
    img = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    canvas = np.full((tile, tile, 3), 40, np.uint8)
    canvas[: img.shape[0], : img.shape[1]] = img
    sw, sh = img.shape[1], img.shape[0]
    if record:
        for conf in record.confusers:
            x1, y1, x2, y2 = conf["xyxy"]
            p1, p2 = (round(x1 * sw), round(y1 * sh)), (round(x2 * sw), round(y2 * sh))
            cv2.rectangle(canvas, p1, p2, (0, 140, 255), 1, cv2.LINE_AA)
    label = layout.label_path_for(image)
    if label.is_file():
        good, _ = parse_label_text(label.read_text(), 1)
        _, boxes = to_array(good)
        for x1, y1, x2, y2 in layout.yolo_to_xyxy(boxes, sw, sh):
            cv2.rectangle(canvas, (round(x1), round(y1)), (round(x2), round(y2)), (0, 255, 0), 2, cv2.LINE_AA)
    caption = f"{record.source[:18]} {record.role}" if record else image.stem[:24]
    cv2.putText(canvas, caption, (3, tile - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(
        canvas, caption, (3, tile - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA
    )
    return canvas


def preview_grid(root: Path, n: int = 24, cols: int = 6, tile: int = 256, seed: int = 0) -> np.ndarray:
    """(rows*tile, cols*tile, 3) uint8 BGR sheet of ``n`` images sampled (seeded) across sources and roles."""
    root = Path(root)
    images = layout.list_images(root)
    if not images:
        raise DatasetError(f"{root / layout.IMAGES}: no images")
    records = layout.read_sources(root)
    rng = np.random.default_rng(seed)
    by_group: dict[str, list[Path]] = {}
    for image in images:
        rec = records.get(image.name)
        by_group.setdefault(f"{rec.source}/{rec.role}" if rec else "?", []).append(image)
    for members in by_group.values():
        rng.shuffle(members)
    chosen: list[Path] = []
    while len(chosen) < min(n, len(images)):  # round-robin so every source/role shows up
        for key in sorted(by_group):
            if by_group[key] and len(chosen) < n:
                chosen.append(by_group[key].pop())
    tiles = [_tile(p, records.get(p.name), tile) for p in chosen]
    while len(tiles) % cols:
        tiles.append(np.zeros((tile, tile, 3), np.uint8))
    return np.vstack([np.hstack(tiles[i : i + cols]) for i in range(0, len(tiles), cols)])


def write_preview(root: Path, out: Path, n: int = 24, cols: int = 6, tile: int = 256, seed: int = 0) -> Path:
    grid = preview_grid(root, n, cols, tile, seed)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), grid):
        raise DatasetError(f"{out}: could not write the preview (unknown image extension?)")
    return out
