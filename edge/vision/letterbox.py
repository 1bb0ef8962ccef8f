"""Letterbox preprocessing, defined once for training, export, calibration and the runtime.

The image is scaled to fit the network input keeping its aspect ratio, centred, and the border
filled with ``pad_value``. :class:`LetterboxTransform` records how to map boxes back.

``resize="stretch"`` (ModelSpec.resize of Darknet models) scales each axis to the input size
instead, with no border: the same functions, a transform with ``scale_y != scale`` and no pad.
:func:`resize_for_spec` picks the mode a ModelSpec asks for; every consumer goes through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from stopsign.edge.model.spec import RESIZE_MODES

if TYPE_CHECKING:
    from stopsign.edge.model.spec import ModelSpec


@dataclass(frozen=True)
class LetterboxTransform:
    """Maps between source-image pixels and network-input pixels: ``net = src * scale + pad``.

    ``scale`` is the horizontal scale; ``scale_y`` the vertical one when it differs (stretch
    resize), else None.
    """

    scale: float
    pad_x: float
    pad_y: float
    source_size: tuple[int, int]  # (height, width) of the source image
    scale_y: float | None = None

    @property
    def scale_xy(self) -> tuple[float, float]:
        """(horizontal, vertical) scale from source to network pixels."""
        return self.scale, self.scale if self.scale_y is None else self.scale_y

    def to_source(self, xyxy: np.ndarray) -> np.ndarray:
        """Network-input boxes (n, 4) -> source pixels, clipped to the source image. In place."""
        # Whole-array operations with per-column operands: a few calls, as this runs on every frame.
        sx, sy = self.scale_xy
        h, w = self.source_size
        dtype = xyxy.dtype
        xyxy -= np.array((self.pad_x, self.pad_y, self.pad_x, self.pad_y), dtype)
        xyxy /= np.array((sx, sy, sx, sy), dtype) if sx != sy else dtype.type(sx)
        np.maximum(xyxy, 0, out=xyxy)
        np.minimum(xyxy, np.array((w, h, w, h), dtype), out=xyxy)
        return xyxy

    def to_network(self, xyxy: np.ndarray) -> np.ndarray:
        """Source-pixel boxes (n, 4) -> network-input pixels (new array)."""
        sx, sy = self.scale_xy
        out = np.array(xyxy, dtype=np.float32)
        out[:, [0, 2]] *= sx
        out[:, [1, 3]] *= sy
        out[:, [0, 2]] += self.pad_x
        out[:, [1, 3]] += self.pad_y
        return out


def compute_transform(
    source_size: tuple[int, int],
    input_size: tuple[int, int],
    scale_up: bool = True,
    resize: str = "letterbox",
) -> tuple[LetterboxTransform, tuple[int, int]]:
    """Scale and padding for a source (h, w) into an input (h, w). Returns (transform, resized (h, w)).

    ``resize="stretch"``: each axis scaled to the input, no padding, resized = input size
    (``scale_up`` does not apply: Darknet always fills the input).
    """
    src_h, src_w = source_size
    dst_h, dst_w = input_size
    if src_h <= 0 or src_w <= 0:
        raise ValueError(f"letterbox: source image has no pixels ({src_w}x{src_h})")
    if resize == "stretch":
        transform = LetterboxTransform(
            scale=dst_w / src_w, pad_x=0.0, pad_y=0.0, source_size=(src_h, src_w), scale_y=dst_h / src_h
        )
        return transform, (dst_h, dst_w)
    if resize != "letterbox":
        raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
    scale = min(dst_h / src_h, dst_w / src_w)
    if not scale_up:
        scale = min(scale, 1.0)
    new_w, new_h = round(src_w * scale), round(src_h * scale)
    new_w, new_h = max(1, min(new_w, dst_w)), max(1, min(new_h, dst_h))
    pad_x, pad_y = (dst_w - new_w) / 2, (dst_h - new_h) / 2
    # Integer placement: the left/top border gets the rounded-down half.
    left, top = round(pad_x - 0.1), round(pad_y - 0.1)
    transform = LetterboxTransform(
        scale=scale, pad_x=float(left), pad_y=float(top), source_size=(src_h, src_w)
    )
    return transform, (new_h, new_w)


def letterbox(
    image: np.ndarray,
    input_size: tuple[int, int],
    pad_value: int = 114,
    out: np.ndarray | None = None,
    scale_up: bool = True,
    resize: str = "letterbox",
    fill_border: bool = True,
) -> tuple[np.ndarray, LetterboxTransform]:
    """Letterbox a HxWx3 uint8 image into ``out`` (allocated when None) of shape (*input_size, 3).

    Reusing ``out`` across frames avoids a full-size allocation per frame: the resize writes
    straight into the centre region, and ``fill_border=False`` leaves the border as it is (the
    caller filled it for a frame of the same size; a new ``out`` is always filled).
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"letterbox: expected an HxWx3 image, got shape {image.shape}")
    dst_h, dst_w = input_size
    if out is None:
        out, fill_border = np.empty((dst_h, dst_w, 3), dtype=np.uint8), True
    elif out.shape != (dst_h, dst_w, 3):
        raise ValueError(f"letterbox: out buffer has shape {out.shape}, need {(dst_h, dst_w, 3)}")
    transform, (new_h, new_w) = compute_transform(image.shape[:2], input_size, scale_up, resize)
    top, left = int(transform.pad_y), int(transform.pad_x)
    bottom, right = top + new_h, left + new_w
    if fill_border:  # rows above/below, then columns left/right of the image region
        out[:top] = pad_value
        out[bottom:] = pad_value
        out[top:bottom, :left] = pad_value
        out[top:bottom, right:] = pad_value
    region = out[top:bottom, left:right]
    if (new_h, new_w) == image.shape[:2]:
        region[...] = image
    else:
        # Bilinear, as YOLOv5 inference does: INTER_AREA is ~10x slower on a 720p frame (4.8 ms vs
        # 0.4 ms here), a cost paid on every frame for an anti-aliasing the model does not need.
        # Written in place (no temporary image and copy); should OpenCV return another array, copy.
        resized = cv2.resize(image, (new_w, new_h), dst=region, interpolation=cv2.INTER_LINEAR)
        if resized is not region:
            region[...] = resized
    return out, transform


def resize_for_spec(
    image: np.ndarray, spec: ModelSpec, out: np.ndarray | None = None, fill_border: bool = True
) -> tuple[np.ndarray, LetterboxTransform]:
    """:func:`letterbox` with the input size, pad value and resize mode of ``spec``."""
    return letterbox(
        image, spec.input_size, spec.pad_value, out=out, resize=spec.resize, fill_border=fill_border
    )


def to_network_input(
    letterboxed_bgr: np.ndarray, scale: float = 1 / 255.0, rgb: bool = True, out: np.ndarray | None = None
) -> np.ndarray:
    """HxWx3 uint8 BGR -> (1, 3, H, W) float32 (RGB when ``rgb``), multiplied by ``scale``."""
    h, w = letterboxed_bgr.shape[:2]
    if out is None:
        out = np.empty((1, 3, h, w), dtype=np.float32)
    channels = letterboxed_bgr[..., ::-1] if rgb else letterboxed_bgr
    np.multiply(channels.transpose(2, 0, 1), np.float32(scale), out=out[0], casting="unsafe")
    return out
