from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from stopsign.train.data import layout
from stopsign.train.data.check import check_dataset, errors
from stopsign.train.data.cli import main
from stopsign.train.data.importer import ImportOptions, import_dataset, merge_datasets
from stopsign.train.data.layout import DatasetError

from .conftest import photo


def _grey_back(seed: int) -> np.ndarray:
    img = photo(seed)
    img[24:72, 32:80] = 140  # grey metal where the sign is
    return img


def _yolo_export(root: Path) -> Path:
    """Roboflow-like export: Pole/Sign, one front, one back face, one pole-only image."""
    (root / "train/images").mkdir(parents=True)
    (root / "train/labels").mkdir(parents=True)
    (root / "data.yaml").write_text("nc: 2\nnames: ['Pole', 'Sign']\n")
    sign = "1 0.4375 0.5 0.375 0.5"  # (32..80, 24..72) in a 128x96 image
    cv2.imwrite(str(root / "train/images/a.jpg"), photo(1, with_stop=True))
    (root / "train/labels/a.txt").write_text(f"0 0.1 0.5 0.05 0.5\n{sign}")  # no final newline
    cv2.imwrite(str(root / "train/images/b.jpg"), _grey_back(2))
    (root / "train/labels/b.txt").write_text(sign + "\n")
    cv2.imwrite(str(root / "train/images/c.png"), photo(3))
    (root / "train/labels/c.txt").write_text("0 0.1 0.5 0.05 0.5\n")
    return root


def test_yolo_import_maps_drops_and_removes_back_faces(tmp_path: Path) -> None:
    src = _yolo_export(tmp_path / "src")
    opts = ImportOptions(fmt="yolo", mapping={"Sign": "stop_sign"}, drop={"Pole"})
    summary = import_dataset(src, tmp_path / "out", opts)
    assert (summary.images, summary.stop_boxes, summary.dropped_back_faces) == (3, 1, 1)
    assert summary.roles == {"stop": 1, "confuser": 1, "negative": 1}
    out = tmp_path / "out"
    assert errors(check_dataset(out)) == []
    assert (out / "images/src_c.jpg").is_file()  # png re-encoded as jpg
    records = layout.read_sources(out)
    assert records["src_b.jpg"].confusers[0]["name"] == "stop_sign_back"
    assert records["src_a.jpg"].original.endswith("train/images/a.jpg")
    kept = import_dataset(
        src,
        tmp_path / "kept",
        ImportOptions(fmt="yolo", mapping={"Sign": "stop_sign"}, drop={"Pole"}, keep_back_faces=True),
    )
    assert kept.stop_boxes == 2


def test_yolo_without_a_stop_class_is_a_clear_error(tmp_path: Path) -> None:
    src = _yolo_export(tmp_path / "src")
    with pytest.raises(DatasetError, match=r"no class maps to stop_sign; classes are \['Pole', 'Sign'\]"):
        import_dataset(src, tmp_path / "out", ImportOptions(fmt="yolo"))


