"""Expected replay outputs on disk, and their comparison with a fresh replay.

``DRIVE/expected/<model sha256[:16]>.jsonl``: a header line naming the model (and the runtime and
precision that made it), one line per frame (detections and confirmed tracks) and one per event.
Comparison ignores timing fields and allows a tolerance on boxes (IoU) and scores, so it holds
across machines, ONNX Runtime builds and, for FP32 models, runtimes.

A model that runs in reduced precision (INT8, FP16) has expected outputs per runtime,
``<sha256[:16]>.<runtime>.jsonl``: each runtime's kernels round the same graph their own way, and
the differences grow with depth (an INT8 Q/DQ file on OpenVINO against ONNX Runtime: scores up to
0.1 apart, ``bench/qdq_runtime_drift.py``), beyond any tolerance that would still catch a
regression. A file without the runtime in its name is used for such a model only when its header
names the same runtime or none (files made before there were per-runtime ones).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stopsign.edge.model.artifacts import atomic_write_text
from stopsign.edge.replay.runner import ReplayResult
from stopsign.edge.sources.uri import is_bag_path
from stopsign.edge.vision.postprocess import box_iou

FORMAT_VERSION = 1
TIMING_FIELDS = frozenset({"timestamp_ns", "time", "monotonic_ns", "time_to_sign_s"})


class ExpectedError(ValueError):
    """Expected outputs are missing or malformed; the message says how to create them."""


@dataclass(frozen=True)
class Tolerance:
    iou: float = 0.9
    score: float = 0.02

    @classmethod
    def parse(cls, text: str) -> Tolerance:
        """``iou=0.9,score=0.02`` (either part may be left out)."""
        values: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, value = part.partition("=")
            if not sep or key not in ("iou", "score"):
                raise ValueError(f"--tolerance: expected iou=X,score=Y, got {part!r}")
            values[key] = float(value)
        tolerance = cls(**values)
        if not (0 <= tolerance.iou <= 1 and tolerance.score >= 0):
            raise ValueError(f"--tolerance: iou must be in [0, 1] and score >= 0, got {text!r}")
        return tolerance


def expected_dir(drive: Path) -> Path:
    """``DIR/expected`` for a folder (a drive, or a rosbag2 bag), ``FILE.expected`` beside a
    single-file bag (``.mcap``, ``.bag``)."""
    drive = Path(drive)
    return drive / "expected" if drive.is_dir() else drive.with_name(drive.name + ".expected")


def expected_path(drive: Path, model_sha256: str, runtime: str | None = None) -> Path:
    """``<sha256[:16]>.jsonl``, or with ``runtime`` ``<sha256[:16]>.<runtime>.jsonl``."""
    name = f"{model_sha256[:16]}.{runtime}" if runtime else model_sha256[:16]
    return expected_dir(drive) / f"{name}.jsonl"


def runtime_specific(result: ReplayResult) -> bool:
    """Whether ``result``'s outputs belong to its runtime alone (reduced precision; see the module)."""
    return bool(result.runtime) and result.precision != "fp32"


def expected_for(result: ReplayResult) -> Path:
    """The expected-output file to compare ``result`` with, or to write (it may not exist yet)."""
    shared = expected_path(result.drive, result.model_sha256)
    if not runtime_specific(result):
        return shared
    own = expected_path(result.drive, result.model_sha256, result.runtime)
    if own.is_file() or not shared.is_file():
        return own
    made_on = _header(shared).get("runtime")
    return shared if made_on in (None, result.runtime) else own


def missing_hint(path: Path) -> str:
    """What to say when ``path`` does not exist: the other runtimes' files for the same model, if any."""
    sha16 = path.name.split(".", 1)[0]
    others = sorted(p.name for p in path.parent.glob(f"{sha16}.*jsonl") if p != path)
    if not others:
        return ""
    return (
        f" (this model has {', '.join(others)}: reduced-precision outputs differ between runtimes; "
        "compare with one of them with --expected FILE and a looser --tolerance, or create this one)"
    )


def _header(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as f:
        first = f.readline()
    try:
        header = json.loads(first)
    except json.JSONDecodeError:
        return {}
    return header if isinstance(header, dict) else {}


def to_lines(result: ReplayResult) -> list[dict[str, Any]]:
    names = result.spec.class_names
    lines: list[dict[str, Any]] = [
        {"kind": "header", "version": FORMAT_VERSION, "model_sha256": result.model_sha256,
         "drive": result.drive.name, "frames": len(result.frames), "runtime": result.runtime or None,
         "precision": result.precision}
    ]  # fmt: skip
    keyed_by_stamp = is_bag_path(result.drive)  # a bag's frames are its messages: name their stamps
    for record in result.frames:
        line = {"kind": "frame", "frame": record.frame, "detections": record.detections.to_records(names),
                "tracks": record.tracks}  # fmt: skip
        if keyed_by_stamp:
            line["stamp_ns"] = record.timestamp_ns
        lines.append(line)
    lines += [{"kind": "event", **event} for event in result.events]
    return lines


def write_expected(result: ReplayResult, path: Path | None = None) -> Path:
    if path is None:  # reduced precision: always this runtime's own file from now on
        path = expected_path(
            result.drive, result.model_sha256, result.runtime if runtime_specific(result) else None
        )
    text = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in to_lines(result))
    return atomic_write_text(path, text)


