"""Darknet models: our exported ONNX gives OpenCV's Darknet rows, row for row, on real photos.

OpenCV's DNN module reads ``.cfg`` + ``.weights`` itself (``cv2.dnn.readNetFromDarknet``, OpenCV
4.x), an implementation independent of ours. Each family's weights are written here (seeded,
batch norms calibrated on the photos themselves, see ``randomize``), imported with
``import-darknet``, exported with ``edge-export onnx`` and run by ONNX Runtime. OpenCV's yolo rows
are cell-major (y, x, anchor) with boxes normalised to the input size; ours are anchor-major with
boxes in input pixels; the test reorders and rescales, then asks every row to agree within 1e-3
relative (box in pixels, objectness; the class scores OpenCV keeps are objectness x probability).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from stopsign.edge.model.onnx_meta import read_spec_from_onnx
from stopsign.export.cli import main as export_main
from stopsign.train.darknet.import_cmd import import_darknet
from tests.train.darknet.helpers import write_darknet_files

REPO = Path(__file__).resolve().parents[2]
SIZE = 128
RTOL = 1e-3
NC = 2

pytestmark = [
    pytest.mark.shared_data,
    pytest.mark.skipif(
        not hasattr(getattr(cv2, "dnn", None), "readNetFromDarknet"),
        reason=f"OpenCV {cv2.__version__} has no cv2.dnn.readNetFromDarknet (OpenCV 5 dropped it; "
        "pip install 'opencv-python-headless>=4.8,<5', as the dev extra pins)",
    ),
]


def photos(n: int = 3) -> list[np.ndarray]:
    """Real photos: the project's dataset (data/real/images), else ../shared/data/real/gtsdb."""
    for folder in (REPO / "data" / "real" / "images", REPO.parent / "shared" / "data" / "real" / "gtsdb"):
        files = sorted(folder.glob("*.jpg"))[:n] if folder.is_dir() else []
        if len(files) == n:
            images = [cv2.imread(str(f)) for f in files]
            assert all(img is not None for img in images), f"unreadable photos among {files}"
            return images
    pytest.skip("no real photos: data/real/images and ../shared/data/real/gtsdb are absent")


def opencv_rows(cfg: Path, weights: Path, blob: np.ndarray) -> list[np.ndarray]:
    """OpenCV's output of each yolo layer for one image: (ny * nx * na, 5 + nc)."""
    net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setInput(blob)
    return list(net.forward(net.getUnconnectedOutLayersNames()))


def our_levels(rows: np.ndarray, strides: tuple[int, ...], na: int) -> list[np.ndarray]:
    """Our (N, 5 + nc) rows of one image, split per level and reordered cell-major like OpenCV's."""
    out, start = [], 0
    for stride in strides:
        ny = nx = SIZE // stride
        level = rows[start : start + na * ny * nx].reshape(na, ny, nx, -1)
        out.append(level.transpose(1, 2, 0, 3).reshape(ny * nx * na, -1))
        start += na * ny * nx
    assert start == rows.shape[0]
    return out


def check_family(family: str, tmp_path: Path, edit: Callable[[str], str] | None = None) -> None:
    images = photos()
    # Darknet stretches each photo to the input; blobFromImages does the same (crop=False).
    blobs = cv2.dnn.blobFromImages(images, 1 / 255.0, (SIZE, SIZE), swapRB=True, crop=False)
    cfg, weights, _ = write_darknet_files(
        tmp_path / "dn", family, nc=NC, size=SIZE, seed=7, calibration=blobs, edit=edit
    )
    checkpoint = import_darknet(cfg, weights, tmp_path / "ckpt")
    onnx_path = tmp_path / "m.onnx"
    assert (
        export_main(
            [
                "onnx",
                "--weights",
                str(checkpoint),
                "--img",
                str(SIZE),
                "--batch",
                "3",
                "--out",
                str(onnx_path),
            ]
        )
        == 0
    )
    spec = read_spec_from_onnx(onnx_path)
    assert spec.resize == "stretch" and spec.input_size == (SIZE, SIZE)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ours = session.run(None, {session.get_inputs()[0].name: blobs.astype(np.float32)})[0]
    assert ours.shape == (len(images), spec.num_outputs, 5 + NC)
    na = len(spec.anchors[0]) // 2
    for image_index in range(len(images)):
        theirs = opencv_rows(cfg, weights, blobs[image_index : image_index + 1])
        mine = our_levels(ours[image_index], spec.strides, na)
        assert len(theirs) == len(mine) == len(spec.strides)
        for level, (a, b) in enumerate(zip(mine, theirs)):
            where = f"{family} image {image_index} level {level} (stride {spec.strides[level]})"
            assert a.shape == b.shape, where
            box_cv = b[:, :4] * SIZE  # normalised to the input -> input pixels
            # Relative per row; a centre within a pixel of 0 is compared to 1e-3 px.
            np.testing.assert_allclose(a[:, :4], box_cv, rtol=RTOL, atol=RTOL, err_msg=f"{where}: boxes")
            np.testing.assert_allclose(a[:, 4], b[:, 4], rtol=RTOL, atol=1e-6, err_msg=f"{where}: objectness")
            kept = b[:, 5:] > 0  # OpenCV zeroes class scores under its threshold
            assert kept.any(), where
            np.testing.assert_allclose(
                (a[:, 5:] * a[:, 4:5])[kept],
                b[:, 5:][kept],
                rtol=RTOL,
                atol=1e-6,
                err_msg=f"{where}: classes",
            )
            # Boxes that vary: a decode bug (grid, anchors, mask, scale_x_y) could not hide.
            assert np.ptp(box_cv[:, 2]) > 1.0 and np.ptp(a[:, 0]) > SIZE / 2, where


@pytest.mark.parametrize("family", ["yolov4-tiny", "yolov4-tiny-3l", "yolov3-tiny"])
def test_tiny_families_match_opencv(family: str, tmp_path: Path) -> None:
    check_family(family, tmp_path)


def test_new_coords_and_scale_x_y_2_match_opencv(tmp_path: Path) -> None:
    """The scaled-YOLOv4 decode: logistic head convolutions, new_coords=1, scale_x_y=2."""

    def edit(text: str) -> str:
        text = text.replace("activation=linear", "activation=logistic")
        return text.replace("scale_x_y=1.05", "scale_x_y=2.0\nnew_coords=1")

    check_family("yolov4-tiny", tmp_path, edit)
    onnx_ops = {node.op_type for node in onnx.load(str(tmp_path / "m.onnx")).graph.node}
    assert "Exp" not in onnx_ops  # the new_coords decode, not the default one


@pytest.mark.slow
@pytest.mark.parametrize("family", ["yolov3", "yolov4"])
def test_large_families_match_opencv(family: str, tmp_path: Path) -> None:
    check_family(family, tmp_path)
