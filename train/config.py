"""Training configuration: grouped, commented dataclasses, validated on construction.

Layering (later wins): defaults < ``--config`` YAML (grouped, as written by :func:`dump_config`)
< ``--hyp`` YAML (YOLOv5 hyper-parameter file, flat) < command-line flags. Unknown keys and
out-of-range values raise :class:`ConfigError` naming the key and the file.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration key is unknown or a value is out of range; the message names both."""


def _f(default: Any, help: str, lo: float | None = None, hi: float | None = None, choices: tuple = ()) -> Any:
    """A dataclass field with its help text and allowed range kept as metadata."""
    meta = {"help": help, "lo": lo, "hi": hi, "choices": choices}
    return field(default=default, metadata=meta)


@dataclass
class DataConfig:
    data: str = _f("", "data.yaml (or a dataset folder holding one): names, nc, train, val")
    img: int = _f(416, "square network input size in pixels (multiple of 32)", 32, 8192)
    cache: str = _f("", "decoded-image cache: '' (none), 'ram' or 'disk'", choices=("", "ram", "disk"))
    workers: int = _f(2, "data-loader worker processes (0 = load in the main process)", 0, 64)
    check: bool = _f(True, "validate the dataset (edge-data check) before training")


@dataclass
class ModelConfig:
    cfg: str = _f("yolov5n", "model YAML path or shipped name (yolov5n, yolov5s, custom_yolov5s, ...)")
    weights: str = _f("", "initial weights: a checkpoint folder (ours or imported YOLOv5), '' = random")


@dataclass
class ScheduleConfig:
    epochs: int = _f(100, "training epochs", 1, 100000)
    batch: int = _f(16, "images per optimizer micro-step (global, over all devices)", 1, 4096)
    nbs: int = _f(64, "nominal batch: gradients are accumulated to about this many images", 1, 4096)
    optimizer: str = _f("SGD", "SGD (nesterov) or AdamW", choices=("SGD", "AdamW"))
    cos_lr: bool = _f(False, "cosine learning-rate decay instead of linear")
    grad_clip: float = _f(10.0, "max gradient norm before the optimizer step (0 = off)", 0, 1e6)
    ema: bool = _f(True, "keep an exponential moving average of the weights (used for val and saving)")
    ema_decay: float = _f(0.9999, "EMA decay once ramped up", 0, 1)
    ema_tau: float = _f(2000.0, "EMA ramp: decay * (1 - exp(-updates / tau))", 1, 1e9)
    patience: int = _f(100, "stop after this many epochs without fitness improvement (0 = never)", 0, 1e9)
    time_budget: float = _f(
        0.0,
        "minutes this run may take (0 = no limit): after the first epochs the epoch count is cut to what "
        "fits, so the learning-rate schedule still anneals; never more than `epochs`",
        0,
        1e7,
    )


@dataclass
class RuntimeConfig:
    device: str = _f("", "'' (CUDA 0 when present, else CPU), 'cpu', 'cuda', '0' or '0,1' (DDP)")
    amp: bool = _f(True, "mixed precision on CUDA (ignored on CPU)")
    seed: int = _f(0, "seed of shuffling, augmentation and initialisation", 0, 2**31 - 1)
    deterministic: bool = _f(False, "deterministic algorithms (slower; bitwise-repeatable on one device)")
    dist_backend: str = _f(
        "", "DDP backend: '' (NCCL on CUDA, gloo on CPU), 'nccl' or 'gloo'", choices=("", "nccl", "gloo")
    )
    sync_bn: bool = _f(False, "SyncBatchNorm across DDP ranks (CUDA only)")
    freeze_bn: bool = _f(False, "keep BatchNorm layers in eval mode (fine-tuning; exact DDP comparisons)")


@dataclass
class OutputConfig:
    project: str = _f("runs/train", "parent folder of runs")
    name: str = _f("exp", "run folder name under project (made unique unless exist_ok)")
    exist_ok: bool = _f(False, "reuse project/name instead of numbering a new one")
    save_period: int = _f(-1, "also keep weights/epoch_N every N epochs (-1 = only last and best)", -1, 1e9)
    val_conf: float = _f(0.001, "confidence floor of per-epoch validation", 0, 1)
    val_iou: float = _f(0.6, "NMS IoU of per-epoch validation", 0, 1)


