"""OpenVINO backend: the same raw output as ONNX Runtime, batches, its compile cache, and bad input."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest

from stopsign.edge.backends.base import BackendError, BackendOptions
from stopsign.edge.backends.cpu_features import cpu_flags, has_int8_dot_product
from stopsign.edge.backends.onnxruntime import OnnxRuntimeBackend
from stopsign.edge.backends.openvino import OpenVinoBackend
from tests.edge.helpers import requires_gstreamer

# These run in a process of their own (test_openvino_isolated.py): with OpenVINO loaded, a later
# training test that forks persistent loader workers and spawns DDP ranks was killed by SIGSEGV.
IN_OWN_PROCESS = os.environ.get("STOPSIGN_OPENVINO_TESTS") == "1"
pytestmark = [
    pytest.mark.skipif(not OpenVinoBackend.is_available(), reason="openvino is not installed"),
    pytest.mark.skipif(not IN_OWN_PROCESS, reason="run in their own process by test_openvino_isolated.py"),
]
SHIPPED = Path(__file__).resolve().parents[3] / "edge" / "assets"


# The recorded INT8 outputs come from OpenVINO's dot-product kernels (AVX-512 VNNI / AVX-VNNI /
# AMX). On a CPU with AVX2 only, its INT8 path multiplies through vpmaddubsw, whose int16 sums
# saturate, and lands further from the Q/DQ reference than those outputs allow (an AVX2-only AMD
# EPYC gave 0.28 objectness where 0.15 is allowed, and the expected-output replays failed).
# Hardware, like a GPU: skipped with the reason, not loosened (docs/int8.md, "INT8 on AVX2 CPUs").
requires_int8_dot_product = pytest.mark.skipif(
    has_int8_dot_product(cpu_flags()) is False,
    reason="this CPU has no INT8 dot-product instruction (AVX-512 VNNI, AVX-VNNI or AMX): OpenVINO's "
    "AVX2 INT8 kernels round differently from the recorded outputs",
)


def load(model: Path, cache: Path, **options: object) -> OpenVinoBackend:
    backend = OpenVinoBackend(cache_dir=cache)
    backend.load(model, None, BackendOptions(**options))  # type: ignore[arg-type]
    return backend


def reference(model: Path, batch: np.ndarray) -> np.ndarray:
    ort = OnnxRuntimeBackend()
    ort.load(model, None, BackendOptions(device="cpu"))
    return ort.infer(batch)


@pytest.mark.parametrize(("fixture", "size"), [("tiny_onnx", 1), ("tiny_onnx", 3), ("tiny_dynamic_onnx", 3)])
def test_fp32_matches_onnxruntime(
    fixture: str, size: int, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    model = request.getfixturevalue(fixture)
    backend = load(model, tmp_path)
    batch = np.random.default_rng(size).random((size, 3, 160, 160), dtype=np.float32)
    out = backend.infer(batch)
    assert out.shape[0] == size and out.dtype == np.float32
    np.testing.assert_allclose(out, reference(model, batch), rtol=1e-4, atol=1e-3)
    assert backend.describe()["inference_precision"] == "f32"  # an FP32 file runs in FP32


def test_outputs_are_not_overwritten_by_the_next_call(tiny_onnx: Path, tmp_path: Path) -> None:
    backend = load(tiny_onnx, tmp_path)
    rng = np.random.default_rng(0)
    a, b = (rng.random((1, 3, 160, 160), dtype=np.float32) for _ in range(2))
    first = backend.infer(a)
    kept = first.copy()
    backend.infer(b)
    np.testing.assert_array_equal(first, kept)


def test_the_compile_cache_is_keyed_by_model_and_version_and_rebuilt_when_corrupt(
    tiny_onnx: Path, tiny_dynamic_onnx: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = load(tiny_onnx, tmp_path)
    assert first.cache_dir is not None and first.cache_dir.parent.parent == tmp_path
    blobs = [p for p in first.cache_dir.rglob("*") if p.is_file()]
    assert blobs, "a compiled model was written to the cache"
    other = load(tiny_dynamic_onnx, tmp_path)
    assert other.cache_dir != first.cache_dir  # another model, another entry
    x = np.random.default_rng(0).random((1, 3, 160, 160), dtype=np.float32)
    expected = first.infer(x)
    for blob in blobs:
        blob.write_bytes(b"\0garbage" * 16)
    with caplog.at_level(logging.WARNING):
        again = load(tiny_onnx, tmp_path)
    np.testing.assert_allclose(again.infer(x), expected, rtol=1e-5, atol=1e-5)
    if again.cache_rebuilt:  # OpenVINO either rejects the blob (we rebuild) or recompiles itself
        assert "rebuilding the cache" in caplog.text


def test_without_cache_nothing_is_written(tiny_onnx: Path, tmp_path: Path) -> None:
    backend = OpenVinoBackend(cache_dir=tmp_path / "cache", use_cache=False)
    backend.load(tiny_onnx, None, BackendOptions())
    assert backend.cache_dir is None and not (tmp_path / "cache").exists()


def test_shipped_fp32_gives_the_onnxruntime_rows(tmp_path: Path) -> None:
    model = SHIPPED / "stopsign.onnx"
    batch = np.random.default_rng(0).random((2, 3, 416, 416), dtype=np.float32)
    ours = load(model, tmp_path).infer(batch)
    theirs = reference(model, batch)
    np.testing.assert_allclose(ours[..., 4:], theirs[..., 4:], atol=1e-4)  # objectness, class
    np.testing.assert_allclose(ours[..., :4], theirs[..., :4], atol=1e-2)  # boxes, input pixels


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        (b"not a model", ".onnx", "cannot read it as an ONNX model"),
        (b"", ".engine", "runs .onnx files"),
    ],
)
def test_bad_model_files_are_named(content: bytes, suffix: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / f"m{suffix}"
    path.write_bytes(content)
    with pytest.raises(BackendError, match=message) as info:
        load(path, tmp_path)
    assert str(path) in str(info.value)


def test_a_missing_device_is_an_error_that_lists_the_devices(tiny_onnx: Path, tmp_path: Path) -> None:
    import openvino

    if "GPU" in openvino.Core().available_devices:
        pytest.skip("this machine has an OpenVINO GPU")
    with pytest.raises(BackendError, match=r"device GPU asked but OpenVINO lists \['CPU"):
        load(tiny_onnx, tmp_path, device="gpu")
    with pytest.raises(BackendError, match="not one of"):
        load(tiny_onnx, tmp_path, device="cuda")


def test_a_model_without_its_spec_is_refused(tiny_onnx: Path, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(tiny_onnx))
    del model.metadata_props[:]
    path = tmp_path / "bare.onnx"
    onnx.save(model, str(path))
    with pytest.raises(BackendError, match="edge-export onnx"):
        load(path, tmp_path)


def test_infer_checks_the_shape(tiny_onnx: Path, tmp_path: Path) -> None:
    backend = load(tiny_onnx, tmp_path)
    with pytest.raises(BackendError, match="input shape"):
        backend.infer(np.zeros((1, 3, 128, 128), np.float32))
    with pytest.raises(BackendError, match="before load"):
        OpenVinoBackend(cache_dir=tmp_path).infer(np.zeros((1, 3, 160, 160), np.float32))


def test_the_cache_dir_option_moves_the_cache(tiny_onnx: Path, tmp_path: Path) -> None:
    backend = OpenVinoBackend(cache_dir=tmp_path / "default")
    backend.load(tiny_onnx, None, BackendOptions(cache_dir=str(tmp_path / "asked")))
    assert backend.cache_dir is not None and backend.cache_dir.is_relative_to(tmp_path / "asked")
    assert not (tmp_path / "default").exists()


@pytest.mark.parametrize(
    "drive", ["day_approach", "night_approach", "no_entry_and_yield", "occluded_approach"]
)
def test_sample_drives_replay_to_the_expected_outputs(drive: str) -> None:
    """Expected outputs are backend-independent: the same events, boxes and scores within tolerance."""
    from stopsign.edge.replay.expected import Tolerance, compare, expected_path, read_expected, to_lines
    from stopsign.edge.replay.runner import replay

    folder = SHIPPED.parents[1] / "samples" / "drives" / drive
    result = replay(folder, SHIPPED / "stopsign.onnx", "openvino")
    diffs = compare(
        read_expected(expected_path(folder, result.model_sha256)),
        to_lines(result),
        Tolerance.parse("iou=0.9,score=0.02"),
    )
    assert not diffs, "; ".join(diffs[:5])


# ---- the CPU INT8 IR (edge-calibrate openvino) ----------------------------------------------------

DRIVES = ["day_approach", "night_approach", "no_entry_and_yield", "occluded_approach"]


def _events(lines: list[dict]) -> list[tuple]:
    return [(x["event"], x["frame"], x["track_id"]) for x in lines if x.get("kind") == "event"]


@pytest.mark.parametrize("drive", DRIVES)
@requires_int8_dot_product
def test_the_shipped_int8_ir_replays_to_its_outputs_with_the_fp32_events(drive: str) -> None:
    """The IR has expected outputs of its own (INT8 scores move by up to ~0.1), and the same events
    (kind and track, in order) as the FP32 model, each at most 3 frames apart (night_approach:
    confirmed 2 frames earlier)."""
    from stopsign.edge.model.artifacts import sha256_file
    from stopsign.edge.replay.expected import (
        Tolerance,
        compare,
        expected_for,
        expected_path,
        read_expected,
        to_lines,
    )
    from stopsign.edge.replay.runner import replay

    folder = SHIPPED.parents[1] / "samples" / "drives" / drive
    result = replay(folder, SHIPPED / "stopsign.openvino.xml", "openvino")
    assert expected_for(result).name.endswith(".openvino.jsonl")  # INT8: this runtime's own file
    mine = read_expected(expected_for(result))
    diffs = compare(mine, to_lines(result), Tolerance.parse("iou=0.9,score=0.02"))
    assert not diffs, "; ".join(diffs[:5])
    fp32 = _events(read_expected(expected_path(folder, sha256_file(SHIPPED / "stopsign.onnx"))))
    int8 = _events(mine)
    assert [(kind, track) for kind, _, track in int8] == [(kind, track) for kind, _, track in fp32]
    assert all(abs(a[1] - b[1]) <= 3 for a, b in zip(int8, fp32)), (int8, fp32)


@pytest.mark.parametrize("drive", DRIVES)
@requires_int8_dot_product
def test_the_int8_qdq_file_replays_to_its_openvino_outputs(drive: str) -> None:
    """The Q/DQ file has expected outputs per runtime; on OpenVINO it is the same graph as the IR
    (the same rows), and the ONNX Runtime file of the same model is not the one compared with."""
    from stopsign.edge.replay.expected import Tolerance, compare, expected_for, read_expected, to_lines
    from stopsign.edge.replay.runner import replay

    folder = SHIPPED.parents[1] / "samples" / "drives" / drive
    result = replay(folder, SHIPPED / "stopsign.int8.onnx", "openvino")
    path = expected_for(result)
    assert path.name == f"{result.model_sha256[:16]}.openvino.jsonl"
    assert not compare(read_expected(path), to_lines(result), Tolerance.parse("iou=0.9,score=0.02"))


@pytest.mark.parametrize("drive", DRIVES)
@requires_int8_dot_product
def test_int8_on_openvino_announces_what_int8_on_onnxruntime_does(drive: str) -> None:
    """The same Q/DQ file on both runtimes: every stop_sign_ahead at the same frame and track; a
    track may end a frame apart (the INT8 kernels round differently from ONNX Runtime's float
    emulation, up to ~0.1 in objectness)."""
    from stopsign.edge.replay.runner import replay

    folder = SHIPPED.parents[1] / "samples" / "drives" / drive
    lines = {
        backend: _events([line for line in _lines(replay(folder, SHIPPED / "stopsign.int8.onnx", backend))])
        for backend in ("onnxruntime", "openvino")
    }
    ahead = {b: [e for e in lines[b] if e[0] == "stop_sign_ahead"] for b in lines}
    assert ahead["openvino"] == ahead["onnxruntime"]
    assert [(k, t) for k, _, t in lines["openvino"]] == [(k, t) for k, _, t in lines["onnxruntime"]]
    assert all(abs(a[1] - b[1]) <= 1 for a, b in zip(lines["openvino"], lines["onnxruntime"]))


def _matched_score_gaps(a: list[dict], b: list[dict]) -> list[float]:
    """|score difference| of the detections of two replays' frame lines, matched per frame at IoU >= 0.5."""
    from stopsign.edge.vision.postprocess import box_iou

    gaps = []
    frames_b = {line["frame"]: line["detections"] for line in b if line["kind"] == "frame"}
    for line in (x for x in a if x["kind"] == "frame"):
        ours, theirs = line["detections"], frames_b.get(line["frame"], [])
        if not ours or not theirs:
            continue
        iou = box_iou(np.array([d["xyxy"] for d in ours]), np.array([d["xyxy"] for d in theirs]))
        for i, j in enumerate(iou.argmax(axis=1)):
            if iou[i, j] >= 0.5:
                gaps.append(abs(ours[i]["score"] - theirs[j]["score"]))
    return gaps


