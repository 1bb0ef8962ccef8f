"""``edge-replay --report DIR``: a Markdown table over many drives and a timeline PNG per drive."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stopsign.edge.replay.drive import DriveLabels
from stopsign.edge.replay.metrics import DriveMetrics
from stopsign.edge.replay.runner import ReplayResult
from stopsign.edge.tracking import AHEAD


def timeline_png(result: ReplayResult, labels: DriveLabels | None, out: Path) -> Path:
    """Score over time (raw best detection, confirmed track), threshold, labels and events."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = np.array([f.frame for f in result.frames])  # drive frame numbers (gaps where realtime skipped)
    raw = [float(f.detections.score.max()) if len(f.detections) else 0.0 for f in result.frames]
    track = [max((t["score"] for t in f.tracks), default=np.nan) for f in result.frames]
    fig, ax = plt.subplots(figsize=(9, 3))
    if labels is not None:
        every = np.arange(len(result.timestamps) or len(result.frames))
        present = np.array([labels.present(i) for i in every])
        ax.fill_between(
            every, 0, 1, where=present, color="tab:green", alpha=0.15, step="mid", label="sign labelled"
        )
    ax.plot(frames, raw, ".", color="tab:gray", markersize=4, label="raw best score")
    ax.plot(frames, track, "-", color="tab:blue", label="confirmed track score")
    ax.axhline(
        result.spec.operating_threshold,
        color="tab:red",
        linestyle="--",
        linewidth=1,
        label="operating threshold",
    )
    for event in result.events:
        colour = "tab:red" if event["event"] == AHEAD else "tab:orange"
        ax.axvline(event["frame"], color=colour, linewidth=1.5)
        ax.text(event["frame"], 1.02, event["event"].replace("stop_sign_", ""), color=colour, fontsize=8)
    ax.set_ylim(0, 1.1)
    ax.set_xlabel("frame")
    ax.set_ylabel("score")
    ax.set_title(result.drive.name, fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


def markdown_table(rows: list[tuple[str, DriveMetrics | None, int]]) -> str:
    """rows: (drive name, metrics or None when unlabelled, number of stop_sign_ahead events)."""
    lines = [
        "| drive | frames | labelled | AP50 raw | AP50 smoothed | raw false events | smoothed events | smoothed false events | first raw hit | event frame | delay (frames / ms) | delay from 20 px (frames / ms) | added delay (frames) | missed | ID switches |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m, events in rows:
        if m is None:
            lines.append(f"| {name} | - | - | - | - | - | {events} | - | - | - | - | - | - | - | - |")
            continue
        delay = "-" if m.delay_frames is None else f"{m.delay_frames} / {m.delay_ms:.0f}"
        delay_20 = (
            "-"
            if m.delay_from_20px_frames is None
            else f"{m.delay_from_20px_frames} / {m.delay_from_20px_ms:.0f}"
        )
        added = (
            None
            if m.event_frame is None or m.first_raw_hit_frame is None
            else m.event_frame - m.first_raw_hit_frame
        )
        lines.append(
            f"| {name} | {m.frames} | {m.labelled_frames} | {_cell(m.ap50_raw)} | {_cell(m.ap50_smoothed)} | "
            f"{m.raw_false_events} | {m.events} | {m.false_events} | {_cell(m.first_raw_hit_frame)} | "
            f"{_cell(m.event_frame)} | {delay} | {delay_20} | {_cell(added)} | {'yes' if m.missed else 'no'} | {m.id_switches} |"
        )
    return "\n".join(lines) + "\n"