def read_expected(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise ExpectedError(
            f"{path}: no expected outputs for this model; create them with --update-expected{missing_hint(path)}"
        )
    lines = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ExpectedError(f"{path}:{line_no}: not JSON ({exc})") from None
    if not lines or lines[0].get("kind") != "header":
        raise ExpectedError(f"{path}:1: missing header line")
    return lines


def _boxes(items: list[dict[str, Any]], key: str) -> np.ndarray:
    return np.array([item[key] for item in items], np.float32).reshape(-1, 4)


def _compare_sets(
    where: str, want: list[dict[str, Any]], got: list[dict[str, Any]], key: str, tol: Tolerance
) -> list[str]:
    """Same number of boxes, each matched (greedy by IoU) within the tolerances."""
    if len(want) != len(got):
        return [f"{where}: expected {len(want)} boxes, got {len(got)}"]
    if not want:
        return []
    want_boxes, got_boxes = _boxes(want, key), _boxes(got, key)
    iou = box_iou(want_boxes, got_boxes)
    # Boxes clipped to zero area at the frame edge have IoU 0 even with themselves: equal is equal.
    same = np.abs(want_boxes[:, None] - got_boxes[None]).max(axis=2) <= 0.5
    iou = np.where(same, 1.0, iou)
    diffs, used = [], set()
    for i in np.argsort(-iou.max(axis=1)):
        j = int(np.argmax(np.where([k in used for k in range(len(got))], -1, iou[i])))
        used.add(j)
        if iou[i, j] < tol.iou:
            diffs.append(
                f"{where}: box {want[i][key]} moved to {got[j][key]} (IoU {iou[i, j]:.3f} < {tol.iou})"
            )
        elif abs(want[i]["score"] - got[j]["score"]) > tol.score:
            diffs.append(
                f"{where}: score {want[i]['score']:.4f} -> {got[j]['score']:.4f} (tolerance {tol.score})"
            )
    return diffs


def _compare_tracks(
    frame: int, want: list[dict[str, Any]], got: list[dict[str, Any]], tol: Tolerance
) -> list[str]:
    """Confirmed tracks on one frame: the same track ids, each box and score within the tolerances."""
    want_ids, got_ids = sorted(t["id"] for t in want), sorted(t["id"] for t in got)
    if want_ids != got_ids:
        return [f"frame {frame} tracks: expected confirmed tracks {want_ids}, got {got_ids}"]
    by_id = {t["id"]: t for t in got}
    diffs: list[str] = []
    for track in want:
        diffs += _compare_sets(
            f"frame {frame} track {track['id']}", [track], [by_id[track["id"]]], "box", tol
        )
    return diffs


def _runs(frames: list[int]) -> str:
    """``[2, 3, 4, 9]`` -> ``"2-4, 9"``."""
    runs: list[list[int]] = []
    for frame in frames:
        if runs and frame == runs[-1][1] + 1:
            runs[-1][1] = frame
        else:
            runs.append([frame, frame])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def _compare_events(
    want_events: list[dict[str, Any]], got_events: list[dict[str, Any]], tol: Tolerance
) -> list[str]:
    diffs: list[str] = []
    for position in range(max(len(want_events), len(got_events))):
        want = want_events[position] if position < len(want_events) else None
        got = got_events[position] if position < len(got_events) else None
        if want is None or got is None:
            missing = want or got
            assert missing is not None
            label = "missing" if got is None else "unexpected"
            diffs.append(f"event {position}: {label} {missing['event']} of track {missing['track_id']} "
                         f"at frame {missing['frame']}")  # fmt: skip
            continue
        identity = ("event", "track_id", "frame", "reason")
        if any(want.get(k) != got.get(k) for k in identity):
            diffs.append("event {}: expected {} track {} frame {} ({}), got {} track {} frame {} ({})".format(
                position, *(want.get(k) for k in identity), *(got.get(k) for k in identity)))  # fmt: skip
            continue
        diffs += _compare_sets(
            f"event {position} ({want['event']}, frame {want['frame']})", [want], [got], "box", tol
        )
    return diffs


def compare(expected: list[dict[str, Any]], actual: list[dict[str, Any]], tol: Tolerance) -> list[str]:
    """Readable differences (empty when the replay matches), most telling first.

    The events, which must match in order (type, track, frame, reason); a line naming the frames
    that differ; then per frame the detections and the confirmed tracks. Boxes within ``tol.iou``,
    scores within ``tol.score``; timing fields are ignored.
    """
    want_events = [line for line in expected if line["kind"] == "event"]
    got_events = [line for line in actual if line["kind"] == "event"]
    diffs = _compare_events(want_events, got_events, tol)
    want_frames = [line for line in expected if line["kind"] == "frame"]
    got_frames = [line for line in actual if line["kind"] == "frame"]
    if len(want_frames) != len(got_frames):
        diffs.append(f"frames: expected {len(want_frames)}, replayed {len(got_frames)}")
    frame_diffs: list[str] = []
    differing: list[int] = []
    for want, got in zip(want_frames, got_frames):
        if "stamp_ns" in want and "stamp_ns" in got and want["stamp_ns"] != got["stamp_ns"]:
            diffs.append(f"frame {want['frame']}: expected the message stamped {want['stamp_ns']}, "
                         f"replayed {got['stamp_ns']} (a frame missing or added)")  # fmt: skip
        here = _compare_sets(
            f"frame {want['frame']} detections", want["detections"], got["detections"], "xyxy", tol
        )
        here += _compare_tracks(want["frame"], want.get("tracks", []), got.get("tracks", []), tol)
        if here:
            differing.append(want["frame"])
            frame_diffs += here
    if differing:
        diffs.append(f"{len(differing)} of {len(want_frames)} frames differ: {_runs(differing)}")
    return diffs + frame_diffs
