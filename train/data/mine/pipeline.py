"""Shard and merge: ``edge-data mine --shard I/N`` scans its share of the sources and writes their
candidates; the merge applies the global budget and the deduplication, reads the chosen frames
back from their sources and writes the labelling task. A single run is shard 0/1 then the merge,
so sharded and single runs choose the same frames by construction (tested).

Task folder::

    TASK/images/<drive>_<frame>.jpg   the chosen frames
    TASK/mined.jsonl                  one Candidate per frame: source, frame index, stamp, reasons,
                                      proposals, image
    TASK/summary.md                   frames per reason and per drive
    TASK/contact_sheet.png            the chosen frames with their proposals drawn
    TASK/cvat/...                     CVAT COCO 1.0 (see :mod:`.export`)
    TASK/label_studio/tasks.json      Label Studio tasks with predictions
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
from tqdm import tqdm

from stopsign.edge.model.artifacts import atomic_write_text
from stopsign.edge.vision.tiles import TileConfig
from stopsign.train.data.layout import DatasetError
from stopsign.train.data.mine.diversity import DiversityConfig, select
from stopsign.train.data.mine.records import Candidate
from stopsign.train.data.mine.scan import ModelRun, SourceScan, iterate_frames, scan_source
from stopsign.train.data.mine.signals import SignalConfig, collect

CANDIDATES = "candidates.jsonl"
DRIVES = "drives.jsonl"
MINED = "mined.jsonl"
IMAGES = "images"


@dataclass
class MineConfig:
    """What a shard needs besides the sources: tiles, signal thresholds, confidence floor."""

    tiles: TileConfig = field(default_factory=lambda: TileConfig.parse("auto"))
    signals: SignalConfig = field(default_factory=SignalConfig)
    conf: float = 0.05


def parse_shard(text: str) -> tuple[int, int]:
    """``I/N`` -> (I, N) with 0 <= I < N; a clear error otherwise."""
    index, sep, count = text.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        raise DatasetError(f"--shard expects I/N (e.g. 0/4), got {text!r}") from None
    if not sep or n < 1 or not 0 <= i < n:
        raise DatasetError(f"--shard expects I/N with 0 <= I < N, got {text!r}")
    return i, n


def shard_sources(sources: list[str], index: int, count: int) -> list[str]:
    """This shard's sources: every N-th of the sorted, de-duplicated list, from the I-th."""
    return sorted(set(sources))[index::count]


def candidates_of(scan: SourceScan, config: MineConfig) -> list[Candidate]:
    """The frames of one scan that any signal picked, as candidates."""
    first = scan.frames[0]
    hits = collect(scan.frames, (first.width, first.height), config.signals, scan.labels)
    out = []
    for position, hit in sorted(hits.items()):
        frame = scan.frames[position]
        out.append(
            Candidate(
                scan.source,
                scan.drive,
                frame.index,
                frame.stamp_ns,
                frame.width,
                frame.height,
                hit.reasons,
                round(hit.priority, 4),
                hit.proposals,
                frame.dhash,
            )
        )
    return out


def mine_shard(
    sources: list[str],
    out_dir: Path,
    main: ModelRun,
    config: MineConfig,
    second: ModelRun | None = None,
    progress: bool = True,
) -> list[Candidate]:
    """Scan ``sources`` and write ``out_dir/candidates.jsonl`` and ``drives.jsonl``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    candidates: list[Candidate] = []
    drives = []
    for source in tqdm(sources, desc="sources", unit="source", disable=not progress):
        scan = scan_source(source, main, config.tiles, second, config.conf, progress)
        found = candidates_of(scan, config)
        candidates += found
        drives.append(
            {"source": source, "drive": scan.drive, "frames": len(scan.frames), "candidates": len(found)}
        )
    atomic_write_text(out_dir / CANDIDATES, "".join(c.to_json() + "\n" for c in candidates))
    atomic_write_text(out_dir / DRIVES, "".join(json.dumps(d, sort_keys=True) + "\n" for d in drives))
    return candidates


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise DatasetError(f"{path}: missing (is this a shard folder of `edge-data mine --shard`?)")
    out = []
    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{line_no}: not JSON ({exc})") from None
    return out


def read_shards(shard_dirs: list[Path]) -> tuple[list[Candidate], list[dict]]:
    """All candidates and drive lines of the shards; a drive in two shards is an error."""
    candidates: list[Candidate] = []
    drives: list[dict] = []
    for folder in shard_dirs:
        candidates += [Candidate.from_dict(d) for d in read_jsonl(folder / CANDIDATES)]
        drives += read_jsonl(folder / DRIVES)
    seen: dict[str, str] = {}
    for drive in drives:
        if drive["drive"] in seen:
            raise DatasetError(
                f"drive {drive['source']} is in two shards; mine each source in one shard only"
            )
        seen[drive["drive"]] = drive["source"]
    return candidates, drives


def write_images(chosen: list[Candidate], task: Path, progress: bool = True) -> None:
    """Read the chosen frames back from their sources into ``task/images`` (sets ``image``)."""
    (task / IMAGES).mkdir(parents=True, exist_ok=True)
    wanted: dict[str, dict[int, Candidate]] = defaultdict(dict)
    for candidate in chosen:
        wanted[candidate.source][candidate.index] = candidate
    for source, by_index in tqdm(sorted(wanted.items()), desc="frames", disable=not progress):
        last = max(by_index)
        for frame in iterate_frames(source):
            candidate = by_index.get(frame.index)
            if candidate is not None:
                name = f"{IMAGES}/{candidate.drive}_{candidate.index:06d}.jpg"
                if not cv2.imwrite(str(task / name), frame.image, [cv2.IMWRITE_JPEG_QUALITY, 95]):
                    raise DatasetError(f"{task / name}: OpenCV could not write the image")
                candidate.image = name
            if frame.index >= last:
                break
        missing = [i for i, c in by_index.items() if not c.image]
        if missing:
            raise DatasetError(f"{source}: frames {missing[:5]} were mined but the source no longer has them")


def merge_shards(
    shard_dirs: list[Path],
    task: Path,
    budget: int,
    diversity: DiversityConfig | None = None,
    progress: bool = True,
    model_version: str = "",
) -> list[Candidate]:
    """Global budget + deduplication over the shards' candidates, then the task folder."""
    from stopsign.train.data.mine.export import write_cvat_coco, write_label_studio
    from stopsign.train.data.mine.report import summary_markdown, write_contact_sheet

    if budget < 1:
        raise DatasetError(f"--budget must be >= 1, got {budget}")
    candidates, drives = read_shards(shard_dirs)
    chosen = select(candidates, budget, diversity)
    write_images(chosen, task, progress)
    atomic_write_text(task / MINED, "".join(c.to_json() + "\n" for c in chosen))
    write_cvat_coco(chosen, task)
    write_label_studio(chosen, task, model_version)
    atomic_write_text(task / "summary.md", summary_markdown(chosen, candidates, drives))
    if chosen:
        write_contact_sheet(chosen, task, task / "contact_sheet.png")
    return chosen
