"""Train/val split stratified by (source, role), with near-duplicates kept on one side.

Near-duplicates are found two ways: a 64-bit difference hash (dHash: 9x8 grey thumbnail, one bit
per horizontal neighbour comparison) within ``max_hamming`` bits, and Roboflow export names
(``<original>_jpg.rf.<hash>.jpg``: augmented copies of one photo share ``<original>``).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from stopsign.train.data import layout
from stopsign.train.data.layout import DatasetError

_ROBOFLOW = re.compile(r"^(?P<orig>.+)_(?:jpe?g|png|bmp|webp)\.rf\.[0-9a-f]{16,}$", re.IGNORECASE)


@dataclass
class SplitSummary:
    train: int
    val: int
    groups: int
    per_stratum: dict[str, tuple[int, int]]  # "source/role" -> (train, val)

    def lines(self) -> list[str]:
        out = [f"train {self.train}, val {self.val} ({self.groups} near-duplicate groups)"]
        out += [f"  {k}: train {t}, val {v}" for k, (t, v) in sorted(self.per_stratum.items())]
        return out


def dhash(image_bgr: np.ndarray) -> int:
    """64-bit difference hash of a BGR or grey image."""
    grey = image_bgr if image_bgr.ndim == 2 else cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
    small = cv2.resize(grey, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    return int(np.packbits(bits).view(">u8")[0])


def near_duplicate_groups(hashes: np.ndarray, max_hamming: int) -> np.ndarray:
    """Group id (n,) for (n,) uint64 hashes: connected components of 'within max_hamming bits'."""
    n = len(hashes)
    parent = np.arange(n)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    chunk = 1024  # bounds the (chunk, n) distance matrix to a few MB
    for start in range(0, n, chunk):
        block = hashes[start : start + chunk, None] ^ hashes[None, :]
        dist = np.bitwise_count(block)
        rows, cols = np.nonzero(dist <= max_hamming)
        for r, c in zip(rows + start, cols, strict=True):
            if c > r:
                a, b = find(int(r)), find(int(c))
                if a != b:
                    parent[max(a, b)] = min(a, b)
    return np.array([find(i) for i in range(n)])


def split_dataset(root: Path, val: float = 0.2, seed: int = 0, max_hamming: int = 4) -> SplitSummary:
    """Write ``train.txt``/``val.txt``/``data.yaml`` for the canonical dataset at ``root``.

    Each (source, role) stratum sends about ``val`` of its images to val (at least one when the
    stratum has two or more groups); a near-duplicate group never straddles the split.
    """
    if not 0.0 <= val < 1.0:
        raise DatasetError(f"--val must be in [0, 1), got {val}")
    root = Path(root)
    images = layout.list_images(root)
    if not images:
        raise DatasetError(f"{root / layout.IMAGES}: no images")
    sources = layout.read_sources(root)
    hashes = np.zeros(len(images), dtype=np.uint64)
    for i, path in enumerate(images):
        img = cv2.imread(str(path), cv2.IMREAD_REDUCED_GRAYSCALE_4)
        if img is None:
            raise DatasetError(f"{path}: cannot be decoded (run 'edge-data check')")
        hashes[i] = dhash(img)
    groups = near_duplicate_groups(hashes, max_hamming)
    by_name: dict[str, int] = {}
    for i, path in enumerate(images):  # merge Roboflow copies of the same original photo
        match = _ROBOFLOW.match(path.stem)
        if match:
            key = match.group("orig")
            if key in by_name:
                j = by_name[key]
                groups[groups == groups[i]] = groups[j]
            else:
                by_name[key] = i

    def stratum(i: int) -> str:
        rec = sources.get(images[i].name)
        return f"{rec.source}/{rec.role}" if rec else "unknown/unknown"

    members: dict[int, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[int(g)].append(i)
    strata: dict[str, list[int]] = defaultdict(list)
    for g, idx in members.items():
        strata[stratum(idx[0])].append(g)
    rng = np.random.default_rng(seed)
    is_val = np.zeros(len(images), dtype=bool)
    per_stratum: dict[str, tuple[int, int]] = {}
    for key in sorted(strata):
        gids = sorted(strata[key])
        rng.shuffle(gids)
        total = sum(len(members[g]) for g in gids)
        target = round(val * total)
        if val > 0 and len(gids) >= 2:
            target = max(target, 1)
        taken = 0
        for g in gids:
            if taken >= target or (len(gids) >= 2 and g == gids[-1] and taken > 0):
                break
            is_val[members[g]] = True
            taken += len(members[g])
        per_stratum[key] = (total - taken, taken)
    entries = [f"{layout.IMAGES}/{p.name}" for p in images]
    layout.write_list(root, layout.TRAIN_LIST, [e for e, v in zip(entries, is_val, strict=True) if not v])
    layout.write_list(root, layout.VAL_LIST, [e for e, v in zip(entries, is_val, strict=True) if v])
    layout.write_data_yaml(root)
    return SplitSummary(int((~is_val).sum()), int(is_val.sum()), len(members), per_stratum)
