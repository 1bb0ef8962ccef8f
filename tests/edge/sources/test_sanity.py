"""Frame sanity: repeated, backwards and jumping timestamps, frozen, black and covered frames."""

from __future__ import annotations

import numpy as np
import pytest

from stopsign.edge.sources.sanity import THUMB_SIZE, FrameSanity, SanityOptions, thumbnail_source
from stopsign.edge.vision.frame import NO_TIMESTAMP, Frame

MS = 1_000_000


def textured(seed: int, size: tuple[int, int] = (48, 64)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)


def frame(index: int, pts_ms: float, image: np.ndarray, mono_ms: float | None = None) -> Frame:
    pts = NO_TIMESTAMP if pts_ms < 0 else int(pts_ms * MS)
    mono = int((pts_ms if mono_ms is None else mono_ms) * MS)
    return Frame(index, pts, mono, image)


# Each case: the second frame (pts ms, image kind) after a good first frame at pts 0 -> reject reason, notices.
@pytest.mark.parametrize(
    ("pts_ms", "image", "reject", "notices"),
    [
        (33, "new", None, []),
        (0, "new", "repeated_timestamp", []),
        (-1, "new", None, []),  # no timestamp: nothing to compare
        (33, "same", "identical_content", []),
        (33, "black", "black", []),
        (33, "grey", "covered", []),
        (33, "small", None, ["caps_change"]),
        (5000, "new", None, ["timestamp_jump"]),
    ],
)
def test_second_frame_verdicts(pts_ms: float, image: str, reject: str | None, notices: list[str]) -> None:
    first = textured(0)
    images = {
        "new": textured(1),
        "same": first.copy(),
        "black": np.full_like(first, 3),
        "grey": np.full_like(first, 128),
        "small": textured(2, (24, 32)),
    }
    checker = FrameSanity(SanityOptions(), live=False)
    assert checker.check(frame(0, 0, first)).reject is None
    verdict = checker.check(frame(1, pts_ms, images[image]))
    assert verdict.reject == reject
    assert [kind for kind, _ in verdict.notices] == notices
    assert verdict.reset_tracking == bool(notices)


def test_backwards_timestamp_rejected_until_time_passes_the_newest() -> None:
    checker = FrameSanity(SanityOptions(), live=False)
    verdicts = [checker.check(frame(i, t, textured(i))).reject for i, t in enumerate([0, 33, 20, 30, 66])]
    assert verdicts == [None, None, "timestamp_backwards", "timestamp_backwards", None]


def test_live_jump_is_measured_against_capture_time() -> None:
    # Live: frames were dropped for 3 s of capture time, so a 3 s pts step is no jump...
    checker = FrameSanity(SanityOptions(max_gap_s=1.0), live=True)
    checker.check(frame(0, 0, textured(0), mono_ms=0))
    assert checker.check(frame(1, 3000, textured(1), mono_ms=3000)).notices == []
    # ...but a pts leap far beyond the capture-time step is.
    verdict = checker.check(frame(2, 9000, textured(2), mono_ms=3033))
    assert [k for k, _ in verdict.notices] == ["timestamp_jump"]


def test_identical_check_can_be_disabled() -> None:
    checker = FrameSanity(SanityOptions(check_identical=False), live=False)
    image = textured(0)
    checker.check(frame(0, 0, image))
    assert checker.check(frame(1, 33, image)).reject is None


@pytest.mark.parametrize(
    ("shape", "view"),
    [
        ((720, 1280), (144, 1280)),  # 20x20 thumbnail pixels each: every 5th row, 4 per thumbnail row
        ((1080, 1920), (180, 1920)),  # every 6th row
        ((234, 416), (216, 384)),  # the letterboxed 720p frame: centred crop to 6x6, all rows
        ((36, 64), (36, 64)),  # the thumbnail size itself
        ((30, 50), (30, 50)),  # smaller than the thumbnail: as it is
        ((37, 129), (36, 128)),
    ],
)
def test_the_thumbnail_source_is_a_whole_multiple_of_the_thumbnail(
    shape: tuple[int, int], view: tuple[int, int]
) -> None:
    image = np.zeros((*shape, 3), np.uint8)
    source = thumbnail_source(image)
    assert source.shape[:2] == view
    assert np.shares_memory(source, image)  # a view, no copy
    thumb_w, thumb_h = THUMB_SIZE
    if shape[0] >= thumb_h and shape[1] >= thumb_w:
        assert source.shape[0] % thumb_h == 0 and source.shape[1] % thumb_w == 0


@pytest.mark.parametrize(("content", "reject"), [("black", "black"), ("grey", "covered"), ("textured", None)])
def test_given_content_is_what_the_content_checks_look_at(content: str, reject: str | None) -> None:
    # The detection loop passes its letterboxed copy; the full-size frame is then not read.
    images = {
        "black": np.zeros((48, 64, 3), np.uint8),
        "grey": np.full((48, 64, 3), 128, np.uint8),
        "textured": textured(5),
    }
    sanity = FrameSanity(SanityOptions(), live=False)
    verdict = sanity.check(frame(0, 0, textured(1, (96, 128))), content=images[content])
    assert verdict.reject == reject
