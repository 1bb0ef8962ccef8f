from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from stopsign.train.data import layout
from stopsign.train.data.check import check_dataset, errors, require_valid, write_fixed_copy
from stopsign.train.data.cli import main
from stopsign.train.data.layout import DatasetError


def _label(root: Path, stem: str, text: str) -> Path:
    path = root / layout.LABELS / f"{stem}.txt"
    path.write_text(text)
    return path


def test_clean_dataset_has_no_errors(make_dataset) -> None:
    root = make_dataset()
    assert errors(check_dataset(root)) == []
    assert main(["check", str(root)]) == 0


CORRUPTIONS = [
    (
        "four fields",
        lambda r: _label(r, "tiny_000", "0 0.5 0.5 0.2\n"),
        "labels/tiny_000.txt:1:",
        "expected 5 fields",
    ),
    (
        "class 7",
        lambda r: _label(r, "tiny_001", "0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.2 0.2\n"),
        "tiny_001.txt:2:",
        "class id 7",
    ),
    ("nan", lambda r: _label(r, "tiny_002", "0 nan 0.5 0.2 0.2\n"), "tiny_002.txt:1:", "NaN"),
    (
        "negative width",
        lambda r: _label(r, "tiny_003", "0 0.5 0.5 -0.2 0.2\n"),
        "tiny_003.txt:1:",
        "negative size",
    ),
    (
        "out of range",
        lambda r: _label(r, "tiny_003", "0 0.5 1.7 0.2 0.2\n"),
        "tiny_003.txt:1:",
        "out of [0, 1]",
    ),
    (
        "truncated jpeg",
        lambda r: (r / "images/tiny_004.jpg").write_bytes((r / "images/tiny_004.jpg").read_bytes()[:300]),
        "images/tiny_004.jpg:0:",
        "truncated JPEG",
    ),
    (
        "not an image",
        lambda r: (r / "images/tiny_004.jpg").write_bytes(b"hello"),
        "images/tiny_004.jpg:0:",
        "not a JPEG",
    ),
    ("orphan label", lambda r: _label(r, "ghost", ""), "labels/ghost.txt:0:", "label without image"),
    (
        "duplicate",
        lambda r: shutil.copyfile(r / "images/tiny_005.jpg", r / "images/tiny_009.jpg"),
        "images/tiny_009.jpg:0:",
        "duplicate image: same bytes as tiny_005.jpg",
    ),
    (
        "train and val",
        lambda r: (r / "val.txt").write_text((r / "val.txt").read_text() + "images/tiny_000.jpg\n"),
        "val.txt:5:",
        "same image in train and val (also train.txt:1)",
    ),
    (
        "listed but missing",
        lambda r: (r / "train.txt").write_text("images/nope.jpg\n"),
        "train.txt:1:",
        "does not exist",
    ),
]


@pytest.mark.parametrize(("name", "corrupt", "where", "reason"), CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS])
def test_each_corruption_gets_its_own_message(make_dataset, capsys, name, corrupt, where, reason) -> None:
    root = make_dataset()
    corrupt(root)
    bad = errors(check_dataset(root))
    assert len(bad) == 1, [str(p) for p in bad]
    message = str(bad[0])
    assert where in message and reason in message
    assert main(["check", str(root)]) == 1
    assert reason in capsys.readouterr().out
    with pytest.raises(DatasetError, match=re.escape(reason)):
        require_valid(root)


def test_fix_writes_a_clean_copy_and_leaves_the_original(make_dataset, tmp_path: Path) -> None:
    root = make_dataset()
    _label(root, "tiny_001", "7 0.5 0.5 0.2 0.2\n")
    _label(root, "ghost", "")
    before = sorted(p.name for p in (root / "labels").iterdir())
    fixed = tmp_path / "fixed"
    assert main(["check", str(root), "--fix", str(fixed)]) == 1
    assert sorted(p.name for p in (root / "labels").iterdir()) == before
    assert errors(check_dataset(fixed)) == []
    assert not (fixed / "images/tiny_001.jpg").exists()
    assert len(layout.list_images(fixed)) == 7


def test_fix_refuses_in_place(make_dataset) -> None:
    root = make_dataset()
    with pytest.raises(DatasetError, match="never edited in place"):
        write_fixed_copy(root, root)


def test_missing_data_yaml_is_an_error(tmp_path: Path) -> None:
    problems = check_dataset(tmp_path)
    assert "data.yaml" in str(problems[0]) and problems[0].severity == "error"
