"""Host preprocessing of the detection loop: letterbox into reused buffers, and whole frame + tiles.

:class:`Preprocessor` letterboxes one frame into one network input. :class:`FrameBatcher` puts
the whole frame and the high-resolution tiles of :mod:`stopsign.edge.vision.tiles` into one batch
(1 + T, 3, H, W), and turns the backend's output for that batch back into one ``Detections`` in
frame pixels. Without tiles it is exactly the single-image path. For a backend with
``image_input`` (OpenVINO: the conversion runs inside its compiled model) the batch is the
letterboxed uint8 images, (1 + T, H, W, 3), and :class:`ImageSlot` fills it: no float pass on the
host.
"""

from __future__ import annotations

import numpy as np

from stopsign.edge.model.spec import ModelSpec
from stopsign.edge.vision.detections import Detections
from stopsign.edge.vision.letterbox import (
    LetterboxTransform,
    compute_transform,
    resize_for_spec,
    to_network_input,
)
from stopsign.edge.vision.postprocess import decode_yolov5
from stopsign.edge.vision.tiles import Tile, TileConfig, merge, tile_to_frame


class Preprocessor:
    """Letterbox (or stretch, as ``spec.resize`` says) + scale into buffers allocated once:
    (H, W, 3) uint8 and (1, 3, H, W) float32.

    While the frame size stays the same, the border of the network input is already converted
    and only the image region is rescaled (at 16:9 that is ~55% of the input, 0.36 -> 0.16 ms at 416).
    """

    def __init__(self, spec: ModelSpec, network_input: np.ndarray | None = None) -> None:
        """``network_input``: a (1, 3, H, W) float32 buffer to write into (e.g. one slot of a batch)."""
        h, w = spec.input_size
        self.spec = spec
        self.letterboxed = np.empty((h, w, 3), np.uint8)
        if network_input is None:
            network_input = np.empty((1, 3, h, w), np.float32)
        elif network_input.shape != (1, 3, h, w) or network_input.dtype != np.float32:
            raise ValueError(
                f"Preprocessor: network_input must be (1, 3, {h}, {w}) float32, got {network_input.shape}"
            )
        self.network_input = network_input
        self._source_size: tuple[int, int] | None = None  # frame (h, w) the border was converted for
        self._region = (slice(0, h), slice(0, w))

    @property
    def image(self) -> np.ndarray:
        """The last frame letterboxed, image region only (no border): HxWx3 uint8 BGR, a view."""
        return self.letterboxed[self._region]

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, LetterboxTransform]:
        spec = self.spec
        same_size = image.shape[:2] == self._source_size
        _, transform = resize_for_spec(image, spec, out=self.letterboxed, fill_border=not same_size)
        rgb = spec.color_order == "RGB"
        if same_size:
            rows, cols = self._region
            out = self.network_input[:, :, rows, cols]
            to_network_input(self.letterboxed[rows, cols], spec.scale, rgb, out=out)
        else:
            to_network_input(self.letterboxed, spec.scale, rgb, out=self.network_input)
            self._region = image_region(transform, spec)
            self._source_size = transform.source_size
        return self.network_input, transform


class ImageSlot:
    """Letterbox (or stretch) one frame into a (H, W, 3) uint8 buffer, e.g. one image of a uint8
    batch for a backend with ``image_input``; scaling, channel order and layout are the backend's."""

    def __init__(self, spec: ModelSpec, letterboxed: np.ndarray | None = None) -> None:
        h, w = spec.input_size
        if letterboxed is None:
            letterboxed = np.empty((h, w, 3), np.uint8)
        elif letterboxed.shape != (h, w, 3) or letterboxed.dtype != np.uint8:
            raise ValueError(f"ImageSlot: letterboxed must be ({h}, {w}, 3) uint8, got {letterboxed.shape}")
        self.spec, self.letterboxed = spec, letterboxed
        self._source_size: tuple[int, int] | None = None
        self._region = (slice(0, h), slice(0, w))

    @property
    def image(self) -> np.ndarray:
        """The last frame letterboxed, image region only (no border): a view."""
        return self.letterboxed[self._region]

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, LetterboxTransform]:
        # The border stays from the last frame of the same size: only the image region is written.
        same_size = image.shape[:2] == self._source_size
        _, transform = resize_for_spec(image, self.spec, out=self.letterboxed, fill_border=not same_size)
        if not same_size:
            self._region = image_region(transform, self.spec)
            self._source_size = transform.source_size
        return self.letterboxed, transform


