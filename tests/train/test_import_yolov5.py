"""Importing official pickled YOLOv5 checkpoints without running the pickle."""

from __future__ import annotations

import copy
import os
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from stopsign.train.checkpoint import load_checkpoint
from stopsign.train.import_yolov5 import import_yolov5
from stopsign.train.model import build_model
from stopsign.train.model.yolo import YoloModel
from stopsign.train.yolov5_pickle import UnsafeCheckpointError, read_yolov5_checkpoint


@pytest.fixture
def yolov5_namespace() -> Iterator[dict[str, types.ModuleType]]:
    """Importable ``models.yolo`` / ``models.common`` modules, as a YOLOv5 checkout would provide."""
    modules = {name: types.ModuleType(name) for name in ("models", "models.yolo", "models.common")}
    saved = {name: sys.modules.get(name) for name in modules}
    sys.modules.update(modules)
    yield modules
    for name, previous in saved.items():
        if previous is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = previous


def as_yolov5_classes(model: YoloModel, modules: dict[str, types.ModuleType]) -> YoloModel:
    """Re-class our modules so they pickle exactly as YOLOv5's (models.common.C3, models.yolo.Detect...)."""
    renamed: dict[type, type] = {}
    for module in model.modules():
        cls = type(module)
        if not cls.__module__.startswith("stopsign."):
            continue  # torch.nn layers keep their own names, as in a real checkpoint
        if cls not in renamed:
            name = "DetectionModel" if cls is YoloModel else cls.__name__
            home = "models.yolo" if name in ("DetectionModel", "Detect") else "models.common"
            renamed[cls] = type(name, (cls,), {"__module__": home, "__qualname__": name})
            setattr(modules[home], name, renamed[cls])
        module.__class__ = renamed[cls]
    return model


def save_official_style(path: Path, model: YoloModel, modules: dict[str, types.ModuleType]) -> YoloModel:
    """Save the way YOLOv5 v7.0 train.py does: half-precision modules, optimizer, numpy scalars."""
    model.names = {0: "stop_sign"}  # v7.0 keeps names as a dict
    model.yaml["ch"] = 3
    model.hyp = {"lr0": 0.01, "box": 0.05}
    model.detect.grid = [torch.empty(0)] * 3
    saved = as_yolov5_classes(copy.deepcopy(model), modules).half()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.937)
    torch.save(
        {
            "epoch": 49,
            "best_fitness": np.float64(0.61),
            "model": saved,
            "ema": copy.deepcopy(saved),
            "updates": np.int64(1234),
            "optimizer": optimizer.state_dict(),
            "opt": {"imgsz": 416, "save_dir": Path("runs/train/exp")},
            "git": {"remote": "", "branch": "master"},
            "date": "2026-11-26T00:00:00",
        },
        path,
    )
    return saved


@pytest.mark.parametrize("cfg", ["yolov5n", "custom_yolov5s"])
def test_official_style_checkpoint_round_trips(tmp_path: Path, yolov5_namespace, cfg: str) -> None:
    model = build_model(cfg, 1).eval()
    saved = save_official_style(tmp_path / "best.pt", model, yolov5_namespace)
    folder = import_yolov5(tmp_path / "best.pt", tmp_path / "imported")
    imported = load_checkpoint(folder)
    assert imported.spec.class_names == ["stop_sign"]
    assert imported.spec.input_size == (416, 416)
    assert imported.spec.training_data["yolov5_epoch"] == 49
    reference = copy.deepcopy(saved).float().eval()
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        assert torch.equal(imported.model.eval()(x)[0], reference(x)[0])


class _RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))

    def __init__(self, marker: Path) -> None:
        self.marker = marker


def test_malicious_pickle_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    torch.save({"model": _RunsCode(marker), "epoch": 1}, tmp_path / "evil.pt")
    with pytest.raises(UnsafeCheckpointError, match=r"refusing to load '(posix|os|nt)\.system'"):
        import_yolov5(tmp_path / "evil.pt", tmp_path / "out")
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("payload", "message"),
    [(b"not a zip", "not a PyTorch zip checkpoint"), (None, "no such file")],
)
def test_unreadable_files_are_named(tmp_path: Path, payload: bytes | None, message: str) -> None:
    path = tmp_path / "x.pt"
    if payload is not None:
        path.write_bytes(payload)
    with pytest.raises(UnsafeCheckpointError, match=message):
        read_yolov5_checkpoint(path)


def test_checkpoint_without_model_is_explained(tmp_path: Path) -> None:
    torch.save({"epoch": 3, "weights": torch.zeros(2)}, tmp_path / "x.pt")
    with pytest.raises(Exception, match="no 'model' or 'ema' module"):
        import_yolov5(tmp_path / "x.pt", tmp_path / "out")
