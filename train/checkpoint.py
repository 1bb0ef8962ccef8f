"""Checkpoints: safetensors weights + model YAML + ModelSpec JSON, never a pickled module.

Layout of a checkpoint folder::

    CKPT/
      weights.safetensors     model state dict (YOLOv5 key names), float32; during training the EMA
                              weights, which are the ones evaluated and exported
      model.yaml              the model config it was built from (nc resolved); for a Darknet model
                              {name, nc, darknet_cfg: <the cfg text>}
      model.cfg               Darknet models only: the same cfg text, as a file Darknet reads
      spec.json               ModelSpec; spec.weights_sha256 is the SHA-256 of weights.safetensors
      train_state.safetensors optional, for --resume: the raw optimised weights (model.<key>), the
                              EMA weights (ema.<key>) and the optimizer buffers (optimizer.<i>.<name>)
      train_state.json        optional: epoch, optimizer param groups, hyper-parameters, metrics

Loading checks the weights against ``spec.weights_sha256`` and never unpickles anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from stopsign.edge.model.artifacts import atomic_write_bytes, atomic_write_text, sha256_bytes
from stopsign.edge.model.spec import ModelSpec, ModelSpecError
from stopsign.train.model.yolo import YoloModel, build_model, dump_cfg, parse_cfg_text

WEIGHTS_FILE = "weights.safetensors"
MODEL_YAML_FILE = "model.yaml"
DARKNET_CFG_FILE = "model.cfg"
SPEC_FILE = "spec.json"
TRAIN_STATE_TENSORS = "train_state.safetensors"
TRAIN_STATE_JSON = "train_state.json"


class CheckpointError(RuntimeError):
    """A checkpoint is missing a file, is corrupt, or does not match its spec."""


@dataclass
class TrainState:
    """What --resume needs besides the model weights.

    ``tensors`` holds flat named tensors (raw weights as ``model.<key>``, EMA weights as
    ``ema.<key>``, optimizer buffers as ``optimizer.<param>.<name>``); ``meta`` is JSON (epoch,
    optimizer param groups, hyper-parameters).
    """

    meta: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class Checkpoint:
    model: YoloModel
    spec: ModelSpec
    path: Path
    train_state: TrainState | None = None


def spec_for_model(
    model: YoloModel, class_names: list[str], input_size: int | tuple[int, int] = 416, **fields: Any
) -> ModelSpec:
    """A ModelSpec describing ``model`` (strides and anchors read off the model itself)."""
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if len(class_names) != model.nc:
        raise CheckpointError(f"{len(class_names)} class names for a model with nc={model.nc}")
    return ModelSpec(
        class_names=list(class_names),
        input_size=size,  # type: ignore[arg-type]
        strides=tuple(model.strides),
        anchors=tuple(tuple(row) for row in model.anchors_pixels()),
        architecture=model.name,
        **fields,
    )


def _contiguous_float(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {
        k: (v.float() if v.is_floating_point() else v).detach().cpu().contiguous() for k, v in state.items()
    }


def save_checkpoint(
    folder: str | Path, model: YoloModel, spec: ModelSpec, train_state: TrainState | None = None
) -> Path:
    """Write a checkpoint folder atomically file by file; the spec is written last (it names the weights)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = st_save(_contiguous_float(model.state_dict()))
    atomic_write_bytes(folder / WEIGHTS_FILE, weights)
    atomic_write_text(folder / MODEL_YAML_FILE, dump_cfg(model.yaml))
    darknet_text = model.yaml.get("darknet_cfg")
    if darknet_text:
        atomic_write_text(folder / DARKNET_CFG_FILE, darknet_text)
    else:
        (folder / DARKNET_CFG_FILE).unlink(missing_ok=True)
    if train_state is not None:
        atomic_write_bytes(folder / TRAIN_STATE_TENSORS, st_save(_contiguous_float(train_state.tensors)))
        atomic_write_text(folder / TRAIN_STATE_JSON, json.dumps(train_state.meta, indent=2, default=str))
    else:
        (folder / TRAIN_STATE_TENSORS).unlink(missing_ok=True)
        (folder / TRAIN_STATE_JSON).unlink(missing_ok=True)
    spec = spec.replace(weights_sha256=sha256_bytes(weights), architecture=spec.architecture or model.name)
    spec.save(folder / SPEC_FILE)
    return folder


def _read(folder: Path, name: str) -> bytes:
    path = folder / name
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{folder}: not a checkpoint folder, {name} is missing") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror})") from None


def load_checkpoint(
    folder: str | Path, with_train_state: bool = False, map_location: str = "cpu"
) -> Checkpoint:
    """Load a checkpoint folder; verifies the weights' SHA-256 against the spec."""
    folder = Path(folder)
    if folder.is_file() and folder.suffix in (".pt", ".pth"):
        raise CheckpointError(
            f"{folder}: a pickled PyTorch checkpoint; convert an official YOLOv5 one with "
            f"`edge-train import-yolov5 {folder} --out DIR` (pickles are never loaded directly)"
        )
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such checkpoint folder")
    try:
        spec = ModelSpec.from_json(_read(folder, SPEC_FILE).decode("utf-8"), source=str(folder / SPEC_FILE))
    except ModelSpecError as exc:
        raise CheckpointError(str(exc)) from None
    weights = _read(folder, WEIGHTS_FILE)
    digest = sha256_bytes(weights)
    if spec.weights_sha256 and digest != spec.weights_sha256:
        raise CheckpointError(
            f"{folder / WEIGHTS_FILE}: SHA-256 {digest[:16]}... does not match spec.json "
            f"({spec.weights_sha256[:16]}...): the file is corrupt or was replaced"
        )
    cfg = parse_cfg_text(_read(folder, MODEL_YAML_FILE).decode("utf-8"), str(folder / MODEL_YAML_FILE))
    cfg.setdefault("name", spec.architecture or "custom")
    try:
        model = build_model(cfg, nc=len(spec.class_names))
    except ValueError as exc:  # ModelConfigError, DarknetCfgError
        raise CheckpointError(f"{folder / MODEL_YAML_FILE}: {exc}") from None
    model.name = spec.architecture or model.name
    try:
        state = st_load(weights)
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"{folder / WEIGHTS_FILE}: not a valid safetensors file ({exc})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{folder / WEIGHTS_FILE}: weights do not fit model.yaml: {exc}") from None
    model.to(map_location)
    train_state = None
    if with_train_state and (folder / TRAIN_STATE_JSON).exists():
        meta = json.loads(_read(folder, TRAIN_STATE_JSON))
        tensors = (
            st_load(_read(folder, TRAIN_STATE_TENSORS)) if (folder / TRAIN_STATE_TENSORS).exists() else {}
        )
        train_state = TrainState(meta=meta, tensors=tensors)
    return Checkpoint(model=model, spec=spec, path=folder, train_state=train_state)


def optimizer_to_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Split an optimizer state dict into JSON (param groups, scalars) and flat tensors."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, buffers in state["state"].items():
        for name, value in buffers.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{index}.{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    return {"param_groups": state["param_groups"], "scalars": scalars}, tensors


def optimizer_from_state(
    optimizer: torch.optim.Optimizer, meta: dict[str, Any], tensors: dict[str, torch.Tensor]
) -> None:
    """Inverse of :func:`optimizer_to_state`."""
    per_param: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            per_param.setdefault(int(index), {})[name] = value
    for index, values in meta.get("scalars", {}).items():
        per_param.setdefault(int(index), {}).update(values)
    optimizer.load_state_dict({"state": per_param, "param_groups": meta["param_groups"]})
