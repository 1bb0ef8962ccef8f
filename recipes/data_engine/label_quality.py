"""How right are a task's unreviewed proposals? Against the drives' own true boxes (labels.jsonl).

    .venv/bin/python recipes/data_engine/label_quality.py out/de/mined out/de/random

Per task: frames, true boxes on them, proposals, right proposals (IoU >= 0.5, each true box once),
and so precision and recall of the labels each arm of the same-budget experiment trained on.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from stopsign.edge.sources.uri import parse_source_uri
from stopsign.train.data.mine.records import iou
from stopsign.train.data.mine.scan import read_drive_labels


def quality(task: Path) -> dict:
    frames = [json.loads(x) for x in (task / "mined.jsonl").read_text().splitlines() if x.strip()]
    cache: dict[str, dict] = {}
    truth_n = proposals_n = right = 0
    for frame in frames:
        source = frame["source"]
        if source not in cache:
            cache[source] = read_drive_labels(Path(parse_source_uri(source).target)) or {}
        truth = list(cache[source].get(frame["index"], []))
        truth_n += len(truth)
        for proposal in frame["proposals"]:
            proposals_n += 1
            best = max(range(len(truth)), key=lambda k: iou(proposal["xyxy"], truth[k]), default=None)
            if best is not None and iou(proposal["xyxy"], truth[best]) >= 0.5:
                right += 1
                truth.pop(best)
    return {
        "task": task.name,
        "frames": len(frames),
        "true_boxes": truth_n,
        "proposals": proposals_n,
        "right": right,
        "precision": round(right / max(proposals_n, 1), 3),
        "recall": round(right / max(truth_n, 1), 3),
    }


def main(argv: list[str] | None = None) -> int:
    print("| arm | frames | true boxes | proposals (labels) | right (IoU >= 0.5) | precision | recall |")
    print("|---|---|---|---|---|---|---|")
    for task in map(Path, argv or sys.argv[1:]):
        q = quality(task)
        print(
            f"| {q['task']} | {q['frames']} | {q['true_boxes']} | {q['proposals']} | {q['right']} | "
            f"{q['precision']} | {q['recall']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
