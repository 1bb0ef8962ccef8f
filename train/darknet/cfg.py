"""Darknet ``.cfg`` files: sections, options and the line each came from.

A cfg is a list of ``[section]`` headers, each followed by ``key=value`` lines; ``#`` and ``;``
start comments. The first section is ``[net]`` (input size, training settings); every later
section is one layer, numbered from 0 in file order, which is how ``route`` and ``shortcut``
refer to layers (a negative index is relative to the layer itself).

Only what this project can build is accepted: an unknown section or option is a
:class:`DarknetCfgError` naming the file, the line and the section, never something silently
ignored. Options that only steer Darknet's own training loop (``jitter``, ``ignore_thresh``,
``burn_in``, ...) are accepted and kept, and have no effect here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

CLASSES_PLACEHOLDER = "{num_classes}"
FILTERS_PLACEHOLDER = "{num_filters}"

# Section name -> canonical kind (Darknet accepts a few aliases).
SECTION_KINDS = {
    "net": "net",
    "network": "net",
    "convolutional": "convolutional",
    "conv": "convolutional",
    "route": "route",
    "shortcut": "shortcut",
    "maxpool": "maxpool",
    "max": "maxpool",
    "upsample": "upsample",
    "yolo": "yolo",
}

# Options that change what the layer computes: all are read by the model builder.
_USED = {
    "net": {"width", "height", "channels", "letter_box"},
    "convolutional": {
        "batch_normalize",
        "filters",
        "size",
        "stride",
        "pad",
        "padding",
        "groups",
        "activation",
    },
    "route": {"layers", "groups", "group_id"},
    "shortcut": {"from", "activation"},
    "maxpool": {"size", "stride", "padding"},
    "upsample": {"stride"},
    "yolo": {"mask", "anchors", "classes", "num", "scale_x_y", "new_coords"},
}
# Options that only matter to Darknet's trainer (or are informational): accepted, unused.
_TRAINING_ONLY = {
    "net": {
        "batch",
        "subdivisions",
        "momentum",
        "decay",
        "angle",
        "saturation",
        "exposure",
        "hue",
        "learning_rate",
        "burn_in",
        "max_batches",
        "policy",
        "steps",
        "scales",
        "mosaic",
        "flip",
        "blur",
        "gaussian_noise",
        "mixup",
        "cutmix",
        "max_chart_loss",
        "power",
        "aspect",
        "jitter",
        "track",
        "time_steps",
        "augment_speed",
        "sequential_subdivisions",
        "try_fix_nan",
        "adam",
        "B1",
        "B2",
        "eps",
        "label_smooth_eps",
        "mosaic_bound",
        "contrastive",
        "unsupervised",
        "use_cuda_graph",
        "init_sequential_subdivisions",
        "random",
        "resize",
        "min_crop",
        "max_crop",
        "optimized_memory",
        "workspace_size_limit_MB",
        "loss_scale",
        "dynamic_minibatch",
        "cost",
    },
    "convolutional": {"stopbackward", "train", "dontload", "dontloadscales", "learning_rate"},
    "route": {"stopbackward"},
    "shortcut": {"weights_normalization"},
    "maxpool": {"stopbackward"},
    "upsample": set(),
    "yolo": {
        "jitter",
        "ignore_thresh",
        "truth_thresh",
        "random",
        "resize",
        "iou_thresh",
        "cls_normalizer",
        "iou_normalizer",
        "obj_normalizer",
        "iou_loss",
        "nms_kind",
        "beta_nms",
        "max_delta",
        "counters_per_class",
        "label_smooth_eps",
        "focal_loss",
        "max",
        "objectness_smooth",
        "delta_normalizer",
        "track_history_size",
        "sim_thresh",
        "dets_for_track",
        "dets_for_show",
        "track_ciou_norm",
        "embedding_layer",
        "map",
        "show_details",
        "uc_normalizer",
        "iou_thresh_kind",
    },
}
# Option values this project can compute; anything else for these options is an error.
_ALLOWED_VALUES = {
    ("convolutional", "activation"): {"linear", "leaky", "mish", "logistic", "swish", "relu"},
    ("shortcut", "activation"): {"linear"},
    ("shortcut", "weights_normalization"): {"none"},
}


class DarknetCfgError(ValueError):
    """A ``.cfg`` file cannot be built here; the message names the file, line and section."""


@dataclass
class Section:
    """One ``[kind]`` block: ``options`` as written (strings), ``line`` of its header (1-based).

    ``index`` is the layer index (``-1`` for ``[net]``); ``option_lines`` maps each option to the
    line it was written on, so errors about a value can point at it.
    """

    kind: str
    line: int
    index: int
    options: dict[str, str] = field(default_factory=dict)
    option_lines: dict[str, int] = field(default_factory=dict)
    source: str = "<cfg>"

    def where(self, key: str | None = None) -> str:
        line = self.option_lines.get(key, self.line) if key else self.line
        layer = f" (layer {self.index})" if self.index >= 0 else ""
        return f"{self.source}:{line}: [{self.kind}]{layer}"

    def fail(self, message: str, key: str | None = None) -> DarknetCfgError:
        return DarknetCfgError(f"{self.where(key)}: {message}")

    def has(self, key: str) -> bool:
        return key in self.options

    def get_int(self, key: str, default: int | None = None) -> int:
        if key not in self.options:
            if default is None:
                raise self.fail(f"missing required option '{key}'")
            return default
        try:
            return int(self.options[key])
        except ValueError:
            raise self.fail(f"{key}={self.options[key]!r} is not an integer", key) from None

    def get_float(self, key: str, default: float) -> float:
        if key not in self.options:
            return default
        try:
            return float(self.options[key])
        except ValueError:
            raise self.fail(f"{key}={self.options[key]!r} is not a number", key) from None

    def get_str(self, key: str, default: str) -> str:
        return self.options.get(key, default)

    def get_ints(self, key: str, default: list[int] | None = None) -> list[int]:
        if key not in self.options:
            if default is None:
                raise self.fail(f"missing required option '{key}'")
            return list(default)
        return [int(v) for v in self._split(key, int)]

    def get_floats(self, key: str) -> list[float]:
        if key not in self.options:
            raise self.fail(f"missing required option '{key}'")
        return [float(v) for v in self._split(key, float)]

    def _split(self, key: str, kind: type) -> list[str]:
        parts = [p.strip() for p in self.options[key].split(",") if p.strip()]
        for part in parts:
            try:
                kind(part)
            except ValueError:
                raise self.fail(
                    f"{key}={self.options[key]!r}: {part!r} is not {'an integer' if kind is int else 'a number'}",
                    key,
                ) from None
        if not parts:
            raise self.fail(f"{key} is empty", key)
        return parts


@dataclass
class DarknetCfg:
    """A parsed cfg: the ``[net]`` section, the layer sections in order, and the source text."""

    net: Section
    layers: list[Section]
    text: str
    source: str = "<cfg>"

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the network input."""
        return self.net.get_int("height"), self.net.get_int("width")

    @property
    def letter_box(self) -> bool:
        return self.net.get_int("letter_box", 0) != 0

    @property
    def yolo_layers(self) -> list[Section]:
        return [s for s in self.layers if s.kind == "yolo"]

    @property
    def num_classes(self) -> int:
        counts = {s.get_int("classes") for s in self.yolo_layers}
        if len(counts) != 1:
            raise DarknetCfgError(f"{self.source}: the yolo layers disagree on classes ({sorted(counts)})")
        return counts.pop()


