"""The inference path: "detections for this frame", chosen once at start-up from what the backend can do.

- :class:`HostBatchPath`: the host letterboxes the whole frame (and its high-resolution tiles)
  into one reused batch, the backend runs it (float input, or uint8 images it converts inside
  the model), and the host decodes and merges the boxes;
- :class:`DeviceFramePath`: the backend takes the whole frame and does letterbox, model and NMS
  on the device in one call (a TensorRT frame path); tiles need the host path.

Both sit behind :class:`InferencePath`, so the loop has no branch on backend capabilities. The
:class:`BackendSupervisor` under them counts failures and re-initialises a failing backend.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

import numpy as np

from stopsign.edge.backends.base import Backend
from stopsign.edge.model.spec import ModelSpec
from stopsign.edge.runtime.events import EventChannel
from stopsign.edge.vision.detections import Detections
from stopsign.edge.vision.frame import Frame
from stopsign.edge.vision.preprocess import FrameBatcher
from stopsign.edge.vision.tiles import Tile, TileConfig

T = TypeVar("T")


class FatalBackendError(RuntimeError):
    """The backend kept failing and re-initialising it did not help; the run must end."""


class BackendSupervisor:
    """Runs inference; counts failures; re-initialises the backend after too many in a row.

    ``factory`` builds and loads a fresh backend. A failure of the factory, or as many failures
    again right after a re-initialisation, raises :class:`FatalBackendError`.
    """

    def __init__(
        self, backend: Backend, factory: Callable[[], Backend], max_failures: int, channel: EventChannel
    ) -> None:
        self.backend, self._factory, self._max, self._channel = backend, factory, max_failures, channel
        self.consecutive = 0
        self.total_failures = 0
        self.reinits = 0
        self._fresh = False  # re-initialised and not yet succeeded

    @property
    def frame_path(self) -> bool:
        """The current backend takes whole frames (see ``Backend.frame_path``)."""
        return self.backend.frame_path

    @property
    def output_suppressed(self) -> bool:
        """The current backend's output has been through NMS already (``Backend.output_suppressed``)."""
        return self.backend.output_suppressed

    @property
    def image_input(self) -> bool:
        """The current backend takes uint8 images (see ``Backend.image_input``)."""
        return self.backend.image_input

    def infer(self, batch: np.ndarray) -> np.ndarray | None:
        """Raw model output, or None after a failure (counted; may re-initialise the backend)."""
        return self._guarded(lambda: self.backend.infer(batch))

    def infer_images(self, images: np.ndarray) -> np.ndarray | None:
        """As :meth:`infer`, for a batch of letterboxed uint8 images."""
        return self._guarded(lambda: self.backend.infer_images(images))

    def detect(self, image: np.ndarray, conf: float, iou: float) -> Detections | None:
        """Final detections of a whole frame (frame-path backends), or None after a failure."""
        return self._guarded(lambda: self.backend.detect(image, conf, iou))

    def _guarded(self, call: Callable[[], T]) -> T | None:
        try:
            result = call()
        except Exception as exc:  # CUDA / ONNX Runtime / TensorRT raise their own types
            self._failed(exc)
            return None
        self.consecutive, self._fresh = 0, False
        return result

    def _failed(self, exc: Exception) -> None:
        self.consecutive += 1
        self.total_failures += 1
        message = f"{type(exc).__name__}: {exc}".strip()
        self._channel.emit(
            "backend_error",
            {"backend": self.backend.name, "error": message[:500], "consecutive": self.consecutive},
        )
        if self.consecutive < self._max:
            return
        if self._fresh:
            raise FatalBackendError(
                f"backend {self.backend.name} failed {self.consecutive} times in a row after "
                f"re-initialisation: {message}"
            )
        self._channel.emit(
            "backend_reinit", {"backend": self.backend.name, "after_failures": self.consecutive}
        )
        try:
            self.backend.close()
            self.backend = self._factory()
        except Exception as reinit_exc:  # whatever the runtime raises, the run ends with its message
            raise FatalBackendError(
                f"backend {self.backend.name} could not be re-initialised after {self.consecutive} "
                f"failures ({message}): {type(reinit_exc).__name__}: {reinit_exc}"
            ) from reinit_exc
        self.reinits += 1
        self.consecutive, self._fresh = 0, True


