"""``edge-detect`` with a frame-path backend (letterbox + model + NMS on the model's device).

On CUDA the torch backend takes this path; here it is switched on for the CPU, where it must give
what the host path (Preprocessor + infer + decode_yolov5) gives on the same frames.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from stopsign.edge.backends.base import Backend, BackendOptions
from stopsign.edge.backends.torch import TorchBackend
from stopsign.edge.cli.detect import run_detect
from stopsign.edge.cli.detect_config import DetectConfig
from stopsign.edge.model.spec import ModelSpec
from stopsign.train.checkpoint import save_checkpoint, spec_for_model
from stopsign.train.model import build_model
from tests.edge.helpers import requires_gstreamer

pytestmark = [pytest.mark.gstreamer, requires_gstreamer]


class FramePathTorch(TorchBackend):
    """The torch backend on the CPU with its CUDA behaviour: whole frames go to detect()."""

    def __init__(self, fail_calls: frozenset[int] = frozenset()) -> None:
        super().__init__()
        self.fail_calls, self.calls = fail_calls, 0

    def load(self, model_path, spec, options):  # type: ignore[no-untyped-def]
        loaded = super().load(model_path, spec, options)
        self.frame_path = True
        return loaded

    def detect(self, image, conf=0.25, iou=None):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.calls in self.fail_calls:
            return super().detect(image[..., :2], conf, iou)  # the backend's own error
        return super().detect(image, conf, iou)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = build_model("yolov5n", 1).eval()
    with torch.no_grad():  # an untrained head scores every cell alike: vary it so boxes differ
        for conv in model.detect.m:
            conv.weight.normal_(0, 0.05)
    return save_checkpoint(
        tmp_path_factory.mktemp("ckpt") / "best", model, spec_for_model(model, ["stop_sign"], 160)
    )


def run(
    checkpoint: Path, tmp_path: Path, name: str, make: type[Backend] | object, made: list | None = None
) -> tuple[list[dict], list[dict]]:
    config = DetectConfig(
        # 160x120 frames into a 160x160 input: the letterbox only pads, so both paths see the same pixels.
        source="test://?pattern=ball&size=160x120&live=0&num-buffers=8",
        model=str(checkpoint),
        backend="torch",
        conf=0.015,  # an untrained head: its top ~2% of boxes
        events=str(tmp_path / f"{name}.events.jsonl"),
        detections=str(tmp_path / f"{name}.dets.jsonl"),
        health=False,
    )

    def factory(cfg: DetectConfig) -> tuple[Backend, ModelSpec]:
        backend = make()  # type: ignore[operator]
        if made is not None:
            made.append(backend)
        return backend, backend.load(cfg.model, None, BackendOptions(device="cpu"))

    assert run_detect(config, threading.Event(), factory) == 0
    read = lambda p: [json.loads(line) for line in p.read_text().splitlines() if line.strip()]  # noqa: E731
    return read(tmp_path / f"{name}.dets.jsonl"), read(tmp_path / f"{name}.events.jsonl")


def test_frame_path_gives_the_host_paths_detections(checkpoint: Path, tmp_path: Path) -> None:
    host, _ = run(checkpoint, tmp_path, "host", TorchBackend)
    made: list[FramePathTorch] = []
    device, _ = run(checkpoint, tmp_path, "device", FramePathTorch, made)
    assert made[0].calls == 8  # every frame went through detect(), none through the host path
    assert len(host) == len(device) == 8
    assert sum(len(line["detections"]) for line in host) > 0
    for a, b in zip(host, device):
        assert len(a["detections"]) == len(b["detections"]), a["frame"]
        for da, db in zip(
            sorted(a["detections"], key=lambda d: -d["score"]),
            sorted(b["detections"], key=lambda d: -d["score"]),
        ):
            np.testing.assert_allclose(da["xyxy"], db["xyxy"], atol=0.05)
            assert abs(da["score"] - db["score"]) < 1e-3


def test_frame_path_failures_are_counted_and_skipped(checkpoint: Path, tmp_path: Path) -> None:
    dets, events = run(checkpoint, tmp_path, "faulty", lambda: FramePathTorch(frozenset({2, 3})))
    errors = [e for e in events if e["event"] == "backend_error"]
    assert [e["consecutive"] for e in errors] == [1, 2] and "HxWx3 uint8" in errors[0]["error"]
    assert len(dets) == 8 and sum(d.get("skipped") is not None for d in dets) == 2
    assert events[-1]["event"] == "stopped" and events[-1]["processed"] == 6
