"""edge-detect runs the ONNX of an imported Darknet model (stretch resize) on a recorded drive
and on a folder of stills, and its boxes are OpenCV's Darknet boxes in source pixels."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from stopsign.edge.cli.detect import main
from stopsign.export.cli import main as export_main
from stopsign.train.darknet.import_cmd import import_darknet
from tests.train.darknet.helpers import write_darknet_files

REPO = Path(__file__).resolve().parents[3]
DRIVE = REPO / "samples" / "drives" / "day_approach"
SIZE = 128


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


FAMILIES = [
    "yolov4-tiny",
    "yolov4-tiny-3l",
    "yolov3-tiny",
    pytest.param("yolov3", marks=pytest.mark.slow),
    pytest.param("yolov4", marks=pytest.mark.slow),
]


@pytest.fixture(scope="module", params=FAMILIES)
def darknet(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path, Path]:
    """(cfg, weights, onnx) of a random Darknet model for one class, imported and exported (the
    checkpoint folder is ``onnx.parent / "ckpt"``). Batch norms are calibrated on the stills and
    a frame of the drive, so the deep families stay finite on them."""
    family = request.param
    root = tmp_path_factory.mktemp(family)
    frames = list(stills(root / "calibration").values())
    capture = cv2.VideoCapture(str(DRIVE / "video.mp4"))
    ok, frame = capture.read()
    capture.release()
    if ok:
        frames.append(frame)
    calibration = cv2.dnn.blobFromImages(frames, 1 / 255.0, (SIZE, SIZE), swapRB=True, crop=False)
    cfg, weights, _ = write_darknet_files(
        root / "dn", family, nc=1, size=SIZE, seed=5, calibration=calibration
    )
    names = root / "obj.names"
    names.write_text("stop_sign\n")
    checkpoint = import_darknet(cfg, weights, root / "ckpt", names)
    onnx_path = root / f"{family}.onnx"
    assert (
        export_main(["onnx", "--weights", str(checkpoint), "--img", str(SIZE), "--out", str(onnx_path)]) == 0
    )
    return cfg, weights, onnx_path


def stills(folder: Path) -> dict[str, np.ndarray]:
    """Non-square stills, so stretching and letterboxing would put boxes in different places."""
    folder.mkdir()
    rng = np.random.default_rng(3)
    images = {}
    for name, (h, w) in (("a.jpg", (240, 320)), ("b.png", (300, 150)), ("c.png", (96, 256))):
        image = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (0, 0), 3)
        cv2.circle(image, (w // 3, h // 2), min(h, w) // 4, (30, 30, 220), -1)
        cv2.imwrite(str(folder / name), image)
        images[name] = cv2.imread(str(folder / name))
    return images


def test_folder_of_stills_gives_opencvs_boxes_in_source_pixels(darknet, tmp_path: Path) -> None:
    cfg, weights, onnx_path = darknet
    images = stills(tmp_path / "stills")
    dets_path = tmp_path / "dets.jsonl"
    code = main(
        ["--source", str(tmp_path / "stills"), "--model", str(onnx_path), "--backend", "onnxruntime",
         "--conf", "0.05", "--detections", str(dets_path), "--events", str(tmp_path / "e.jsonl")]
    )  # fmt: skip
    assert code == 0
    lines = read_jsonl(dets_path)
    assert [Path(line["image"]).name for line in lines] == sorted(images)
    if not hasattr(getattr(cv2, "dnn", None), "readNetFromDarknet"):
        pytest.skip(f"OpenCV {cv2.__version__} has no cv2.dnn.readNetFromDarknet (needs OpenCV 4.x)")
    net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    for line in lines:
        image = images[Path(line["image"]).name]
        h, w = image.shape[:2]
        assert line["detections"], line["image"]
        best = max(line["detections"], key=lambda d: d["score"])
        # OpenCV stretches too (blobFromImage, crop=False); its boxes are normalised to the input,
        # which under stretching is the frame: x (w, h) gives source pixels.
        net.setInput(cv2.dnn.blobFromImage(image, 1 / 255.0, (SIZE, SIZE), swapRB=True, crop=False))
        rows = np.concatenate(net.forward(net.getUnconnectedOutLayersNames()))
        top = rows[np.argmax(rows[:, 5])]
        assert best["score"] == pytest.approx(float(top[5]), rel=1e-3)
        cx, cy, bw, bh = top[:4] * [w, h, w, h]
        expected = np.clip([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 0, [w, h, w, h])
        np.testing.assert_allclose(best["xyxy"], expected, rtol=1e-3, atol=0.05, err_msg=line["image"])


@pytest.mark.skipif(not (DRIVE / "video.mp4").is_file(), reason=f"no sample drive at {DRIVE}")
def test_recorded_drive_video(darknet, tmp_path: Path) -> None:
    _, _, onnx_path = darknet
    dets_path = tmp_path / "dets.jsonl"
    code = main(
        ["--source", f"file://{DRIVE / 'video.mp4'}", "--model", str(onnx_path), "--conf", "0.05",
         "--max-frames", "12", "--detections", str(dets_path), "--events", str(tmp_path / "e.jsonl")]
    )  # fmt: skip
    assert code == 0
    records = read_jsonl(dets_path)
    assert [r["frame"] for r in records] == list(range(12))
    meta = json.loads((DRIVE / "meta.json").read_text())
    width, height = meta.get("width", 0), meta.get("height", 0)
    found = [d for r in records for d in r["detections"]]
    assert found  # a random net at conf 0.05 fires somewhere on a real drive
    for det in found:
        x1, y1, x2, y2 = det["xyxy"]
        assert 0 <= x1 <= x2 and 0 <= y1 <= y2
        if width and height:
            assert x2 <= width and y2 <= height


def test_torch_backend_runs_the_checkpoint_folder_like_the_onnx(darknet, tmp_path: Path) -> None:
    _, _, onnx_path = darknet
    images = stills(tmp_path / "stills")
    results = {}
    for backend, model in (("onnxruntime", onnx_path), ("torch", onnx_path.parent / "ckpt")):
        dets_path = tmp_path / f"{backend}.jsonl"
        code = main(
            ["--source", str(tmp_path / "stills"), "--model", str(model), "--backend", backend,
             "--conf", "0.05", "--detections", str(dets_path), "--events", str(tmp_path / "e.jsonl")]
        )  # fmt: skip
        assert code == 0, backend
        results[backend] = read_jsonl(dets_path)
    assert len(results["torch"]) == len(images)
    for a, b in zip(results["onnxruntime"], results["torch"]):
        assert a["image"] == b["image"]
        assert len(a["detections"]) == len(b["detections"]) > 0
        pairs = pair_detections(a["detections"], b["detections"])  # fails on any unpaired one
        assert len(pairs) == len(a["detections"]), a["image"]


def pair_detections(first: list[dict], second: list[dict]) -> list[tuple[dict, dict]]:
    """Pairs two runtimes' detections of one image one to one, not by list position.

    Both lists are sorted by score, but two detections can score within float32 rounding of each
    other, and then the runtimes may list them in either order (yolov4 on c.png: two boxes far
    apart score 0.2851181 and 0.28511813 on ONNX Runtime, 0.28511813 both on torch). Pairing by nearest box alone is
    wrong too: boxes are clipped to the image after NMS, so distinct detections can share a box
    (yolov3-tiny: two whole-frame boxes scoring 0.240 and 0.194) and only the score tells them
    apart. So each detection of ``first`` takes the first unused one of ``second`` (in score
    order) with its class, its box and its score, within the test's tolerances; every one must
    find a partner, so a real difference in box or score still fails.
    """
    used = [False] * len(second)
    pairs = []
    for da in first:
        for j, db in enumerate(second):
            if (
                not used[j]
                and da["class"] == db["class"]
                and np.allclose(da["xyxy"], db["xyxy"], rtol=1e-3, atol=0.05)
                and da["score"] == pytest.approx(db["score"], rel=1e-3)
            ):
                used[j] = True
                pairs.append((da, db))
                break
        else:
            rank = len(pairs)
            pytest.fail(f"no partner for {da} (rank {rank}); the other runtime has {second[rank]} there")
    return pairs
