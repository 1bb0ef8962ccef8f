"""Table of the same-budget experiment from the ``eval_<model>_<set>.json`` files of same_budget.sh.

.venv/bin/python recipes/data_engine/compare.py OUT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

MODELS = ("shipped", "mined", "random")


def cell(table: dict, name: str) -> str:
    c = table.get(name, {})
    return f"{c['recall']:.2f} ({c['found']}/{c['signs']})" if c.get("signs") else "-"


def main(argv: list[str] | None = None) -> int:
    out = Path((argv or sys.argv[1:])[0])
    lines = [
        "| model | far: recall | far: R <16 in | far: R 16-32 in | far: R <32 fr | far: R 32-64 fr | "
        "real: mAP@0.5 | real: recall | real: precision | real: confuser images firing | real: negatives firing |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model in MODELS:
        far_path, real_path = out / f"eval_{model}_far.json", out / f"eval_{model}_real.json"
        if not far_path.is_file() or not real_path.is_file():
            continue
        far = json.loads(far_path.read_text())["runs"][0]
        real = json.loads(real_path.read_text())["runs"][0]
        conf = real["images_firing"]["confuser"]
        neg = real["images_firing"]["negative"]
        lines.append(
            f"| {model} | {far['recall']} | {cell(far['recall_by_input_px'], '<16')} | "
            f"{cell(far['recall_by_input_px'], '16-32')} | {cell(far['recall_by_frame_px'], '<32')} | "
            f"{cell(far['recall_by_frame_px'], '32-64')} | {real['map50']} | {real['recall']} | {real['precision']} | "
            f"{conf['firing']}/{conf['images']} | {neg['firing']}/{neg['images']} |"
        )
    text = "\n".join(lines) + "\n"
    (out / "comparison.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
