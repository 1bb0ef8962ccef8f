"""German Traffic Sign Detection Benchmark: ``gt.txt`` lines ``NNNNN.ppm;x1;y1;x2;y2;class``.

Corners are inclusive pixels. Class names are the numeric ids as strings ("14" is stop).
Images with no line in ``gt.txt`` carry no sign of any of the 43 classes: true negatives.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from stopsign.train.data.formats import RawImage, RawObject
from stopsign.train.data.layout import IMAGE_SUFFIXES, DatasetError

STOP_CLASS = "14"
# Red-rim prohibitory signs, give way and no entry: the look-alikes that fooled the first detector.
CONFUSER_CLASSES = tuple(str(c) for c in (0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 13, 15, 16, 17))


def parse_gt(path: Path) -> dict[str, list[RawObject]]:
    """{image stem: objects} from ``gt.txt``; a malformed line is a DatasetError naming file:line."""
    by_stem: dict[str, list[RawObject]] = defaultdict(list)
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.strip().split(";")
        if len(fields) != 6:
            raise DatasetError(f"{path}:{line_no}: expected 6 ';'-separated fields, got {len(fields)}")
        try:
            x1, y1, x2, y2 = (float(v) for v in fields[1:5])
            cls = int(fields[5])
        except ValueError as exc:
            raise DatasetError(f"{path}:{line_no}: {exc}") from None
        # Inclusive corners: the right/bottom pixel belongs to the box, so +1 for an exclusive edge.
        by_stem[Path(fields[0]).stem].append(RawObject(str(cls), (x1, y1, x2 + 1, y2 + 1)))
    return by_stem


def read_gtsdb(root: Path) -> Iterator[RawImage]:
    gt = root / "gt.txt"
    if not gt.is_file():
        raise DatasetError(f"{gt}: missing; a GTSDB folder needs gt.txt")
    by_stem = parse_gt(gt)
    images = sorted(p for p in root.iterdir() if p.suffix.lower() in (*IMAGE_SUFFIXES, ".ppm"))
    seen = {p.stem for p in images}
    missing = sorted(set(by_stem) - seen)
    if missing:
        raise DatasetError(f"{gt}: {len(missing)} annotated image(s) not in {root}, e.g. {missing[0]}")
    for image in images:
        yield RawImage(image, by_stem.get(image.stem, []))
