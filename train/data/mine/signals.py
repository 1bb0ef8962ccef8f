"""The mining signals: which frames of a scan are worth a label, and why.

Each signal takes a scan's frames (:class:`FrameRecord`, in order) and returns
``{position: Hit}``; :func:`collect` runs them all and merges the hits per frame.

- ``uncertain``: the frame's best score (detector with tiles) is within ``band`` of the
  operating threshold;
- ``disagree_tiles``: a box confident in the whole frame has nothing in the tiles, or the
  reverse (only where tiles were planned); ``disagree_models``: the same between the main and a
  second model (FP32 against INT8);
- ``backfill``: :mod:`.backfill`;
- ``flicker``: a confirmed track lost and found again (a new track starting near where it ended,
  or a confirmed track coasting between hits), and ``blip``: a confident track that never
  confirmed (a look-alike, or a sign the tracker did not hold);
- ``false_event``: frames around a confirmed track that matches no labelled sign, on drives that
  carry labels (the red objects of ``docs/smoothing.md``): hard negatives, no proposal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stopsign.train.data.mine.backfill import BackfillConfig, TrackHistory, backfill, track_histories
from stopsign.train.data.mine.records import FrameRecord, Proposal, Row, best_overlap, iou

PRIORITY = {
    "backfill": 3.0,
    "disagree_tiles": 2.5,
    "disagree_models": 2.5,
    "false_event": 2.0,
    "flicker": 2.0,
    "blip": 1.5,
    "uncertain": 1.0,
}


@dataclass(frozen=True)
class SignalConfig:
    """``threshold``: the model's operating threshold; ``band``: uncertainty half-width;
    ``proposal_threshold``: detector boxes proposed as labels from this score (the tracker's
    enter threshold by default); ``match_iou``: boxes of two detectors that agree; ``refind_s``:
    a track found again within this time of its end counts as flicker; ``false_context``:
    frames either side of a false event."""

    threshold: float = 0.5
    band: float = 0.2
    proposal_threshold: float = 0.4
    match_iou: float = 0.3
    refind_s: float = 1.0
    false_context: int = 3
    backfill: BackfillConfig = field(default_factory=BackfillConfig)


@dataclass
class Hit:
    """Why one frame is mined: reason names with details, priority, proposals."""

    reasons: list[str] = field(default_factory=list)
    priority: float = 0.0
    proposals: list[Proposal] = field(default_factory=list)
    suppress: list[list[float]] = field(default_factory=list)  # boxes of known false events

    def add(self, reason: str, detail: str = "", proposals: list[Proposal] | None = None) -> None:
        name = reason.split(":", 1)[0]
        if not any(r.split(":", 1)[0] == name for r in self.reasons):
            self.reasons.append(f"{name}: {detail}" if detail else name)
            weight = PRIORITY[name]
            self.priority = max(self.priority, weight) + 0.25 * min(self.priority, weight)
        for proposal in proposals or []:
            if all(iou(proposal.xyxy, kept.xyxy) < 0.5 for kept in self.proposals):
                self.proposals.append(proposal)


def detector_proposals(rows: list[Row], config: SignalConfig) -> list[Proposal]:
    return [
        Proposal([round(v, 2) for v in r[:4]], round(r[4], 4), "detector")
        for r in rows
        if r[4] >= config.proposal_threshold
    ]


def uncertain(frames: list[FrameRecord], config: SignalConfig) -> dict[int, Hit]:
    out: dict[int, Hit] = {}
    for position, frame in enumerate(frames):
        best = max((r[4] for r in frame.merged), default=0.0)
        if abs(best - config.threshold) < config.band:
            hit = out.setdefault(position, Hit())
            hit.add("uncertain", f"best {best:.2f}", detector_proposals(frame.merged, config))
    return out


def _unmatched(confident: list[Row], other: list[Row], config: SignalConfig) -> list[Row]:
    """Rows of ``confident`` at or over the threshold that ``other`` does not see at all."""
    low = config.threshold - config.band
    return [
        r
        for r in confident
        if r[4] >= config.threshold and best_overlap(r[:4], other, low)[0] < config.match_iou
    ]


def disagreement(frames: list[FrameRecord], config: SignalConfig) -> dict[int, Hit]:
    out: dict[int, Hit] = {}
    for position, frame in enumerate(frames):
        details = []
        if frame.tiles is not None:
            only_tiles = _unmatched(frame.tiles, frame.whole, config)
            only_whole = _unmatched(frame.whole, frame.tiles, config)
            if only_tiles or only_whole:
                details.append(
                    ("disagree_tiles", f"tiles only {len(only_tiles)}, whole only {len(only_whole)}")
                )
        if frame.second is not None:
            only_main = _unmatched(frame.merged, frame.second, config)
            only_second = _unmatched(frame.second, frame.merged, config)
            if only_main or only_second:
                details.append(
                    ("disagree_models", f"main only {len(only_main)}, second only {len(only_second)}")
                )
        for name, detail in details:
            out.setdefault(position, Hit()).add(name, detail, detector_proposals(frame.merged, config))
    return out


def _interpolate(a: list[float], b: list[float], f: float) -> list[float]:
    return [round(x + (y - x) * f, 2) for x, y in zip(a, b)]


def _refinds(histories: dict[int, TrackHistory], frames: list[FrameRecord], config: SignalConfig):
    """(ended track, new track) pairs: a confirmed track ends and a new one starts close by soon after."""
    ordered = sorted(histories.values(), key=lambda h: h.positions[0])
    for ended in ordered:
        if not ended.confirmed or not ended.hits:
            continue
        end_position, end_box = ended.hits[-1]
        end_ns = frames[end_position].stamp_ns
        for new in ordered:
            if not new.hits or new.track_id == ended.track_id:
                continue
            start_position, start_box = new.hits[0]
            gap_s = (frames[start_position].stamp_ns - end_ns) / 1e9
            if start_position <= end_position or gap_s > config.refind_s:
                continue
            w = max(end_box[2] - end_box[0], 1.0)
            near = abs((start_box[0] + start_box[2]) / 2 - (end_box[0] + end_box[2]) / 2) <= 2 * w
            if near and (
                iou(end_box, start_box) > 0
                or abs((start_box[1] + start_box[3] - end_box[1] - end_box[3]) / 2) <= 2 * w
            ):
                yield ended, new
                break


def flicker(frames: list[FrameRecord], config: SignalConfig) -> dict[int, Hit]:
    out: dict[int, Hit] = {}
    histories = track_histories(frames)
    for ended, new in _refinds(histories, frames, config):
        (a_pos, a_box), (b_pos, b_box) = ended.hits[-1], new.hits[0]
        for position in range(a_pos + 1, b_pos + 1):
            box = _interpolate(a_box, b_box, (position - a_pos) / (b_pos - a_pos))
            proposal = Proposal(box, 0.5, "interpolated", ended.track_id)
            if position == b_pos:
                proposal = Proposal(b_box, 0.5, "detector", new.track_id)
            detail = f"track {ended.track_id} lost at frame {frames[a_pos].index}, found as {new.track_id}"
            out.setdefault(position, Hit()).add("flicker", detail, [proposal])
    for history in histories.values():
        hit_positions = [p for p, _ in history.hits]
        if history.confirmed:  # coasting gaps inside a confirmed track
            for (p0, box0), (p1, box1) in zip(history.hits, history.hits[1:]):
                for position in range(p0 + 1, p1):
                    box = _interpolate(box0, box1, (position - p0) / (p1 - p0))
                    out.setdefault(position, Hit()).add(
                        "flicker",
                        f"track {history.track_id} missed between hits",
                        [Proposal(box, 0.5, "interpolated", history.track_id)],
                    )
        elif hit_positions:
            for position, box in history.hits:
                score = max((r[4] for r in frames[position].merged if iou(r[:4], box) > 0.5), default=0.0)
                out.setdefault(position, Hit()).add(
                    "blip",
                    f"track {history.track_id} never confirmed ({len(hit_positions)} hits)",
                    [Proposal([round(v, 2) for v in box], round(score, 4), "detector", history.track_id)],
                )
    return out


def false_tracks(
    frames: list[FrameRecord], labels: dict[int, list[list[float]]] | None
) -> list[TrackHistory]:
    """Confirmed tracks whose box at confirmation overlaps no labelled sign (none without labels)."""
    if labels is None:
        return []
    out = []
    for history in track_histories(frames).values():
        if not history.confirmed or history.first_confirmed is None:
            continue
        position = history.first_confirmed
        seen = next(t for t in frames[position].tracks if t.track_id == history.track_id)
        if not any(iou(seen.box, box) >= 0.1 for box in labels.get(frames[position].index, [])):
            out.append(history)
    return out


def false_events(
    frames: list[FrameRecord], labels: dict[int, list[list[float]]] | None, config: SignalConfig
) -> dict[int, Hit]:
    """Frames around confirmed tracks that overlap no labelled sign (``labels``: frame index -> boxes)."""
    out: dict[int, Hit] = {}
    for history in false_tracks(frames, labels):
        position = history.first_confirmed
        assert position is not None
        seen = next(t for t in frames[position].tracks if t.track_id == history.track_id)
        first = history.positions[0]
        last = min(len(frames), position + config.false_context + 1)
        for p in range(max(0, first - config.false_context), last):
            hit = out.setdefault(p, Hit())
            hit.add("false_event", f"track {history.track_id} matches no label")
            held = [t.box for t in frames[p].tracks if t.track_id == history.track_id]
            hit.suppress += held or [seen.box]
    return out


def collect(
    frames: list[FrameRecord],
    frame_wh: tuple[int, int],
    config: SignalConfig,
    labels: dict[int, list[list[float]]] | None = None,
    focus: tuple[float, float] | None = None,
) -> dict[int, Hit]:
    """Every signal over one scan, merged per frame position (false-event frames propose nothing
    of the false track: detector proposals of other signals stay)."""
    merged: dict[int, Hit] = {}
    false_ids = {h.track_id for h in false_tracks(frames, labels)}
    for position, found in backfill(frames, frame_wh, config.backfill, focus).items():
        proposals = [p for p in found if p.track_id not in false_ids]  # never follow a known false track
        if not proposals:
            continue
        hit = merged.setdefault(position, Hit())
        detail = ", ".join(f"track {p.track_id} ({p.origin})" for p in proposals)
        hit.add("backfill", detail, proposals)
    for signal in (
        disagreement(frames, config),
        flicker(frames, config),
        uncertain(frames, config),
        false_events(frames, labels, config),
    ):
        for position, hit in signal.items():
            target = merged.setdefault(position, Hit())
            for reason in hit.reasons:
                name, _, detail = reason.partition(": ")
                target.add(name, detail, hit.proposals)
            target.suppress += hit.suppress
    for hit in merged.values():  # a known false event's box is never proposed as a sign
        hit.proposals = [p for p in hit.proposals if all(iou(p.xyxy, box) < 0.3 for box in hit.suppress)]
    return merged
