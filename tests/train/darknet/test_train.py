"""Training a Darknet-cfg model with the project's trainer, and export-darknet back to files
that OpenCV's Darknet reader runs with the same rows as our model."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from stopsign.edge.vision.letterbox import resize_for_spec, to_network_input
from stopsign.train.checkpoint import load_checkpoint
from stopsign.train.cli import main
from stopsign.train.config import Hyp
from stopsign.train.darknet.model import CFGS_DIR, DarknetModel
from stopsign.train.dataset import ImageStore, load_data_spec
from stopsign.train.loader import YoloDataset, collate
from stopsign.train.loss import YoloLoss
from stopsign.train.optim import build_optimizer

IMG = 64


def assert_loss_falls(
    model: torch.nn.Module, loss_fn: YoloLoss, images: torch.Tensor, targets: torch.Tensor
) -> None:
    """60 SGD steps on one fixed batch: finite losses, the last 5 below 0.8x the first 5."""
    optimizer = build_optimizer(model, "SGD", Hyp(), 5e-4)
    x = images.float() / 255
    losses = []
    for _ in range(60):
        loss, _ = loss_fn(model(x), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert all(np.isfinite(losses))
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5, losses


def test_loss_goes_down_on_a_fixed_batch(tiny_data: Path) -> None:
    spec = load_data_spec(tiny_data, check=False)
    dataset = YoloDataset(spec.train, ImageStore(spec.train.images, IMG), IMG, Hyp(), augment=False)
    images, targets, _ = collate([dataset[i] for i in range(2)])
    torch.manual_seed(0)
    model = DarknetModel("yolov4-tiny", nc=1).train()
    loss_fn = YoloLoss.for_model(model, Hyp(), IMG)
    assert loss_fn.balance == (1.0, 4.0)  # levels are strides (32, 16): the finer one weighs more
    assert not loss_fn.neighbours  # scale_x_y 1.05 cannot reach a neighbouring cell
    assert_loss_falls(model, loss_fn, images, targets)


def test_box_decode_of_the_loss_is_the_heads(tiny_data: Path) -> None:
    """The loss scores boxes with the decode the exported graph uses (Darknet's, not YOLOv5's)."""
    model = DarknetModel("yolov4-tiny", nc=1).eval()
    head = model.detect
    logits = torch.tensor([[0.3, -0.2, 0.5, -1.0]])
    anchor = head.anchors[1][:1]  # grid units
    xy, wh = YoloLoss.for_model(model, Hyp(), IMG).box_decoder(logits, anchor, 1)
    maps = torch.zeros(1, 3, 4, 4, 6)
    maps[0, 0, 2, 1, :4] = logits[0]
    decoded = head._decode(maps, 1).view(3, 4, 4, 6)[0, 2, 1]
    stride = float(head.stride[1])
    torch.testing.assert_close(decoded[:2], (xy[0] + torch.tensor([1.0, 2.0])) * stride)
    torch.testing.assert_close(decoded[2:4], wh[0] * stride)


def scaled_cfg(folder: Path) -> Path:
    """yolov4-tiny with the scaled-YOLOv4 head: logistic head convolutions, new_coords=1,
    scale_x_y=2 (so targets also go to neighbouring cells)."""
    text = (CFGS_DIR / "yolov4-tiny.cfg").read_text().replace("activation=linear", "activation=logistic")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "yolov4-tiny.cfg"
    path.write_text(text.replace("scale_x_y=1.05", "scale_x_y=2.0\nnew_coords=1"))
    return path


def test_new_coords_trains_with_the_heads_decode(tiny_data: Path, tmp_path: Path) -> None:
    """A new_coords=1 head: the loss gets logits of the logistic outputs and decodes boxes as the
    exported graph does ((2p)^2 anchors), targets reach neighbouring cells, and the loss falls."""
    model = DarknetModel(scaled_cfg(tmp_path), nc=1).eval()
    head = model.detect
    assert all(head.new_coords) and head.reaches_neighbours
    probabilities = torch.tensor([[0.7, 0.2, 0.6, 0.3]])
    anchor = head.anchors[1][:1]
    loss_fn = YoloLoss.for_model(model, Hyp(), IMG)
    assert loss_fn.neighbours
    xy, wh = loss_fn.box_decoder(torch.logit(probabilities), anchor, 1)
    maps = torch.full((1, 3, 4, 4, 6), 0.5)
    maps[0, 0, 2, 1, :4] = probabilities[0]
    decoded = head._decode(maps, 1).view(3, 4, 4, 6)[0, 2, 1]
    stride = float(head.stride[1])
    torch.testing.assert_close(decoded[:2], (xy[0] + torch.tensor([1.0, 2.0])) * stride)
    torch.testing.assert_close(decoded[2:4], wh[0] * stride)
    torch.testing.assert_close(wh[0], (2 * probabilities[0, 2:4]) ** 2 * anchor[0])

    spec = load_data_spec(tiny_data, check=False)
    dataset = YoloDataset(spec.train, ImageStore(spec.train.images, IMG), IMG, Hyp(), augment=False)
    images, targets, _ = collate([dataset[i] for i in range(2)])
    torch.manual_seed(0)
    model.train()
    outputs = model(images.float() / 255)
    probs = torch.sigmoid(outputs[0])
    assert (
        float(probs.min()) >= 1e-6 - 1e-9 and float(probs.max()) <= 1 - 1e-6 + 1e-9
    )  # logits of probabilities
    assert_loss_falls(model, loss_fn, images, targets)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("head", ["yolov4-tiny", "scaled"])
def test_trained_yolov4_tiny_round_trips_through_export_darknet(head: str, draw_data, tmp_path: Path) -> None:
    data = draw_data(tmp_path / "data", n_train=8, n_val=4, n_confusers=1)
    cfg_arg = "yolov4-tiny.cfg" if head == "yolov4-tiny" else str(scaled_cfg(tmp_path / "cfg"))
    argv = ["train", "--cfg", cfg_arg, "--weights", "", "--img", str(IMG), "--batch", "4",
            "--epochs", "1", "--workers", "0", "--device", "cpu", "--data", str(data),
            "--project", str(tmp_path / "runs"), "--name", "dn", "--seed", "1"]  # fmt: skip
    assert main(argv) == 0
    best = tmp_path / "runs" / "dn" / "weights" / "best"
    checkpoint = load_checkpoint(best)
    assert isinstance(checkpoint.model, DarknetModel) and (best / "model.cfg").is_file()
    assert checkpoint.spec.architecture == "yolov4-tiny" and checkpoint.spec.resize == "letterbox"
    out = tmp_path / "export" / "trained.weights"
    out.parent.mkdir()
    assert main(["export-darknet", str(best), "--out", str(out)]) == 0
    cfg = out.with_suffix(".cfg")
    text = cfg.read_text()
    assert f"width={IMG}" in text and f"height={IMG}" in text and "letter_box=1" in text
    assert ("new_coords=1" in text) == (head == "scaled")
    assert out.with_suffix(".names").read_text() == "stop_sign\n"

    spec = load_data_spec(data, check=False)
    image = cv2.imread(str(spec.val.images[0]))
    boxed, _ = resize_for_spec(cv2.resize(image, (96, 64)), checkpoint.spec)  # a letterboxed frame
    x = to_network_input(boxed, checkpoint.spec.scale)
    model = checkpoint.model.eval()
    model.detect.export = True
    with torch.no_grad():
        ours = model(torch.from_numpy(x)).numpy()[0]
    # Re-imported, it computes the same; and the YOLOv5 export would refuse a non-Darknet model.
    assert main(["import-darknet", str(cfg), str(out), "--out", str(tmp_path / "again"), "--names",
                 str(out.with_suffix(".names"))]) == 0  # fmt: skip
    again = load_checkpoint(tmp_path / "again")
    assert again.spec.resize == "letterbox" and again.spec.input_size == (IMG, IMG)
    again.model.eval().detect.export = True
    with torch.no_grad():
        np.testing.assert_allclose(again.model(torch.from_numpy(x)).numpy()[0], ours, rtol=1e-5, atol=1e-5)

    if not hasattr(getattr(cv2, "dnn", None), "readNetFromDarknet"):
        pytest.skip(f"OpenCV {cv2.__version__} has no cv2.dnn.readNetFromDarknet (needs OpenCV 4.x)")
    net = cv2.dnn.readNetFromDarknet(str(cfg), str(out))
    net.setInput(x)
    theirs = net.forward(net.getUnconnectedOutLayersNames())
    start = 0
    for level, stride in enumerate(checkpoint.spec.strides):
        n = IMG // stride
        mine = ours[start : start + 3 * n * n].reshape(3, n, n, -1).transpose(1, 2, 0, 3).reshape(-1, 6)
        start += 3 * n * n
        np.testing.assert_allclose(mine[:, :4], theirs[level][:, :4] * IMG, rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(mine[:, 4], theirs[level][:, 4], rtol=1e-3, atol=1e-6)


def test_export_darknet_refuses_a_yolov5_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from stopsign.train.checkpoint import save_checkpoint, spec_for_model
    from stopsign.train.model import build_model

    model = build_model("yolov5n", 1)
    save_checkpoint(tmp_path / "v5", model, spec_for_model(model, ["stop_sign"], 64))
    assert main(["export-darknet", str(tmp_path / "v5"), "--out", str(tmp_path / "x.weights")]) == 2
    assert "export-darknet writes models built from a Darknet .cfg" in capsys.readouterr().out
