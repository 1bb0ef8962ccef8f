"""The backfill on a synthetic drive with known boxes: a sign approached at constant speed that the
detector only finds (confidently) from some frame on."""

from __future__ import annotations

import numpy as np
import pytest

from stopsign.train.data.mine.backfill import BackfillConfig, backfill, fit_approach
from tests.train.data.mine.helpers import STEP_NS, _iou, approach_boxes, tracked_scan

FRAMES = 90


def _scan(first_found: int, low_score_from: int | None = None, jitter_px: float = 0.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    truth = approach_boxes(FRAMES)
    rows = []
    for i, box in enumerate(truth):
        noisy = [v + float(rng.normal(0, jitter_px)) for v in box] if jitter_px else list(box)
        if i >= first_found:
            rows.append([[*noisy, 0.8]])
        elif low_score_from is not None and i >= low_score_from:
            rows.append([[*(v + 1.5 for v in box), 0.1]])  # seen, too weakly: shifted 1.5 px
        else:
            rows.append([])
    return truth, tracked_scan(rows)


@pytest.mark.parametrize(
    ("first_found", "jitter_px", "reach_back_to", "min_hit_rate"),
    [
        (40, 0.0, 0, 1.0),  # exact boxes: the model is exact, back to the first frame (11 px wide)
        (40, 0.5, 5, 0.9),  # detector noise of 0.5 px on boxes of ~25 px
        (60, 0.3, 10, 0.9),
    ],
)
def test_backfill_recovers_the_true_boxes(first_found, jitter_px, reach_back_to, min_hit_rate):
    truth, frames = _scan(first_found, jitter_px=jitter_px)
    proposals = backfill(frames, (1280, 720))
    covered = sorted(proposals)
    assert covered and covered[-1] == first_found - 1, "backfill must end right before the first hit"
    assert covered[0] <= reach_back_to
    hits = [_iou(proposals[p][0].xyxy, truth[p]) >= 0.5 for p in covered]
    assert np.mean(hits) >= min_hit_rate
    assert all(p.origin == "backfill" for ps in proposals.values() for p in ps)


def test_backfill_snaps_to_weak_detections():
    truth, frames = _scan(40, low_score_from=30)
    proposals = backfill(frames, (1280, 720))
    for position in range(30, 40):
        (proposal,) = proposals[position]
        assert proposal.origin == "backfill+detector"
        assert proposal.xyxy == pytest.approx([v + 1.5 for v in truth[position]], abs=0.02)
    assert proposals[29][0].origin == "backfill"


def test_backfill_stops_below_min_size():
    _truth, frames = _scan(40)
    proposals = backfill(frames, (1280, 720), BackfillConfig(min_size_px=14.0))
    widths = {p: ps[0].xyxy[2] - ps[0].xyxy[0] for p, ps in proposals.items()}
    assert min(widths.values()) >= 14.0
    assert min(proposals) > 0  # the first frames (11-13 px) are left out


def test_unconfirmed_and_static_tracks():
    # Two confident frames: the track is never confirmed, nothing is backfilled.
    rows = [[] for _ in range(20)] + [[[100, 100, 120, 120, 0.9]]] * 2 + [[] for _ in range(10)]
    assert backfill(tracked_scan(rows), (1280, 720)) == {}
    # A sign that does not grow (parked car): constant size, at most static_back_s back.
    rows = [[] for _ in range(40)] + [[[100, 100, 120, 120, 0.9]]] * 10
    proposals = backfill(tracked_scan(rows), (1280, 720), BackfillConfig(static_back_s=1.0))
    assert sorted(proposals) == list(range(40 - 15, 40))  # 1 s at 15 fps
    assert all(ps[0].xyxy == pytest.approx([100, 100, 120, 120], abs=0.01) for ps in proposals.values())


def test_fit_is_exact_for_a_pinhole_approach():
    boxes = np.asarray(approach_boxes(30), np.float64)
    times = np.arange(30) * STEP_NS / 1e9
    model = fit_approach(times[10:], boxes[10:])
    assert model.approach
    for i in range(10):
        assert model.box_at(times[i]) == pytest.approx(list(boxes[i]), abs=1e-6)


def test_a_known_focus_of_expansion_steadies_the_centre():
    """Noisy boxes: the centre lines through the principal point stay closer to the truth."""
    rng = np.random.default_rng(3)
    truth = np.asarray(approach_boxes(FRAMES), np.float64)
    noisy = truth + rng.normal(0, 1.0, truth.shape)
    times = np.arange(FRAMES) * STEP_NS / 1e9
    errors = {}
    for focus in (None, (640.0, 360.0)):
        model = fit_approach(times[60:], noisy[60:], focus=focus)
        centre = lambda b: np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2])  # noqa: E731
        errors[focus] = max(
            np.abs(centre(model.box_at(times[i])) - centre(truth[i])).max() for i in range(30)
        )
    assert errors[(640.0, 360.0)] < errors[None]
