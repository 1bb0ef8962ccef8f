"""edge-train import-darknet: cfg + weights -> checkpoint folder that loads like a YOLOv5 one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from stopsign.train.checkpoint import load_checkpoint
from stopsign.train.cli import main
from stopsign.train.darknet.model import DarknetModel
from tests.train.darknet.helpers import write_darknet_files


def test_import_writes_a_checkpoint_that_computes_the_same(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    cfg, weights, model = write_darknet_files(tmp_path / "dn", "yolov4-tiny", nc=2, size=96, seed=1)
    names = tmp_path / "obj.names"
    names.write_text("stop_sign\nyield\n")
    out = tmp_path / "ckpt"
    assert main(["import-darknet", str(cfg), str(weights), "--out", str(out), "--names", str(names)]) == 0
    assert "imported" in capsys.readouterr().out
    assert (out / "model.cfg").read_text() == cfg.read_text()
    checkpoint = load_checkpoint(out)
    spec = checkpoint.spec
    assert isinstance(checkpoint.model, DarknetModel)
    assert spec.class_names == ["stop_sign", "yield"]
    assert spec.input_size == (96, 96) and spec.resize == "stretch"
    assert spec.strides == (32, 16)
    assert spec.anchors == ((81, 82, 135, 169, 344, 319), (23, 27, 37, 58, 81, 82))
    assert spec.training_data["darknet_seen"] == 12345
    assert spec.training_data["darknet_version"] == "0.2.5"
    x = torch.rand(2, 3, 96, 96)
    model.detect.export = checkpoint.model.eval().detect.export = True
    with torch.no_grad():
        assert torch.equal(model(x), checkpoint.model(x))
        fused = checkpoint.model.fuse()(x)
    torch.testing.assert_close(fused, model(x), rtol=1e-4, atol=1e-4)


def test_letter_box_cfg_gives_a_letterbox_spec(tmp_path: Path) -> None:
    cfg, weights, _ = write_darknet_files(tmp_path / "dn", "yolov3-tiny", nc=1, size=64)
    cfg.write_text(cfg.read_text().replace("channels=3", "channels=3\nletter_box=1"))
    assert main(["import-darknet", str(cfg), str(weights), "--out", str(tmp_path / "c")]) == 0
    spec = json.loads((tmp_path / "c" / "spec.json").read_text())
    assert "resize" not in spec and spec["class_names"] == ["class0"]  # letterbox: the default
    assert load_checkpoint(tmp_path / "c").spec.resize == "letterbox"


def test_truncated_weights_fail_clearly(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg, weights, _ = write_darknet_files(tmp_path / "dn", "yolov3-tiny", nc=1, size=64)
    size = weights.stat().st_size
    weights.write_bytes(weights.read_bytes()[: size // 2])
    assert main(["import-darknet", str(cfg), str(weights), "--out", str(tmp_path / "c")]) == 2
    message = capsys.readouterr().out
    assert f"{size // 2} bytes" in message and f"needs {size} bytes" in message and "truncated" in message
    assert not (tmp_path / "c").exists()


def test_unknown_layer_fails_clearly(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg, weights, _ = write_darknet_files(tmp_path / "dn", "yolov3-tiny", nc=1, size=64)
    lines = cfg.read_text().splitlines()
    at = lines.index("[upsample]")
    lines[at] = "[reorg]"
    cfg.write_text("\n".join(lines) + "\n")
    assert main(["import-darknet", str(cfg), str(weights), "--out", str(tmp_path / "c")]) == 2
    assert f"yolov3-tiny.cfg:{at + 1}: [reorg] (layer 19): unsupported layer type" in capsys.readouterr().out


def test_names_must_match_classes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg, weights, _ = write_darknet_files(tmp_path / "dn", "yolov3-tiny", nc=2, size=64)
    names = tmp_path / "obj.names"
    names.write_text("stop_sign\n")
    assert (
        main(["import-darknet", str(cfg), str(weights), "--out", str(tmp_path / "c"), "--names", str(names)])
        == 2
    )
    assert "1 names but the cfg has classes=2" in capsys.readouterr().out