@requires_int8_dot_product
def test_int8_runtimes_differ_less_than_int8_differs_from_fp32() -> None:
    """Why INT8 replays are not held to the 0.02 score tolerance across runtimes: OpenVINO's INT8
    kernels and ONNX Runtime's float emulation of the same Q/DQ file round differently, but by less
    than INT8 itself moves scores from FP32 (what this test computes was, on 2026-12-01: p90 0.037 against 0.066, max 0.093 against
    0.127 over the 4 sample drives); the events are the same (the test above)."""
    from stopsign.edge.model.artifacts import sha256_file
    from stopsign.edge.replay.expected import expected_path, read_expected
    from stopsign.edge.replay.runner import replay

    across, quantised = [], []
    for drive in DRIVES:
        folder = SHIPPED.parents[1] / "samples" / "drives" / drive
        ort = _lines(replay(folder, SHIPPED / "stopsign.int8.onnx", "onnxruntime"))
        ov = _lines(replay(folder, SHIPPED / "stopsign.int8.onnx", "openvino"))
        fp32 = read_expected(expected_path(folder, sha256_file(SHIPPED / "stopsign.onnx")))
        across += _matched_score_gaps(ov, ort)
        quantised += _matched_score_gaps(ort, fp32)
    assert len(across) > 100 and len(quantised) > 100
    assert np.percentile(across, 50) < 0.01
    assert np.percentile(across, 90) < np.percentile(quantised, 90)
    assert max(across) < max(quantised)