def image_region(transform: LetterboxTransform, spec: ModelSpec) -> tuple[slice, slice]:
    """(rows, cols) of the network input that hold the image (the rest is letterbox border)."""
    _, (new_h, new_w) = compute_transform(transform.source_size, spec.input_size, resize=spec.resize)
    top, left = int(transform.pad_y), int(transform.pad_x)
    return slice(top, top + new_h), slice(left, left + new_w)


class FrameBatcher:
    """Whole frame + tiles -> one (1 + T, 3, H, W) float32 batch, or with ``images`` one
    (1 + T, H, W, 3) uint8 batch of letterboxed BGR images (for ``Backend.infer_images``); the
    batch output -> one Detections.

    Buffers are allocated once per frame size (the tile plan depends on it). Slot 0 is always the
    whole frame; slot ``i`` is ``tiles[i - 1]``.

    Args:
        spec: the model's ModelSpec (input size, colour order, scale, pad value).
        tiles: what ``--tiles`` asked for.
        still: frames are still photos (``auto`` then covers the image with a grid).
        principal_point: the camera's (cx, cy) in frame pixels, for ``auto`` on video.
        images: build uint8 image batches (the backend has ``image_input``) instead of float ones.
    """

    def __init__(
        self,
        spec: ModelSpec,
        tiles: TileConfig | None = None,
        still: bool = False,
        principal_point: tuple[float, float] | None = None,
        images: bool = False,
    ) -> None:
        self.spec = spec
        self.config = tiles or TileConfig()
        self.still = still
        self.principal_point = principal_point
        self.images = images
        self.frame_hw: tuple[int, int] | None = None
        self.tiles: list[Tile] = []
        self._allocate(1)
        self._transforms: list[LetterboxTransform] = []

    def _allocate(self, size: int) -> None:
        h, w = self.spec.input_size
        self._slots: list[Preprocessor | ImageSlot]
        if self.images:
            self.batch = np.empty((size, h, w, 3), np.uint8)
            self._slots = [ImageSlot(self.spec, self.batch[i]) for i in range(size)]
        else:
            self.batch = np.empty((size, 3, h, w), np.float32)
            self._slots = [Preprocessor(self.spec, self.batch[i : i + 1]) for i in range(size)]

    @property
    def whole_image(self) -> np.ndarray:
        """The last whole frame letterboxed, image region only: HxWx3 uint8 BGR, a view (e.g. for
        the frame content checks, which need no second pass over the full-size frame)."""
        return self._slots[0].image

    def plan(self, frame_hw: tuple[int, int]) -> list[Tile]:
        """The tiles for frames of this (h, w); (re)allocates the batch when the plan changes."""
        if frame_hw != self.frame_hw:
            tiles = self.config.plan(frame_hw, self.spec.input_size, self.still, self.principal_point)
            if len(tiles) + 1 != self.batch.shape[0]:
                self._allocate(len(tiles) + 1)
            self.tiles, self.frame_hw = tiles, frame_hw
        return self.tiles

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 BGR frame -> the batch (a reused buffer: consume it before the next call)."""
        tiles = self.plan(image.shape[:2])
        _, whole = self._slots[0](image)
        self._transforms = [whole]
        for slot, tile in zip(self._slots[1:], tiles):
            _, transform = slot(tile.crop(image))
            self._transforms.append(transform)
        return self.batch

    def decode(self, raw: np.ndarray, conf: float, iou: float, nms_done: bool = False) -> Detections:
        """Backend output for the last batch (1 + T, N, 5 + nc) -> Detections in frame pixels."""
        if raw.ndim != 3 or raw.shape[0] != len(self._transforms):
            raise ValueError(
                f"FrameBatcher.decode: output shape {raw.shape} does not hold {len(self._transforms)} "
                "images (the whole frame and its tiles)"
            )
        whole = decode_yolov5(raw[0], conf, iou, self._transforms[0], nms_done=nms_done)
        if not self.tiles:
            return whole
        assert self.frame_hw is not None
        parts = [whole]
        for index, tile in enumerate(self.tiles, start=1):
            found = decode_yolov5(raw[index], conf, iou, self._transforms[index], nms_done=nms_done)
            parts.append(tile_to_frame(found, tile, self.frame_hw))
        return merge(parts, iou)