@dataclass
class Hyp:
    """YOLOv5 hyper-parameters, same names as its hyp.*.yaml files (so those files load)."""

    lr0: float = _f(0.01, "initial learning rate (SGD 1e-2, AdamW 1e-3)", 0, 10)
    lrf: float = _f(0.01, "final learning rate as a fraction of lr0", 0, 1)
    momentum: float = _f(0.937, "SGD momentum / Adam beta1", 0, 1)
    weight_decay: float = _f(0.0005, "weight decay of conv/linear weights (not BN, not biases)", 0, 1)
    warmup_epochs: float = _f(3.0, "warm-up epochs (fractions allowed)", 0, 1000)
    warmup_momentum: float = _f(0.8, "momentum at the start of warm-up", 0, 1)
    warmup_bias_lr: float = _f(0.1, "bias learning rate at the start of warm-up", 0, 10)
    box: float = _f(0.05, "box (CIoU) loss gain, for 3 levels", 0, 1000)
    cls: float = _f(0.5, "class loss gain, for 3 levels and 80 classes", 0, 1000)
    cls_pw: float = _f(1.0, "class BCE positive weight", 0, 1000)
    obj: float = _f(1.0, "objectness loss gain, for 3 levels at 640 px", 0, 1000)
    obj_pw: float = _f(1.0, "objectness BCE positive weight", 0, 1000)
    iou_t: float = _f(0.2, "unused by YOLOv5's loss; accepted so its hyp files load", 0, 1)
    anchor_t: float = _f(4.0, "anchor match: max(target/anchor, anchor/target) side ratio below this", 1, 100)
    fl_gamma: float = _f(0.0, "focal-loss gamma (0 = plain BCE)", 0, 10)
    label_smoothing: float = _f(0.0, "class label smoothing epsilon", 0, 1)
    hsv_h: float = _f(0.015, "hue jitter (fraction)", 0, 1)
    hsv_s: float = _f(0.7, "saturation jitter (fraction)", 0, 1)
    hsv_v: float = _f(0.4, "value jitter (fraction)", 0, 1)
    degrees: float = _f(0.0, "rotation range (+/- degrees)", 0, 180)
    translate: float = _f(0.1, "translation range (+/- fraction of the image)", 0, 1)
    scale: float = _f(0.5, "scale range (+/- gain)", 0, 0.99)
    shear: float = _f(0.0, "shear range (+/- degrees)", 0, 90)
    perspective: float = _f(0.0, "not supported: must be 0", 0, 0)
    flipud: float = _f(0.0, "vertical flip probability (off: signs are not symmetric)", 0, 1)
    fliplr: float = _f(0.0, "horizontal flip probability (off: lettered signs do not mirror)", 0, 1)
    mosaic: float = _f(1.0, "mosaic probability", 0, 1)
    mixup: float = _f(0.0, "not supported: must be 0", 0, 0)
    copy_paste: float = _f(0.0, "not supported: must be 0", 0, 0)
    corrupt: float = _f(
        0.0, "probability of one camera corruption per sample (train/data/corruptions.py)", 0, 1
    )
    corrupt_sev_min: float = _f(1.0, "lowest corruption severity drawn (0-5)", 0, 5)
    corrupt_sev_max: float = _f(3.0, "highest corruption severity drawn (0-5, >= corrupt_sev_min)", 0, 5)


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    hyp: Hyp = field(default_factory=Hyp)

    def __post_init__(self) -> None:
        validate(self)


GROUPS: tuple[str, ...] = ("data", "model", "schedule", "runtime", "output", "hyp")


