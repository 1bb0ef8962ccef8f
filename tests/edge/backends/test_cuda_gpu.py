"""On a CUDA GPU: the cuda-python memory adapter (copies, graph capture) and the torch backend on CUDA.

Skipped with a reason where no CUDA GPU (or no cuda-python) is present, which is every CI machine.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from stopsign.edge.backends.base import BackendOptions

torch = pytest.importorskip("torch")
CUDA = torch.cuda.is_available()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")]


@pytest.fixture
def cuda_python():
    if importlib.util.find_spec("cuda") is None:
        pytest.skip("cuda-python is not installed (pip install cuda-python)")
    from stopsign.edge.backends.cuda_memory import open_cuda

    cuda = open_cuda("cuda-python")
    yield cuda
    cuda.free()


@pytest.mark.parametrize(
    ("shape", "dtype"), [((1, 3, 8, 8), np.float32), ((5,), np.int32), ((2, 4), np.float16)]
)
def test_cuda_python_round_trip(cuda_python, shape: tuple[int, ...], dtype: type) -> None:
    source, back = cuda_python.pinned(shape, np.dtype(dtype)), cuda_python.pinned(shape, np.dtype(dtype))
    source[...] = np.arange(np.prod(shape)).reshape(shape)
    back[...] = 0
    device = cuda_python.device(source.nbytes)
    cuda_python.to_device(device, source)
    cuda_python.to_host(back, device)
    cuda_python.synchronize()
    np.testing.assert_array_equal(back, source)


def test_cuda_python_graph_replays_the_copies_with_new_data(cuda_python) -> None:
    source, back = (
        cuda_python.pinned((256,), np.dtype(np.float32)),
        cuda_python.pinned((256,), np.dtype(np.float32)),
    )
    device = cuda_python.device(source.nbytes)
    cuda_python.begin_capture()
    cuda_python.to_device(device, source)
    cuda_python.to_host(back, device)
    graph = cuda_python.end_capture()
    for value in (1.0, 7.5):
        source[...] = value  # the graph reads the pinned buffer at launch time
        cuda_python.launch(graph)
        cuda_python.synchronize()
        assert (back == value).all()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from stopsign.train.checkpoint import save_checkpoint, spec_for_model
    from stopsign.train.model import build_model

    torch.manual_seed(0)
    model = build_model("yolov5n", 1).eval()
    with torch.no_grad():
        for conv in model.detect.m:
            conv.weight.normal_(0, 0.05)
    return save_checkpoint(
        tmp_path_factory.mktemp("ckpt") / "best", model, spec_for_model(model, ["stop_sign"], 160)
    )


@pytest.mark.parametrize(
    ("half", "graph", "tolerance"), [(False, False, 1e-3), (False, True, 1e-3), (True, True, 0.5)]
)
def test_torch_cuda_matches_cpu(checkpoint: Path, half: bool, graph: bool, tolerance: float) -> None:
    from stopsign.edge.backends.torch import TorchBackend

    x = np.random.default_rng(0).random((1, 3, 160, 160), dtype=np.float32)
    cpu = TorchBackend()
    cpu.load(checkpoint, None, BackendOptions(device="cpu"))
    gpu = TorchBackend(cuda_graph=graph, half=half)
    gpu.load(checkpoint, None, BackendOptions(device="cuda"))
    assert gpu.describe()["cuda_graph"] is graph and gpu.describe()["precision"] == (
        "fp16" if half else "fp32"
    )
    expected, got = cpu.infer(x), gpu.infer(x)
    assert np.abs(got[..., :4] - expected[..., :4]).max() < tolerance  # pixels
    assert np.abs(got[..., 4:] - expected[..., 4:]).max() < tolerance / 50
    image = np.random.default_rng(1).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    for _ in range(2):  # the second call replays the captured frame graph
        dets_cpu, dets_gpu = cpu.detect(image, 0.02), gpu.detect(image, 0.02)
    assert len(dets_gpu) == len(dets_cpu)