class InferencePath(Protocol):
    """Detections for one frame, in two steps so the frame's content checks can sit between them."""

    description: str

    def prepare(self, frame: Frame) -> list[Tile] | None:
        """Stage the frame; returns the tile plan when it was (re)made for this frame, else None."""
        ...

    @property
    def content(self) -> np.ndarray | None:
        """The staged frame letterboxed (HxWx3 uint8 BGR view) for the content checks, or None
        when the path stages nothing (the checks then read the frame itself)."""
        ...

    def detect(self, frame: Frame, clock: Callable[[], int]) -> tuple[Detections | None, int]:
        """(detections in frame pixels or None after a backend failure, clock reading when the
        model finished: what follows it is decode + NMS)."""
        ...


class HostBatchPath:
    """Whole frame + tiles letterboxed by the host into one batch; decode + NMS + merge on the host."""

    def __init__(self, supervisor: BackendSupervisor, batcher: FrameBatcher, conf: float, iou: float) -> None:
        self.batcher, self._conf, self._iou = batcher, conf, iou
        # Chosen once: a re-initialised backend comes from the same factory, so it can do the same.
        self._run = supervisor.infer_images if batcher.images else supervisor.infer
        self._nms_done = supervisor.output_suppressed
        self._batch: np.ndarray | None = None
        kind = "uint8 images, converted in the model" if batcher.images else "float32 tensors"
        self.description = f"host batch ({kind})"

    def prepare(self, frame: Frame) -> list[Tile] | None:
        planned_for = self.batcher.frame_hw
        self._batch = self.batcher(frame.image)
        replanned = self.batcher.frame_hw != planned_for and self.batcher.config.enabled
        return self.batcher.tiles if replanned else None

    @property
    def content(self) -> np.ndarray | None:
        return self.batcher.whole_image

    def detect(self, frame: Frame, clock: Callable[[], int]) -> tuple[Detections | None, int]:
        assert self._batch is not None, "prepare() stages the frame first"
        raw = self._run(self._batch)
        inferred = clock()
        if raw is None:
            return None, inferred
        return self.batcher.decode(raw, self._conf, self._iou, nms_done=self._nms_done), inferred


class DeviceFramePath:
    """The whole frame to the backend: letterbox, model and NMS in one device call (all of it
    counts as inference)."""

    description = "device frame path (letterbox, model and NMS on the device)"

    def __init__(self, supervisor: BackendSupervisor, conf: float, iou: float) -> None:
        self._supervisor, self._conf, self._iou = supervisor, conf, iou

    def prepare(self, frame: Frame) -> list[Tile] | None:
        return None

    @property
    def content(self) -> np.ndarray | None:
        return None

    def detect(self, frame: Frame, clock: Callable[[], int]) -> tuple[Detections | None, int]:
        detections = self._supervisor.detect(frame.image, self._conf, self._iou)
        return detections, clock()


def choose_inference_path(
    supervisor: BackendSupervisor,
    spec: ModelSpec,
    tiles: TileConfig,
    still: bool,
    principal_point: tuple[float, float] | None,
    conf: float,
    iou: float,
) -> InferencePath:
    """The device frame path when the backend has one and no tiles are asked for (the device path
    takes one whole frame); otherwise the host batch path, with uint8 images when the backend
    converts them inside the model."""
    if supervisor.frame_path and not tiles.enabled:
        return DeviceFramePath(supervisor, conf, iou)
    batcher = FrameBatcher(spec, tiles, still, principal_point, images=supervisor.image_input)
    return HostBatchPath(supervisor, batcher, conf, iou)