def _lines(result) -> list[dict]:
    from stopsign.edge.replay.expected import to_lines

    return to_lines(result)


@requires_int8_dot_product
def test_a_signed_qdq_file_is_read_with_unsigned_activations(tmp_path: Path) -> None:
    """The shipped (TensorRT) Q/DQ file: objectness within 0.15 of ONNX Runtime's on real frames
    (read as it is, OpenVINO was off by up to 0.63 here, 0.8 on a photo)."""
    import cv2

    from stopsign.edge.vision.letterbox import letterbox, to_network_input

    capture = cv2.VideoCapture(
        str(SHIPPED.parents[1] / "samples" / "drives" / "night_approach" / "video.mp4")
    )
    frames = [capture.read()[1] for _ in range(40)][9::10]
    batch = np.concatenate([to_network_input(letterbox(f, (416, 416), 114)[0]) for f in frames])
    model = SHIPPED / "stopsign.int8.onnx"
    want = np.concatenate([reference(model, batch[i : i + 1]) for i in range(len(batch))])
    got = load(model, tmp_path).infer(batch)
    assert np.abs(got[..., 4] - want[..., 4]).max() < 0.15


def test_auto_runs_the_int8_ir_beside_the_shipped_onnx(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stopsign.edge.backends import auto
    from stopsign.edge.backends.base import resolve_model

    # An AVX2-only CPU: ONNX Runtime on the FP32 file (faster there, and exact).
    monkeypatch.setattr(auto, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    cls, path = resolve_model("auto", SHIPPED / "stopsign.onnx")
    assert cls.name == "onnxruntime" and path == SHIPPED / "stopsign.onnx"
    # A CPU with an INT8 dot-product instruction: the INT8 IR.
    monkeypatch.setattr(auto, "cpu_flags", lambda: frozenset({"avx2", "avx512_vnni"}))
    cls, path = resolve_model("auto", SHIPPED / "stopsign.onnx")
    assert cls is OpenVinoBackend and path == SHIPPED / "stopsign.openvino.xml"
    backend = load(path, tmp_path)
    assert backend.spec is not None and backend.spec.precision == "int8"
    assert backend.describe()["inference_precision"] == "f32"  # the float layers: as ONNX Runtime
    out = backend.infer(np.zeros((2, 3, *backend.spec.input_size), np.float32))
    assert out.shape[0] == 2 and out.shape[2] == 5 + backend.spec.num_classes


def test_an_ir_without_its_weights_or_spec_is_named(tmp_path: Path) -> None:
    import shutil

    xml = tmp_path / "m.openvino.xml"
    shutil.copy(SHIPPED / "stopsign.openvino.xml", xml)
    with pytest.raises(BackendError, match="its weights file m.openvino.bin is missing"):
        load(xml, tmp_path / "cache")
    (tmp_path / "m.openvino.bin").write_bytes(b"\0" * 64)
    with pytest.raises(BackendError, match="OpenVINO cannot read it as an OpenVINO IR"):
        load(xml, tmp_path / "cache")


def test_edge_calibrate_openvino_makes_an_ir_that_tracks_fp32(tiny_onnx: Path, tmp_path: Path) -> None:
    """NNCF on the tiny model with a folder of images: the IR, its sidecar (matching the ONNX, so
    auto would take it), the spec in the IR, and outputs close to FP32."""
    pytest.importorskip("nncf")
    import cv2

    from stopsign.calibration.cli import main as calibrate
    from stopsign.edge.model.openvino_ir import check_ir_for_onnx, read_ir_spec

    rng = np.random.default_rng(0)
    calib = tmp_path / "calib"
    calib.mkdir()
    for i in range(40):
        cv2.imwrite(str(calib / f"{i}.png"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    model = tmp_path / "m.onnx"
    model.write_bytes(tiny_onnx.read_bytes())
    assert calibrate(["openvino", str(model), "--calib", str(calib)]) == 0
    xml = tmp_path / "m.openvino.xml"
    check_ir_for_onnx(xml, model)
    assert read_ir_spec(xml).precision == "int8"
    backend = load(xml, tmp_path / "cache")
    assert backend.spec is not None and backend.spec.precision == "int8"
    batch = rng.random((1, 3, *backend.spec.input_size), dtype=np.float32)
    got, want = backend.infer(batch), reference(model, batch)
    assert got.shape == want.shape
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.95


def test_edge_calibrate_openvino_int8_gives_the_ir_of_the_qdq_file(tmp_path: Path) -> None:
    """--int8: the IR reads as the unsigned rewrite of the Q/DQ file does, with the FP32 model's
    sidecar, and the same outputs as the backend's own reading of the Q/DQ file."""
    import shutil

    from stopsign.calibration.cli import main as calibrate
    from stopsign.edge.model.openvino_ir import check_ir_for_onnx

    for name in ("stopsign.onnx", "stopsign.int8.onnx"):
        shutil.copy(SHIPPED / name, tmp_path / name)
    assert (
        calibrate(
            ["openvino", str(tmp_path / "stopsign.onnx"), "--int8", str(tmp_path / "stopsign.int8.onnx")]
        )
        == 0
    )
    xml = tmp_path / "stopsign.openvino.xml"
    check_ir_for_onnx(xml, tmp_path / "stopsign.onnx")
    batch = np.random.default_rng(0).random((1, 3, 416, 416), dtype=np.float32)
    from_ir = load(xml, tmp_path / "c1").infer(batch)
    from_qdq = load(tmp_path / "stopsign.int8.onnx", tmp_path / "c2").infer(batch)
    np.testing.assert_allclose(from_ir, from_qdq, atol=1e-4)


def test_edge_calibrate_openvino_refuses_an_int8_or_a_bad_out(tmp_path: Path, capsys) -> None:
    from stopsign.calibration.cli import main as calibrate

    assert calibrate(["openvino", str(SHIPPED / "stopsign.int8.onnx"), "--calib", str(tmp_path)]) == 2
    assert "already INT8" in capsys.readouterr().err
    out = tmp_path / "x.onnx"
    assert (
        calibrate(["openvino", str(SHIPPED / "stopsign.onnx"), "--calib", str(tmp_path), "--out", str(out)])
        == 2
    )
    assert "an OpenVINO IR is an .xml file" in capsys.readouterr().err
    assert (
        calibrate(["openvino", str(SHIPPED / "stopsign.onnx"), "--int8", str(SHIPPED / "stopsign.onnx")]) == 2
    )
    assert "not an INT8 Q/DQ file" in capsys.readouterr().err


def float_inputs(images: np.ndarray) -> np.ndarray:
    """What the host conversion makes of letterboxed uint8 BGR images (RGB, / 255, NCHW)."""
    return np.ascontiguousarray(images[..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255)


@pytest.mark.parametrize(("fixture", "size"), [("tiny_onnx", 1), ("tiny_onnx", 2), ("tiny_dynamic_onnx", 3)])
def test_uint8_images_give_the_output_of_their_float_input(
    fixture: str, size: int, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    backend = load(request.getfixturevalue(fixture), tmp_path)
    assert backend.image_input
    images = np.random.default_rng(size).integers(0, 256, (size, 160, 160, 3), dtype=np.uint8)
    np.testing.assert_allclose(
        backend.infer_images(images), backend.infer(float_inputs(images)), rtol=1e-5, atol=1e-4
    )


@pytest.mark.parametrize("model", ["stopsign.onnx", "stopsign.int8.onnx", "stopsign.openvino.xml"])
def test_shipped_models_give_the_same_rows_from_images(model: str, tmp_path: Path) -> None:
    from stopsign.edge.replay.drive import open_drive, read_frames
    from stopsign.edge.vision.preprocess import FrameBatcher

    backend = load(SHIPPED / model, tmp_path)
    assert backend.spec is not None
    floats, images = FrameBatcher(backend.spec), FrameBatcher(backend.spec, images=True)
    for image in read_frames(open_drive(SHIPPED.parents[1] / "samples" / "drives" / "day_approach"))[::20]:
        ours, theirs = backend.infer_images(images(image)), backend.infer(floats(image))
        np.testing.assert_allclose(ours[..., 4:], theirs[..., 4:], atol=1e-5)  # INT8: identical
        np.testing.assert_allclose(ours[..., :4], theirs[..., :4], atol=1e-3)


def test_the_bound_image_buffer_is_read_afresh_each_call(tmp_path: Path) -> None:
    from stopsign.edge.replay.drive import open_drive, read_frames
    from stopsign.edge.vision.preprocess import FrameBatcher

    backend = load(SHIPPED / "stopsign.openvino.xml", tmp_path)
    assert backend.spec is not None
    drives = SHIPPED.parents[1] / "samples" / "drives"
    day, night = (read_frames(open_drive(drives / name))[10] for name in ("day_approach", "night_approach"))
    batcher = FrameBatcher(backend.spec, images=True)
    buffer = batcher(day)
    first = backend.infer_images(buffer)
    assert batcher(night) is buffer  # the next frame, written into the same bound buffer
    second = backend.infer_images(buffer)
    assert np.abs(first[..., 4] - second[..., 4]).max() > 0.1
    np.testing.assert_array_equal(second, backend.infer(float_inputs(buffer)))
    other = np.repeat(buffer, 2, axis=2)[:, :, ::2]  # another array (night), not contiguous
    assert not other.flags.c_contiguous
    batcher(day)
    np.testing.assert_array_equal(backend.infer_images(other), second)
    np.testing.assert_array_equal(backend.infer_images(buffer), first)  # rebound to the batcher's


@pytest.mark.parametrize(
    "images",
    [
        np.zeros((1, 160, 160, 3), np.float32),
        np.zeros((1, 3, 160, 160), np.uint8),
        np.zeros((0, 160, 160, 3), np.uint8),
    ],
)
def test_infer_images_checks_the_dtype_and_shape(images: np.ndarray, tiny_onnx: Path, tmp_path: Path) -> None:
    with pytest.raises(BackendError, match=r"model takes uint8 \(B, 160, 160, 3\)"):
        load(tiny_onnx, tmp_path).infer_images(images)


@requires_gstreamer
@pytest.mark.parametrize("tiles", ["none", "0,0,640,360"])
def test_edge_detect_on_openvino_gives_onnxruntimes_detections(tiles: str, tmp_path: Path) -> None:
    """The detection loop feeds OpenVINO uint8 images (conversion in the model) and ONNX Runtime
    float inputs: on a real drive video the FP32 model gives the same boxes either way, with the
    whole frame alone and with a tile batched beside it."""
    import json

    from stopsign.edge.cli.detect import main

    video = SHIPPED.parents[1] / "samples" / "drives" / "day_approach" / "video.mp4"
    found = {}
    for backend in ("openvino", "onnxruntime"):
        out = tmp_path / f"{backend}.jsonl"
        code = main(
            ["--source", f"file://{video}", "--model", str(SHIPPED / "stopsign.onnx"), "--backend", backend,
             "--conf", "0.1", "--max-frames", "40", "--tiles", tiles, "--detections", str(out),
             "--events", str(tmp_path / f"{backend}.events.jsonl"), "--threads", "2"]
        )  # fmt: skip
        assert code == 0, backend
        found[backend] = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    assert len(found["openvino"]) == len(found["onnxruntime"]) == 40
    boxes = 0
    for ours, theirs in zip(found["openvino"], found["onnxruntime"]):
        assert len(ours["detections"]) == len(theirs["detections"]), ours["frame"]
        for a, b in zip(ours["detections"], theirs["detections"]):
            assert a["score"] == pytest.approx(b["score"], abs=1e-3)
            np.testing.assert_allclose(a["xyxy"], b["xyxy"], atol=0.5)
            boxes += 1
    assert boxes >= 20  # the sign is found on most frames


def test_edge_bench_times_openvino_on_the_input_the_loop_gives_it() -> None:
    from stopsign.edge.cli.benchmark import bench_model

    run = bench_model(SHIPPED / "stopsign.onnx", "openvino", 5, warmup=1, batch=2, threads=2)
    assert run.to_dict()["model_input"] == "uint8" and run.batch == 2 and len(run.latencies_ms) == 5


def test_qdq_drift_bench_finds_openvino_off_the_qdq_graph_by_rounding(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """bench/qdq_runtime_drift.py on a few frames: ONNX Runtime is the Q/DQ reference, OpenVINO is
    off it, and the input quantisation (the first cut) is exact on both."""
    from tests.bench_scripts import load_bench_script

    script = load_bench_script("qdq_runtime_drift")
    assert script.main(["--every", "40", "--layers", "48"]) == 0
    out = capsys.readouterr().out
    rows = {
        line.split(" | ")[0].strip("| "): line.split(" | ")[1:]
        for line in out.splitlines()
        if line.startswith("| ")
    }
    assert float(rows["onnxruntime INT8 (the project's backend)"][-1].strip(" |")) < 1e-3
    assert float(rows["openvino INT8 (the project's backend)"][-1].strip(" |")) > 0
    assert rows["0"][-1].strip(" |") == "0"  # `images`: the input's quantisation is the same
    assert "48" in rows  # the last cut, the head's output


# --backend-option (tests/edge/backends/test_backend_options.py has the parsing and other backends)


def test_openvino_compiles_with_the_given_property() -> None:
    backend = OpenVinoBackend()
    options = BackendOptions(threads=1, cache_dir=None, properties=(("ENABLE_CPU_PINNING", "NO"),))
    spec = backend.load(SHIPPED / "stopsign.onnx", None, options)
    backend.infer_images(np.zeros((1, *spec.input_size, 3), np.uint8))
    compiled = next(iter(backend._requests.values())).get_compiled_model()
    assert compiled.get_property("ENABLE_CPU_PINNING") is False  # OpenVINO's default here is True
    assert backend.describe()["properties"]["ENABLE_CPU_PINNING"] == "NO"
    backend.close()


def test_openvino_refuses_an_unknown_property_at_load() -> None:
    with pytest.raises(BackendError, match="no settable property 'ENABLE_WARP_DRIVE'"):
        OpenVinoBackend().load(
            SHIPPED / "stopsign.onnx", None, BackendOptions(properties=(("ENABLE_WARP_DRIVE", "YES"),))
        )