def substitute_classes(text: str, nc: int) -> str:
    """Fill the ``{num_classes}`` / ``{num_filters}`` placeholders of the shipped cfgs.

    ``filters`` of the convolution before each yolo layer is ``(classes + 5) * len(mask)``; every
    shipped family has three anchors per yolo layer.
    """
    if nc < 1:
        raise DarknetCfgError(f"classes must be >= 1, got {nc}")
    return text.replace(CLASSES_PLACEHOLDER, str(nc)).replace(FILTERS_PLACEHOLDER, str((nc + 5) * 3))


def with_classes(cfg: DarknetCfg, nc: int) -> str:
    """The cfg text for ``nc`` classes: ``classes`` of every yolo layer and ``filters`` of the
    convolution feeding it (``len(mask) x (nc + 5)``) rewritten in place, all else unchanged."""
    if nc < 1:
        raise DarknetCfgError(f"classes must be >= 1, got {nc}")
    lines = cfg.text.splitlines()
    for section in cfg.yolo_layers:
        feeder = cfg.layers[section.index - 1] if section.index > 0 else None
        if feeder is None or feeder.kind != "convolutional" or "filters" not in feeder.option_lines:
            raise section.fail("the layer before a [yolo] must be a [convolutional] with filters")
        total = len(section.get_floats("anchors")) // 2
        anchors = len(section.get_ints("mask", list(range(total))))
        for target, key, value in ((section, "classes", nc), (feeder, "filters", anchors * (nc + 5))):
            if key not in target.option_lines:  # classes missing: Darknet's default; add it
                lines[target.line - 1] += f"\n{key}={value}"
                continue
            number = target.option_lines[key] - 1
            lines[number] = f"{key}={value}"
    return "\n".join(lines) + "\n"