def test_voc_gtsdb_coco(tmp_path: Path) -> None:
    voc = tmp_path / "voc"
    (voc / "images").mkdir(parents=True)
    (voc / "annotations").mkdir()
    cv2.imwrite(str(voc / "images/r0.jpg"), photo(5, with_stop=True))
    obj = "<object><name>{}</name><bndbox><xmin>{}</xmin><ymin>{}</ymin><xmax>{}</xmax><ymax>{}</ymax></bndbox></object>"
    (voc / "annotations/r0.xml").write_text(
        "<annotation>"
        + obj.format("stop", 33, 25, 80, 72)
        + obj.format("speedlimit", 1, 1, 20, 20)
        + "</annotation>"
    )
    s = import_dataset(voc, tmp_path / "o_voc", ImportOptions(fmt="voc"))
    assert (s.stop_boxes, s.confuser_objects["speedlimit"]) == (1, 1)
    label = (tmp_path / "o_voc/labels/voc_r0.txt").read_text().split()
    assert [float(v) for v in label[1:]] == pytest.approx([0.4375, 0.5, 0.375, 0.5])

    gts = tmp_path / "gtsdb"
    gts.mkdir()
    for i in range(3):
        cv2.imwrite(str(gts / f"{i:05d}.jpg"), photo(10 + i, with_stop=i == 0))
    (gts / "gt.txt").write_text("00000.jpg;32;24;79;71;14\n00001.jpg;5;5;20;20;17\n")
    s = import_dataset(gts, tmp_path / "o_gts", ImportOptions(fmt="gtsdb"))
    assert s.roles == {"stop": 1, "confuser": 1, "negative": 1}

    coco = tmp_path / "coco"
    coco.mkdir()
    cv2.imwrite(str(coco / "x.jpg"), photo(20, with_stop=True))
    doc = {
        "images": [{"id": 1, "file_name": "x.jpg"}],
        "categories": [{"id": 13, "name": "stop sign"}],
        "annotations": [{"image_id": 1, "category_id": 13, "bbox": [32, 24, 48, 48]}],
    }
    (coco / "ann.json").write_text(json.dumps(doc))
    assert main(["import", "--format", "coco", str(coco), "--out", str(tmp_path / "o_coco")]) == 0


def test_bad_source_labels_name_file_and_line(tmp_path: Path) -> None:
    src = _yolo_export(tmp_path / "src")
    (src / "train/labels/c.txt").write_text("0 0.1 0.5 0.05 0.5\n1 0.5 0.5 0.2\n")
    code = main(
        ["import", "--format", "yolo", str(src), "--out", str(tmp_path / "o"), "--map", "Sign=stop_sign"]
    )
    assert code == 2


def test_merge_keeps_splits_and_refuses_the_same_set_twice(make_dataset, tmp_path: Path) -> None:
    a = make_dataset("a", source="a")
    b = make_dataset("b", source="b")
    assert merge_datasets([a, b], tmp_path / "m") == 16
    assert len(layout.read_list(tmp_path / "m", layout.VAL_LIST)) == 8
    assert errors(check_dataset(tmp_path / "m")) == []
    with pytest.raises(DatasetError, match="clashes"):
        merge_datasets([a, a], tmp_path / "m2")


# (folder, format, extra options, images, stop boxes with back faces kept, byte-duplicate photos)
# Images and boxes are the shared/data/README.md numbers; the duplicates were found by `check`.
REAL_SETS = [
    ("roboflow-stop-signs", "yolo", ["--map", "Sign=stop_sign", "--drop", "Pole"], 164, 187, 1),
    ("gtsdb", "gtsdb", [], 451, 16, 0),
    ("road-signs-voc", "voc", [], 694, 58, 1),
    ("roboflow-stop-sign-uthm", "yolo", [], 225, 237, 0),
]


@pytest.mark.shared_data
@pytest.mark.slow
@pytest.mark.parametrize(
    ("folder", "fmt", "extra", "n_images", "n_boxes", "n_dups"), REAL_SETS, ids=[r[0] for r in REAL_SETS]
)
def test_real_sets_match_the_readme(
    shared_data: Path, tmp_path: Path, folder, fmt, extra, n_images, n_boxes, n_dups
) -> None:
    src = shared_data / "real" / folder
    kept = tmp_path / "kept"
    assert main(["import", "--format", fmt, str(src), "--out", str(kept), "--keep-back-faces", *extra]) == 0
    stats = [layout.read_sources(kept)[p.name] for p in layout.list_images(kept)]
    assert len(stats) == n_images
    assert sum(r.n_stop for r in stats) == n_boxes
    problems = errors(check_dataset(kept))
    assert len(problems) == n_dups and all("duplicate image" in p.message for p in problems)
    dropped = tmp_path / "dropped"
    assert main(["import", "--format", fmt, str(src), "--out", str(dropped), *extra]) == 0
    records = list(layout.read_sources(dropped).values())
    assert sum(r.n_stop for r in records) + sum(r.dropped_back_faces for r in records) == n_boxes
