"""Batch > 1 (the whole frame and its tiles) through every backend present: the same rows as one by one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stopsign.edge.backends.base import BackendError, BackendOptions
from stopsign.edge.backends.onnxruntime import OnnxRuntimeBackend
from stopsign.edge.backends.tensorrt import stack_rows


def one_by_one(backend: object, batch: np.ndarray) -> np.ndarray:
    return np.concatenate([backend.infer(batch[i : i + 1]) for i in range(len(batch))])  # type: ignore[attr-defined]


@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_onnxruntime_fixed_batch_file_runs_image_by_image(tiny_onnx: Path, size: int) -> None:
    backend = OnnxRuntimeBackend()
    backend.load(tiny_onnx, None, BackendOptions(device="cpu"))
    assert backend.fixed_batch == 1
    batch = np.random.default_rng(size).random((size, 3, 160, 160), dtype=np.float32)
    out = backend.infer(batch)
    assert out.shape[0] == size
    np.testing.assert_array_equal(out, one_by_one(backend, batch))


@pytest.mark.parametrize("size", [1, 3])
def test_onnxruntime_dynamic_batch_file_runs_the_batch_at_once(tiny_dynamic_onnx: Path, size: int) -> None:
    backend = OnnxRuntimeBackend()
    backend.load(tiny_dynamic_onnx, None, BackendOptions(device="cpu"))
    assert backend.fixed_batch is None
    assert backend.describe()["batch"] == "dynamic"
    batch = np.random.default_rng(0).random((size, 3, 160, 160), dtype=np.float32)
    np.testing.assert_allclose(backend.infer(batch), one_by_one(backend, batch), rtol=1e-4, atol=1e-3)


def test_torch_backend_takes_any_batch_on_the_cpu(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from stopsign.edge.backends.torch import TorchBackend
    from stopsign.train.checkpoint import save_checkpoint, spec_for_model
    from stopsign.train.model import build_model

    torch.manual_seed(0)
    model = build_model("yolov5n", 1).eval()
    ckpt = save_checkpoint(tmp_path / "best", model, spec_for_model(model, ["stop_sign"], 160))
    backend = TorchBackend()
    backend.load(ckpt, None, BackendOptions(device="cpu"))
    batch = np.random.default_rng(1).random((3, 3, 160, 160), dtype=np.float32)
    together = backend.infer(batch)
    assert together.shape[0] == 3
    np.testing.assert_allclose(together, one_by_one(backend, batch), rtol=1e-4, atol=1e-3)
    again = backend.infer(batch[::-1].copy())  # the batch path's buffers are reused
    np.testing.assert_allclose(again, together[::-1], rtol=1e-4, atol=1e-3)
    with pytest.raises(BackendError, match="input shape"):
        backend.infer(np.zeros((2, 3, 128, 128), np.float32))


@pytest.mark.parametrize(
    ("counts", "shape"),
    [([0], (1, 0, 6)), ([2, 0], (2, 2, 6)), ([1, 3, 2], (3, 3, 6))],
)
def test_tensorrt_nms_rows_of_a_batch_are_padded_with_zero_score_rows(
    counts: list[int], shape: tuple[int, ...]
) -> None:
    per_image = [np.full((k, 6), 0.5, np.float32) for k in counts]
    stacked = stack_rows(per_image, 6)
    assert stacked.shape == shape
    for i, k in enumerate(counts):
        np.testing.assert_array_equal(stacked[i, :k], per_image[i])
        assert not stacked[i, k:].any()  # score 0: below any confidence floor