def with_net_options(cfg: DarknetCfg, options: dict[str, str | int]) -> str:
    """The cfg text with these ``[net]`` options set (replaced where written, else added)."""
    lines = cfg.text.splitlines()
    added = []
    for key, value in options.items():
        if key in cfg.net.option_lines:
            lines[cfg.net.option_lines[key] - 1] = f"{key}={value}"
        else:
            added.append(f"{key}={value}")
    if added:
        lines[cfg.net.line - 1] += "\n" + "\n".join(added)
    return "\n".join(lines) + "\n"


def parse_cfg(text: str, source: str = "<cfg>") -> DarknetCfg:
    """Parse cfg text; checks section kinds and option names (values are checked by the builder)."""
    sections: list[Section] = []
    current: Section | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise DarknetCfgError(f"{source}:{number}: section header {line!r} has no closing ']'")
            name = line[1:-1].strip()
            kind = SECTION_KINDS.get(name)
            if kind is None:
                raise DarknetCfgError(
                    f"{source}:{number}: [{name}] (layer {len(sections) - 1}): unsupported layer type "
                    f"(supported: {', '.join(sorted(set(SECTION_KINDS.values()) - {'net'}))})"
                )
            if kind == "net" and sections:
                raise DarknetCfgError(f"{source}:{number}: [{name}] must be the first section")
            if kind != "net" and not sections:
                raise DarknetCfgError(f"{source}:{number}: [{name}]: the first section must be [net]")
            current = Section(kind=kind, line=number, index=len(sections) - 1, source=source)
            sections.append(current)
            continue
        if current is None:
            raise DarknetCfgError(f"{source}:{number}: option {line!r} before the first [section]")
        if "=" not in line:
            raise DarknetCfgError(f"{current.where()}: line {number}: expected key=value, got {line!r}")
        key, value = (part.strip() for part in line.split("=", 1))
        if key in current.options:
            raise DarknetCfgError(
                f"{source}:{number}: [{current.kind}] (layer {current.index}): option '{key}' given twice "
                f"(first on line {current.option_lines[key]})"
            )
        if key not in _USED[current.kind] and key not in _TRAINING_ONLY[current.kind]:
            raise DarknetCfgError(
                f"{source}:{number}: [{current.kind}] (layer {current.index}): unsupported option '{key}'"
            )
        allowed = _ALLOWED_VALUES.get((current.kind, key))
        if allowed is not None and value not in allowed:
            raise DarknetCfgError(
                f"{source}:{number}: [{current.kind}] (layer {current.index}): unsupported {key}={value!r} "
                f"(supported: {', '.join(sorted(allowed))})"
            )
        current.options[key] = value
        current.option_lines[key] = number
    if not sections:
        raise DarknetCfgError(f"{source}: no [net] section (not a Darknet cfg?)")
    net, layers = sections[0], sections[1:]
    if not layers:
        raise DarknetCfgError(f"{source}: no layers after [net]")
    if not any(s.kind == "yolo" for s in layers):
        raise DarknetCfgError(f"{source}: no [yolo] layer: only YOLO detectors are supported")
    return DarknetCfg(net=net, layers=layers, text=text, source=source)


def load_cfg(path: str | Path, nc: int | None = None) -> DarknetCfg:
    """Read and parse a cfg file; ``nc`` fills the shipped cfgs' class placeholders."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DarknetCfgError(f"{path}: cannot read ({exc.strerror})") from None
    if CLASSES_PLACEHOLDER in text or FILTERS_PLACEHOLDER in text:
        if nc is None:
            raise DarknetCfgError(f"{path}: classes is {CLASSES_PLACEHOLDER}; give the number of classes")
        text = substitute_classes(text, nc)
    return parse_cfg(text, str(path))