def _check_value(group: str, f: dataclasses.Field, value: Any, source: str) -> Any:
    name = f"{group}.{f.name}"
    expected = f.type if isinstance(f.type, str) else f.type.__name__
    if expected == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {name} must be true or false, got {value!r}")
        return value
    if expected == "int":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ConfigError(f"{source}: {name} must be an integer, got {value!r}")
        value = int(value)
    elif expected == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{source}: {name} must be a finite number, got {value!r}")
        value = float(value)
    elif expected == "str":
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {name} must be a string, got {value!r}")
    meta = f.metadata
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(f"{source}: {name}={value!r} is not one of {list(meta['choices'])}")
    lo, hi = meta.get("lo"), meta.get("hi")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        extra = f" ({meta['help']})" if lo == hi else ""
        raise ConfigError(f"{source}: {name}={value!r} is out of range [{lo}, {hi}]{extra}")
    return value


def validate(config: TrainConfig, source: str = "config") -> None:
    """Type-, range- and cross-checks of every field; coerces ints written as floats."""
    for group in GROUPS:
        section = getattr(config, group)
        for f in dataclasses.fields(section):
            setattr(section, f.name, _check_value(group, f, getattr(section, f.name), source))
    if config.hyp.corrupt_sev_min > config.hyp.corrupt_sev_max:
        raise ConfigError(
            f"{source}: hyp.corrupt_sev_min={config.hyp.corrupt_sev_min} is above "
            f"hyp.corrupt_sev_max={config.hyp.corrupt_sev_max}"
        )
    if config.data.img % 32:
        raise ConfigError(
            f"{source}: data.img={config.data.img} must be a multiple of 32 (the largest stride)"
        )


def _apply(section: Any, group: str, values: dict[str, Any], source: str) -> None:
    known = {f.name for f in dataclasses.fields(section)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {[f'{group}.{k}' for k in unknown]} (known: {sorted(known)})"
        )
    for key, value in values.items():
        setattr(section, key, value)


def config_from_dict(
    data: dict[str, Any], base: TrainConfig | None = None, source: str = "config"
) -> TrainConfig:
    """Grouped dict ``{data: {...}, hyp: {...}, ...}`` applied over ``base`` (defaults when None)."""
    config = copy_config(base) if base is not None else TrainConfig()
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of groups {list(GROUPS)}, got {type(data).__name__}")
    unknown = sorted(set(data) - set(GROUPS))
    if unknown:
        raise ConfigError(f"{source}: unknown group(s) {unknown} (known: {list(GROUPS)})")
    for group, values in data.items():
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: group {group!r} must be a mapping, got {values!r}")
        _apply(getattr(config, group), group, values, source)
    validate(config, source)
    return config


def _read_yaml(path: str | Path) -> Any:
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({exc})") from None


def load_config(path: str | Path, base: TrainConfig | None = None) -> TrainConfig:
    return config_from_dict(_read_yaml(path) or {}, base, source=str(path))


def load_hyp(path: str | Path, base: TrainConfig | None = None) -> TrainConfig:
    """A flat YOLOv5 hyp YAML (``lr0: 0.01`` ...) applied to the ``hyp`` group."""
    data = _read_yaml(path) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of hyper-parameters")
    # YOLOv5's hyp files may carry an anchors count; the model YAML owns the anchors here.
    data = {k: v for k, v in data.items() if k != "anchors"}
    return config_from_dict({"hyp": data}, base, source=str(path))


def copy_config(config: TrainConfig) -> TrainConfig:
    # Every field is a scalar, so a shallow copy of each group is a full copy.
    return TrainConfig(**{group: dataclasses.replace(getattr(config, group)) for group in GROUPS})


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def dump_config(config: TrainConfig) -> str:
    """YAML with each value's help as a trailing comment; loads back with :func:`load_config`."""
    lines = ["# edge-train configuration (groups and keys are checked on load)"]
    for group in GROUPS:
        section = getattr(config, group)
        lines.append(f"{group}:")
        for f in dataclasses.fields(section):
            value = yaml.safe_dump(getattr(section, f.name), default_flow_style=True).strip()
            value = value.removesuffix("\n...").removesuffix("...").strip()
            lines.append(f"  {f.name}: {value}  # {f.metadata['help']}")
    return "\n".join(lines) + "\n"
