from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stopsign.train.checkpoint import (
    CheckpointError,
    TrainState,
    load_checkpoint,
    optimizer_from_state,
    optimizer_to_state,
    save_checkpoint,
    spec_for_model,
)
from stopsign.train.model import build_model


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return build_model("yolov5n", 1).eval()


def test_round_trip_gives_identical_outputs(tmp_path: Path, model) -> None:
    spec = spec_for_model(model, ["stop_sign"], 416, operating_threshold=0.4)
    folder = save_checkpoint(tmp_path / "ckpt", model, spec)
    assert sorted(p.name for p in folder.iterdir()) == ["model.yaml", "spec.json", "weights.safetensors"]
    loaded = load_checkpoint(folder)
    assert loaded.spec.weights_sha256 and loaded.spec.operating_threshold == 0.4
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded.model.eval()(x)[0], model(x)[0])


def test_train_state_round_trip(tmp_path: Path, model) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    model.train()
    model(torch.rand(1, 3, 64, 64))[0].sum().backward()
    optimizer.step()
    meta, tensors = optimizer_to_state(optimizer)
    save_checkpoint(
        tmp_path / "c", model, spec_for_model(model, ["stop_sign"]), TrainState({"epoch": 3, **meta}, tensors)
    )
    loaded = load_checkpoint(tmp_path / "c", with_train_state=True)
    assert loaded.train_state is not None and loaded.train_state.meta["epoch"] == 3
    fresh = torch.optim.SGD(loaded.model.parameters(), lr=0.5, momentum=0.9, nesterov=True)
    optimizer_from_state(fresh, loaded.train_state.meta, loaded.train_state.tensors)
    assert fresh.param_groups[0]["lr"] == 0.01
    pairs = [(o, n) for o, n in zip(model.parameters(), loaded.model.parameters()) if o in optimizer.state]
    assert pairs
    for old_param, new_param in pairs:
        assert torch.equal(
            fresh.state[new_param]["momentum_buffer"], optimizer.state[old_param]["momentum_buffer"]
        )
    model.eval()


def test_tampered_weights_are_refused(tmp_path: Path, model) -> None:
    folder = save_checkpoint(tmp_path / "ckpt", model, spec_for_model(model, ["stop_sign"]))
    data = bytearray((folder / "weights.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (folder / "weights.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match spec.json"):
        load_checkpoint(folder)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "no such checkpoint folder"),
        (lambda p: p.mkdir(), "spec.json is missing"),
        (lambda p: p.with_suffix(".pt").write_bytes(b"x"), "pickled PyTorch checkpoint"),
    ],
)
def test_bad_paths_are_named(tmp_path: Path, setup, message: str) -> None:
    target = tmp_path / "ckpt"
    setup(target)
    path = target.with_suffix(".pt") if "pickled" in message else target
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_weights_for_another_model_are_refused(tmp_path: Path, model) -> None:
    folder = save_checkpoint(tmp_path / "ckpt", model, spec_for_model(model, ["stop_sign"]))
    (folder / "model.yaml").write_text(
        (folder / "model.yaml").read_text().replace("width_multiple: 0.25", "width_multiple: 0.5")
    )
    with pytest.raises(CheckpointError, match="do not fit model.yaml"):
        load_checkpoint(folder)
