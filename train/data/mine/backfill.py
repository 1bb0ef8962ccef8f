"""Temporal backfill: a track the tracker confirmed later is followed backwards into the frames
where the detector scored it low or missed it, and those boxes are proposed as labels.

The model is an approach at constant speed seen by a pinhole camera (no optical flow): a sign of
height S at distance Z(t) = Z0 - v t has width w = f S / Z, so **1 / w is linear in time**, and its
centre sits on a ray from the focus of expansion, so **the centre is linear in w**
(x = x_foe + (X / S) w). Both lines are fitted by least squares to the track's first confident
detections (optionally with the centre lines through a known focus of expansion, ``focus``: not
the default, since it did worse on the far-approach drives, docs/data_engine.md) and extrapolated back until the box would be under ``min_size_px``, leaves the
frame, or ``max_back_s`` is reached. A track that does not grow (the car is not closing in) gets
a constant-size, constant-velocity model over at most ``static_back_s``. Where a detection of any
score overlaps the predicted box (IoU >= ``snap_iou``), its box is proposed instead: the detector
saw the sign, only too weakly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stopsign.train.data.mine.records import FrameRecord, Proposal, best_overlap


@dataclass(frozen=True)
class BackfillConfig:
    """Fit on the first ``fit_hits`` confident hits (>= 3); stop below ``min_size_px`` (box width,
    frame pixels) or after ``max_back_s`` (approaching) / ``static_back_s`` (not approaching);
    snap to a detection of IoU >= ``snap_iou``; ``min_growth`` is the smallest relative growth of
    1/w over the fit that counts as an approach."""

    fit_hits: int = 30
    min_size_px: float = 5.0
    max_back_s: float = 10.0
    static_back_s: float = 1.0
    snap_iou: float = 0.3
    min_growth: float = 0.02


@dataclass
class TrackHistory:
    """A track over a scan: frame positions (into the scan's frame list) where it was held, its
    confident detection boxes on hit frames, and whether it was ever confirmed."""

    track_id: int
    positions: list[int]
    hits: list[tuple[int, list[float]]]  # (position, detection box)
    confirmed: bool
    first_confirmed: int | None  # position


def track_histories(frames: list[FrameRecord]) -> dict[int, TrackHistory]:
    """Track id -> its history, from the per-frame track snapshots of a scan."""
    out: dict[int, TrackHistory] = {}
    for position, frame in enumerate(frames):
        for seen in frame.tracks:
            history = out.setdefault(seen.track_id, TrackHistory(seen.track_id, [], [], False, None))
            history.positions.append(position)
            if seen.hit and seen.det is not None:
                history.hits.append((position, seen.det))
            if seen.confirmed and not history.confirmed:
                history.confirmed, history.first_confirmed = True, position
    return out


@dataclass
class ApproachFit:
    """The fitted motion: 1/w = inv_a t + inv_b; cx = cx0 + cx1 w; cy = cy0 + cy1 w; h = aspect w;
    ``approach`` False: constant size ``w0``, centre cx0 + vx t, cy0 + vy t. ``t`` in seconds from
    the first fitted hit."""

    approach: bool
    inv_a: float
    inv_b: float
    cx0: float
    cx1: float
    cy0: float
    cy1: float
    aspect: float
    w0: float = 0.0
    vx: float = 0.0
    vy: float = 0.0

    def box_at(self, t: float) -> list[float] | None:
        """The predicted xyxy box at time ``t`` (s), or None where the model breaks down."""
        if self.approach:
            inverse = self.inv_a * t + self.inv_b
            if inverse <= 0:
                return None
            w = 1.0 / inverse
            cx, cy = self.cx0 + self.cx1 * w, self.cy0 + self.cy1 * w
        else:
            w, cx, cy = self.w0, self.cx0 + self.vx * t, self.cy0 + self.vy * t
        h = self.aspect * w
        return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def fit_approach(
    times_s: np.ndarray, boxes: np.ndarray, min_growth: float = 0.02, focus: tuple[float, float] | None = None
) -> ApproachFit:
    """Fit the pinhole approach model to (n,) times and (n, 4) xyxy boxes (n >= 2).

    ``focus``: the focus of expansion in frame pixels when known (the principal point of a camera
    looking along the direction of travel): the centre lines then pass through it and only their
    slopes are fitted, which is far steadier on the few noisy boxes of a small sign.
    """
    w = np.maximum(boxes[:, 2] - boxes[:, 0], 1e-3)
    h = boxes[:, 3] - boxes[:, 1]
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    aspect = float(np.median(h / w))
    inv_a, inv_b = np.polyfit(times_s, 1.0 / w, 1)
    span = float(times_s[-1] - times_s[0])
    # Approaching: 1/w falls over the fit by at least min_growth of its value.
    approach = span > 0 and -inv_a * span >= min_growth * float(np.mean(1.0 / w))
    if approach:
        if focus is not None:
            cx1 = float(np.sum((cx - focus[0]) * w) / np.sum(w * w))
            cy1 = float(np.sum((cy - focus[1]) * w) / np.sum(w * w))
            cx0, cy0 = focus
        elif float(np.std(w)) >= 0.05 * float(np.mean(w)):
            cx1, cx0 = np.polyfit(w, cx, 1)
            cy1, cy0 = np.polyfit(w, cy, 1)
        else:  # too little growth to place the focus of expansion: hold the centre
            cx1, cx0, cy1, cy0 = 0.0, float(np.mean(cx)), 0.0, float(np.mean(cy))
        return ApproachFit(
            True, float(inv_a), float(inv_b), float(cx0), float(cx1), float(cy0), float(cy1), aspect
        )
    vx, cx0 = np.polyfit(times_s, cx, 1) if span > 0 else (0.0, float(np.mean(cx)))
    vy, cy0 = np.polyfit(times_s, cy, 1) if span > 0 else (0.0, float(np.mean(cy)))
    return ApproachFit(
        False, 0.0, 0.0, float(cx0), 0.0, float(cy0), 0.0, aspect, float(np.median(w)), float(vx), float(vy)
    )


def backfill_track(
    history: TrackHistory,
    frames: list[FrameRecord],
    frame_wh: tuple[int, int],
    config: BackfillConfig,
    focus: tuple[float, float] | None = None,
) -> dict[int, Proposal]:
    """Frame position -> proposed box for the frames before ``history``'s first confident hit.

    Only confirmed tracks with at least 3 hits are followed. Returns {} otherwise.
    """
    if not history.confirmed or len(history.hits) < 3:
        return {}
    fit_hits = history.hits[: max(3, config.fit_hits)]
    t0 = frames[fit_hits[0][0]].stamp_ns
    times = np.array([(frames[p].stamp_ns - t0) / 1e9 for p, _ in fit_hits])
    boxes = np.array([b for _, b in fit_hits], np.float64)
    model = fit_approach(times, boxes, config.min_growth, focus)
    limit_s = config.max_back_s if model.approach else config.static_back_s
    score = float(np.clip(len(history.hits) / (len(history.hits) + 3), 0.0, 1.0))
    width, height = frame_wh
    out: dict[int, Proposal] = {}
    for position in range(fit_hits[0][0] - 1, -1, -1):
        t = (frames[position].stamp_ns - t0) / 1e9
        box = model.box_at(t)
        if -t > limit_s + 1e-6 or box is None or box[2] - box[0] < config.min_size_px:
            break
        if box[0] < 0 or box[1] < 0 or box[2] > width or box[3] > height:
            break
        overlap, row = best_overlap(box, frames[position].merged)
        if row is not None and overlap >= config.snap_iou:
            out[position] = Proposal(
                [round(v, 2) for v in row[:4]], round(score, 3), "backfill+detector", history.track_id
            )
        else:
            out[position] = Proposal(
                [round(v, 2) for v in box], round(score, 3), "backfill", history.track_id
            )
    return out


def backfill(
    frames: list[FrameRecord],
    frame_wh: tuple[int, int],
    config: BackfillConfig | None = None,
    focus: tuple[float, float] | None = None,
) -> dict[int, list[Proposal]]:
    """Frame position -> backfilled proposals of every confirmed track of a scan (``focus``: the
    principal point, when the source's intrinsics give it)."""
    config = config or BackfillConfig()
    out: dict[int, list[Proposal]] = {}
    for history in track_histories(frames).values():
        for position, proposal in backfill_track(history, frames, frame_wh, config, focus).items():
            out.setdefault(position, []).append(proposal)
    return out
