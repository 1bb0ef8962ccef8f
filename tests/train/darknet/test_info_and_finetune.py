"""edge-train info on a Darknet cfg, and fine-tuning an imported Darknet checkpoint on other classes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from stopsign.train.checkpoint import load_checkpoint
from stopsign.train.cli import main
from stopsign.train.weights import build_initial_model
from tests.train.darknet.helpers import write_darknet_files


def test_info_lists_darknet_layers(capsys: pytest.CaptureFixture) -> None:
    assert main(["info", "--cfg", "yolov3-tiny", "--nc", "1", "--img", "64", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert len(info["layers"]) == 24 and info["strides"] == [32, 16]
    assert info["layers"][20]["from"] == [19, 8] and info["layers"][0]["params"] == 16 * 27 + 2 * 16
    assert info["params"] == sum(layer["params"] for layer in info["layers"])
    assert info["gflops"] > 0


def test_imported_80_class_model_fine_tunes_on_one_class(tmp_path: Path) -> None:
    cfg, weights, source = write_darknet_files(tmp_path / "dn", "yolov3-tiny", nc=80, size=64)
    assert main(["import-darknet", str(cfg), str(weights), "--out", str(tmp_path / "coco")]) == 0
    messages: list[str] = []
    model = build_initial_model("", str(tmp_path / "coco"), nc=1, log=messages.append)
    assert model.nc == 1 and model.name == "yolov3-tiny"
    assert "the detection head is re-initialised" in "\n".join(messages)
    # Everything but the two convolutions feeding the yolo layers is transferred.
    state = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    differ = sorted(k for k, v in state.items() if not torch.equal(v, model.state_dict()[k]))
    assert differ == [f"layers.{i}.conv.{p}" for i in (15, 22) for p in ("bias", "weight")]
    assert load_checkpoint(tmp_path / "coco").model.nc == 80
