"""Initial weights of a run: random, our checkpoint, or an imported YOLOv5 checkpoint folder.

Tensors are copied where name and shape agree; when the class count differs the detection head
cannot be reused and is re-initialised, and the user is told.
"""

from __future__ import annotations

from pathlib import Path

from stopsign.train.checkpoint import load_checkpoint
from stopsign.train.model.yolo import YoloModel, build_model, resolve_cfg


def build_initial_model(cfg: str, weights: str, nc: int, log=print) -> YoloModel:
    """Model for ``nc`` classes from ``cfg`` (or the checkpoint's own YAML when ``cfg`` is '')."""
    if not cfg and not weights:
        raise ValueError("give --cfg (a model YAML or shipped name) or --weights (a checkpoint folder)")
    if not weights:
        model = build_model(cfg, nc=nc)
        log(f"model {model.name}: random initialisation, {model.num_parameters():,} parameters, nc={nc}")
        return model
    source = load_checkpoint(Path(weights))
    if cfg:
        model = build_model(cfg, nc=nc)
    else:
        yaml_cfg, _ = resolve_cfg(source.model.yaml)
        yaml_cfg["name"] = source.model.name
        model = build_model(yaml_cfg, nc=nc)
    target = model.state_dict()
    loaded, skipped = {}, []
    for key, value in source.model.state_dict().items():
        if key in target and target[key].shape == value.shape and not key.endswith("anchors"):
            loaded[key] = value
        elif key in target:
            skipped.append(key)
    model.load_state_dict(loaded, strict=False)
    if source.model.nc != nc:
        log(
            f"weights {weights}: trained for nc={source.model.nc} ({', '.join(source.spec.class_names[:5])}"
            f"{', ...' if source.model.nc > 5 else ''}), data has nc={nc}: the detection head is re-initialised"
        )
    log(f"weights {weights}: transferred {len(loaded)}/{len(target)} tensors into {model.name}")
    if skipped and source.model.nc == nc:
        log(f"  not transferred (shape differs): {skipped[:8]}{' ...' if len(skipped) > 8 else ''}")
    return model
