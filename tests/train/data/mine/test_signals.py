"""Each mining signal on small made-up tracks, table-driven."""

from __future__ import annotations

import pytest

from stopsign.train.data.mine.signals import (
    SignalConfig,
    collect,
    disagreement,
    false_events,
    flicker,
    uncertain,
)
from tests.train.data.mine.helpers import frame, seen

CONFIG = SignalConfig(threshold=0.5, band=0.2, proposal_threshold=0.4)
SIGN = (100.0, 100.0, 130.0, 130.0)
RED_BOX = (600.0, 300.0, 640.0, 340.0)


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        ([0.45], True),  # inside the band
        ([0.31], True),
        ([0.69, 0.1], True),
        ([0.9], False),  # confident
        ([0.9, 0.45], False),  # the best score decides
        ([0.2], False),  # confidently nothing
        ([], False),
    ],
)
def test_uncertain(scores, expected):
    frames = [frame(0, [(*SIGN, s) for s in scores])]
    hits = uncertain(frames, CONFIG)
    assert (0 in hits) is expected
    if expected:
        assert hits[0].reasons[0].startswith("uncertain: best")
        assert [p.score for p in hits[0].proposals] == [s for s in scores if s >= 0.4]


@pytest.mark.parametrize(
    ("whole", "tiles", "second", "reasons"),
    [
        ([], [(*SIGN, 0.8)], None, ["disagree_tiles"]),  # a small sign only the tiles see
        ([(*RED_BOX, 0.7)], [], None, ["disagree_tiles"]),  # the whole frame alone fires
        ([(*SIGN, 0.8)], [(*SIGN, 0.6)], None, []),  # both see it
        ([(*SIGN, 0.8)], [(*SIGN, 0.35)], None, []),  # seen weakly is still seen (band)
        ([(*SIGN, 0.8)], None, None, []),  # no tiles planned: nothing to compare
        ([(*SIGN, 0.8)], None, [], ["disagree_models"]),  # INT8 misses what FP32 sees
        ([(*SIGN, 0.8)], None, [(*SIGN, 0.7)], []),
        ([], [(*SIGN, 0.8)], [], ["disagree_tiles", "disagree_models"]),
    ],
)
def test_disagreement(whole, tiles, second, reasons):
    merged = whole + (tiles or [])
    hits = disagreement([frame(0, merged, whole=whole, tiles=tiles, second=second)], CONFIG)
    assert ([r.split(":")[0] for r in hits[0].reasons] if hits else []) == reasons


def _boxes(n, dx=0.0):
    return [(SIGN[0] + dx * i, SIGN[1], SIGN[2] + dx * i, SIGN[3]) for i in range(n)]


def test_flicker_lost_and_found_again():
    frames = [frame(i, tracks=[seen(1, b)]) for i, b in enumerate(_boxes(5))]
    frames += [frame(5), frame(6)]  # lost
    frames += [frame(7 + i, tracks=[seen(2, SIGN, confirmed=False)]) for i in range(2)]
    hits = flicker(frames, CONFIG)
    flickering = sorted(p for p, h in hits.items() if h.reasons[0].startswith("flicker: track 1 lost"))
    assert flickering == [5, 6, 7]
    assert hits[8].reasons == ["blip: track 2 never confirmed (2 hits)"]  # the new track never confirmed
    assert hits[7].proposals[0].origin == "detector"
    assert hits[5].proposals[0].origin == "interpolated"


@pytest.mark.parametrize(
    ("second_box", "gap_frames", "expected"),
    [
        (SIGN, 2, True),
        ((900.0, 500.0, 930.0, 530.0), 2, False),  # elsewhere: another object
        (SIGN, 20, False),  # found much later than refind_s: a new sign
    ],
)
def test_flicker_table(second_box, gap_frames, expected):
    frames = [frame(i, tracks=[seen(1, SIGN)]) for i in range(5)]
    frames += [frame(5 + i) for i in range(gap_frames)]
    frames += [frame(5 + gap_frames, tracks=[seen(2, second_box, confirmed=False)])]
    hits = flicker(frames, CONFIG)
    found = any(r.startswith("flicker") for h in hits.values() for r in h.reasons)
    assert found is expected


def test_coasting_gap_and_blip():
    frames = [frame(0, tracks=[seen(1, SIGN)]), frame(1, tracks=[seen(1, SIGN, hit=False)]),
              frame(2, tracks=[seen(1, SIGN)])]  # fmt: skip
    assert [h.reasons[0].split(":")[0] for h in flicker(frames, CONFIG).values()] == ["flicker"]
    blip = [frame(0, [(*RED_BOX, 0.6)], tracks=[seen(3, RED_BOX, confirmed=False)]), frame(1), frame(2)]
    hits = flicker(blip, CONFIG)
    assert list(hits) == [0] and hits[0].reasons[0].startswith("blip")
    assert hits[0].proposals[0].score == pytest.approx(0.6)


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({i: [] for i in range(8)}, True),  # nothing labelled: the event is false
        ({i: [list(RED_BOX)] for i in range(8)}, False),  # a labelled sign there
        (None, False),  # no labels: unknown
    ],
)
def test_false_event(labels, expected):
    frames = [frame(i) for i in range(2)]
    frames += [frame(2 + i, [(*RED_BOX, 0.7)], tracks=[seen(5, RED_BOX, confirmed=i >= 2)]) for i in range(4)]
    frames += [frame(6), frame(7)]
    hits = false_events(frames, labels, CONFIG)
    assert bool(hits) is expected
    if expected:
        assert sorted(hits) == list(range(0, 8))  # 2 frames before the track to 3 after confirmation
        merged = collect(frames, (1280, 720), CONFIG, labels)
        # The false event's box is never proposed, though the uncertainty/blip signals saw it.
        assert all(not h.proposals for h in merged.values())
        assert "false_event" in merged[4].reasons[0] or any("false_event" in r for r in merged[4].reasons)


def test_collect_merges_reasons_and_priorities():
    frames = [frame(0, [(*SIGN, 0.55)], whole=[], tiles=[(*SIGN, 0.55)])]
    hit = collect(frames, (1280, 720), CONFIG)[0]
    assert [r.split(":")[0] for r in hit.reasons] == ["disagree_tiles", "uncertain"]
    assert hit.priority == pytest.approx(2.5 + 0.25 * 1.0)
    assert len(hit.proposals) == 1  # the same box from two signals is proposed once


def test_a_known_false_track_is_never_backfilled():
    """A red object confirmed on a labelled drive: its backfill (15 frames back) proposes nothing,
    also before the false-event window (3 frames before the track)."""
    frames = [frame(i) for i in range(12)]
    frames += [
        frame(12 + i, [(*RED_BOX, 0.7)], tracks=[seen(5, RED_BOX, confirmed=i >= 2)]) for i in range(6)
    ]
    labels = {i: [] for i in range(18)}
    merged = collect(frames, (1280, 720), CONFIG, labels)
    assert all(not h.proposals for h in merged.values())
    assert not any(r.startswith("backfill") for h in merged.values() for r in h.reasons)
    unlabelled = collect(frames, (1280, 720), CONFIG, None)  # without labels it cannot be known
    assert any(r.startswith("backfill") for h in unlabelled.values() for r in h.reasons)
