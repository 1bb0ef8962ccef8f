"""Validate a canonical dataset; every problem names ``file:line`` and the reason.

The training loader calls ``check_dataset`` (or ``require_valid``) and refuses a broken set with
the same messages as ``edge-data check``. ``write_fixed_copy`` writes a cleaned copy elsewhere:
a dataset is never edited in place.
"""

from __future__ import annotations

import hashlib
import shutil
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from stopsign.train.data import layout
from stopsign.train.data.labels import parse_label_text
from stopsign.train.data.layout import DatasetError

JPEG_EOI = b"\xff\xd9"


@dataclass(frozen=True)
class Problem:
    """One finding. ``line`` is 1-based, 0 when it concerns the whole file."""

    path: Path
    line: int
    message: str
    severity: str = "error"  # "error" makes the set unusable; "warning" does not

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.severity}: {self.message}"


def check_image_bytes(data: bytes, suffix: str) -> str | None:
    """Reason the bytes are not a complete, decodable image, or None when fine."""
    if not data:
        return "empty file"
    if suffix.lower() in (".jpg", ".jpeg"):
        if not data.startswith(b"\xff\xd8"):
            return "not a JPEG (no start-of-image marker)"
        # Encoders may pad after EOI, so look in the tail rather than the last two bytes only.
        if JPEG_EOI not in data[-64:]:
            return "truncated JPEG (no end-of-image marker)"
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        return "unreadable image (cannot be decoded)"
    return None


def check_dataset(root: Path, nc: int | None = None) -> list[Problem]:
    """All problems of the canonical dataset at ``root`` (errors and warnings), in file order."""
    root = Path(root)
    problems: list[Problem] = []
    try:
        doc = layout.read_data_yaml(root)
    except DatasetError as exc:
        return [Problem(root / layout.DATA_YAML, 0, str(exc))]
    names = doc.get("names") or []
    if nc is None:
        nc = int(doc.get("nc", len(names)))
    if nc != len(names):
        problems.append(Problem(root / layout.DATA_YAML, 0, f"nc={nc} but {len(names)} names {names}"))
    images = layout.list_images(root)
    stems = {p.stem for p in images}
    first_by_hash: dict[str, Path] = {}
    hash_of: dict[str, str] = {}
    for image in images:
        data = image.read_bytes()
        reason = check_image_bytes(data, image.suffix)
        if reason:
            problems.append(Problem(image, 0, reason))
        digest = hashlib.sha256(data).hexdigest()
        hash_of[image.name] = digest
        if digest in first_by_hash:
            problems.append(Problem(image, 0, f"duplicate image: same bytes as {first_by_hash[digest].name}"))
        else:
            first_by_hash[digest] = image
        label = layout.label_path_for(image)
        if not label.is_file():
            problems.append(Problem(image, 0, "no label file (treated as a negative)", "warning"))
            continue
        _, bad = parse_label_text(label.read_text(errors="replace"), nc)
        problems += [Problem(label, line_no, reason) for line_no, reason in bad]
    label_dir = root / layout.LABELS
    if label_dir.is_dir():
        for label in sorted(label_dir.glob("*.txt")):
            if label.stem not in stems:
                problems.append(Problem(label, 0, f"label without image (no {layout.IMAGES}/{label.stem}.*)"))
    problems += _check_lists(root, {p.name for p in images}, hash_of)
    return problems


def _check_lists(root: Path, image_names: set[str], hash_of: dict[str, str]) -> list[Problem]:
    problems: list[Problem] = []
    where: dict[str, list[tuple[str, int]]] = defaultdict(list)  # content hash -> [(list, line)]
    for list_name in (layout.TRAIN_LIST, layout.VAL_LIST):
        path = root / list_name
        if not path.is_file():
            problems.append(Problem(path, 0, "split list missing (run 'edge-data split')", "warning"))
            continue
        for line_no, entry in enumerate(path.read_text().splitlines(), start=1):
            entry = entry.strip()
            if not entry:
                continue
            name = Path(entry).name
            if name not in image_names:
                problems.append(Problem(path, line_no, f"listed image {entry!r} does not exist"))
                continue
            where[hash_of[name]].append((list_name, line_no))
    for places in where.values():
        lists = {name for name, _ in places}
        if len(lists) > 1:
            val_line = next(line for name, line in places if name == layout.VAL_LIST)
            train_line = next(line for name, line in places if name == layout.TRAIN_LIST)
            problems.append(
                Problem(
                    root / layout.VAL_LIST,
                    val_line,
                    f"same image in train and val (also {layout.TRAIN_LIST}:{train_line})",
                )
            )
    return problems


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]


def require_valid(root: Path, nc: int | None = None) -> list[Problem]:
    """Raise DatasetError listing every error (as file:line: reason); return the warnings otherwise."""
    problems = check_dataset(root, nc)
    bad = errors(problems)
    if bad:
        shown = "\n".join(str(p) for p in bad[:50])
        more = f"\n... and {len(bad) - 50} more" if len(bad) > 50 else ""
        raise DatasetError(f"{root}: {len(bad)} error(s); run 'edge-data check {root}':\n{shown}{more}")
    return [p for p in problems if p.severity != "error"]


def write_fixed_copy(root: Path, out: Path, nc: int | None = None) -> tuple[int, int]:
    """Copy ``root`` to ``out`` without the images that have errors; returns (kept, dropped).

    An image is dropped when it is unreadable, a byte-duplicate of an earlier one, or its label has
    any bad line (dropping only the line would leave an unlabelled stop sign: a false negative).
    Orphan labels are not copied; an image listed in both train and val stays in train only.
    """
    root, out = Path(root), Path(out)
    if out.resolve() == root.resolve():
        raise DatasetError("--fix must name a new folder; a dataset is never edited in place")
    if out.exists() and any(out.iterdir()):
        raise DatasetError(f"{out}: output folder exists and is not empty")
    problems = check_dataset(root, nc)
    images = layout.list_images(root)
    stems = {i.stem for i in images}
    # Errors on an image or on its label file drop that image; list-file errors drop nothing.
    drop = {p.path.stem for p in errors(problems) if p.path.parent.name in (layout.IMAGES, layout.LABELS)}
    drop &= stems
    (out / layout.IMAGES).mkdir(parents=True)
    (out / layout.LABELS).mkdir()
    kept = 0
    for image in images:
        if image.stem in drop:
            continue
        shutil.copyfile(image, out / layout.IMAGES / image.name)
        label = layout.label_path_for(image)
        (out / layout.LABELS / label.name).write_text(label.read_text() if label.is_file() else "")
        kept += 1
    sources = layout.read_sources(root)
    layout.write_sources(out, [r for name, r in sources.items() if Path(name).stem not in drop])
    train = [e for e in layout.read_list(root, layout.TRAIN_LIST) if Path(e).stem not in drop]
    train_set = set(train)
    val = [
        e for e in layout.read_list(root, layout.VAL_LIST) if Path(e).stem not in drop and e not in train_set
    ]
    layout.write_list(out, layout.TRAIN_LIST, train)
    layout.write_list(out, layout.VAL_LIST, val)
    layout.write_data_yaml(out)
    return kept, len(images) - kept
