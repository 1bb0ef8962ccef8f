from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stopsign.train.data.labels import LabelError, parse_label_line, parse_label_text

BAD_LINES = [
    ("0 0.5 0.5 0.2", "expected 5 fields"),
    ("0 0.5 0.5 0.2 0.2 0.1", "expected 5 fields"),
    ("7 0.5 0.5 0.2 0.2", "class id 7 not in [0, 1)"),
    ("-1 0.5 0.5 0.2 0.2", "class id -1 not in [0, 1)"),
    ("0.5 0.5 0.5 0.2 0.2", "is not an integer"),
    ("a 0.5 0.5 0.2 0.2", "class id 'a' is not a number"),
    ("0 nan 0.5 0.2 0.2", "cx is nan (NaN or infinite)"),
    ("0 0.5 0.5 inf 0.2", "w is inf (NaN or infinite)"),
    ("0 0.5 0.5 -0.2 0.2", "zero or negative size"),
    ("0 0.5 0.5 0.2 0", "zero or negative size"),
    ("0 1.5 0.5 0.2 0.2", "cx=1.5 out of [0, 1]"),
    ("0 0.95 0.5 0.2 0.2", "extends outside the image"),
    ("0 0.5 x 0.2 0.2", "cy 'x' is not a number"),
]


@pytest.mark.parametrize(("line", "reason"), BAD_LINES)
def test_bad_line_has_its_own_reason(line: str, reason: str) -> None:
    with pytest.raises(LabelError, match=None) as info:
        parse_label_line(line, nc=1)
    assert reason in str(info.value)


def test_good_line_and_missing_final_newline() -> None:
    good, bad = parse_label_text("0 0.5 0.5 0.2 0.2\n\n0 0.1 0.1 0.1 0.1", nc=1)
    assert bad == []
    assert [g.cx for g in good] == [0.5, 0.1]


def test_text_reports_line_numbers() -> None:
    _, bad = parse_label_text("0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2\n", nc=1)
    assert [line for line, _ in bad] == [2]


@given(st.text(max_size=80))
def test_parser_never_crashes_on_arbitrary_text(text: str) -> None:
    good, bad = parse_label_text(text, nc=1)
    for label in good:  # whatever it accepts is a valid normalised box
        assert label.class_id == 0
        assert all(math.isfinite(v) for v in (label.cx, label.cy, label.w, label.h))
        assert 0 < label.w <= 1 and 0 < label.h <= 1
        assert label.cx - label.w / 2 >= -1e-3 and label.cx + label.w / 2 <= 1 + 1e-3
    assert all(reason for _, reason in bad)


@given(
    st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=5, max_size=5),
)
def test_parser_on_numeric_fields(values: list[float]) -> None:
    line = " ".join(repr(v) for v in values)
    try:
        parsed = parse_label_line(line, nc=2)
    except LabelError as exc:
        assert str(exc)
    else:
        assert parsed.class_id in (0, 1)
        assert parsed.w > 0 and parsed.h > 0
