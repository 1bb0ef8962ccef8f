"""``edge-train import-onnx``: a checkpoint folder back from an exported ONNX, to fine-tune it.

An exported model (``edge-export onnx``) has every BatchNorm folded into its convolution: the
ONNX initializers are ``model.N....conv.weight`` and ``....conv.bias`` under the YOLOv5 key names,
plus the detection head's own convolutions. This puts them back into the model the ModelSpec names:
each convolution keeps its folded weight, and its BatchNorm becomes the identity plus the folded
bias (running mean 0, running variance 1 - eps, scale 1, shift = bias), so the checkpoint computes
exactly what the ONNX does. Fine-tune it with ``--freeze-bn``: a BatchNorm in training mode would
normalise with batch statistics that this identity never had.

Use it when only the shipped ``stopsign.onnx`` is at hand (its training checkpoint is not in the
repository); an INT8 Q/DQ or FP16 file is refused (its weights are not the FP32 ones).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from stopsign.edge.model.spec import ModelSpecError
from stopsign.train.checkpoint import CheckpointError, save_checkpoint
from stopsign.train.model import build_model
from stopsign.train.model.modules import Conv


def import_onnx(onnx_path: str | Path, out: str | Path) -> Path:
    """Write the checkpoint folder of ``onnx_path`` (see the module docstring) to ``out``."""
    import onnx
    from onnx import numpy_helper

    from stopsign.edge.model.onnx_meta import read_spec_from_onnx

    onnx_path = Path(onnx_path)
    try:
        spec = read_spec_from_onnx(onnx_path)
        model_proto = onnx.load(str(onnx_path))
    except (ModelSpecError, OSError) as exc:
        raise CheckpointError(f"{onnx_path}: {exc}") from None
    if spec.precision != "fp32" or any(n.op_type == "QuantizeLinear" for n in model_proto.graph.node):
        raise CheckpointError(f"{onnx_path}: a {spec.precision} model; import the FP32 ONNX it was made from")
    if not spec.architecture:
        raise CheckpointError(f"{onnx_path}: its ModelSpec names no architecture (model YAML)")
    weights = {init.name: numpy_helper.to_array(init) for init in model_proto.graph.initializer}
    model = build_model(spec.architecture, nc=spec.num_classes).eval()
    state = model.state_dict()
    filled: set[str] = set()

    def take(name: str, target: str) -> None:
        if name not in weights:
            raise CheckpointError(
                f"{onnx_path}: no initializer {name!r} for {target!r}; not an edge-export ONNX?"
            )
        value = torch.from_numpy(np.array(weights[name]))  # a writable copy
        if value.shape != state[target].shape:
            raise CheckpointError(
                f"{onnx_path}: {name} has shape {tuple(value.shape)}, {target} needs {tuple(state[target].shape)}"
            )
        state[target] = value.to(state[target].dtype)
        filled.add(target)

    for module_name, module in model.named_modules():
        if not isinstance(module, Conv) or not isinstance(module.bn, torch.nn.BatchNorm2d):
            continue
        prefix = f"{module_name}."
        take(f"{prefix}conv.weight", f"{prefix}conv.weight")
        take(f"{prefix}conv.bias", f"{prefix}bn.bias")
        eps = module.bn.eps
        state[f"{prefix}bn.weight"] = torch.ones_like(state[f"{prefix}bn.weight"])
        state[f"{prefix}bn.running_mean"] = torch.zeros_like(state[f"{prefix}bn.running_mean"])
        state[f"{prefix}bn.running_var"] = torch.full_like(state[f"{prefix}bn.running_var"], 1.0 - eps)
        filled |= {
            f"{prefix}bn.weight",
            f"{prefix}bn.running_mean",
            f"{prefix}bn.running_var",
            f"{prefix}bn.num_batches_tracked",
        }
    for key in state:
        if key not in filled and key in weights:
            take(key, key)
    missing = [k for k, v in state.items() if k not in filled and v.is_floating_point() and "anchor" not in k]
    if missing:
        raise CheckpointError(
            f"{onnx_path}: nothing in the ONNX for {missing[:5]}; not an edge-export ONNX of {spec.architecture}?"
        )
    model.load_state_dict(state)
    spec = spec.replace(training_data={**spec.training_data, "imported_from_onnx": onnx_path.name})
    return save_checkpoint(out, model, spec)


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "onnx", type=Path, help="FP32 ONNX exported by edge-export (e.g. edge/assets/stopsign.onnx)"
    )
    parser.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")


def run(args: argparse.Namespace) -> int:
    try:
        folder = import_onnx(args.onnx, args.out)
    except CheckpointError as exc:
        print(f"edge-train import-onnx: {exc}")
        return 2
    print(f"imported {args.onnx} -> {folder}  (fine-tune it with --freeze-bn)")
    return 0
