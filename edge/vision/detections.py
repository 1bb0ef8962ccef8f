"""The ``Detections`` container: boxes, scores and class ids of one frame, validated on construction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


class DetectionsError(ValueError):
    """Raised when arrays given to :class:`Detections` have the wrong shape, dtype or values."""


@dataclass(frozen=True)
class Detections:
    """Detections of one frame.

    Attributes:
        xyxy: float32 array of shape (n, 4): x1, y1, x2, y2 in source-frame pixels, x2 >= x1, y2 >= y1.
        score: float32 array of shape (n,), confidence in [0, 1].
        class_id: int32 array of shape (n,), index into ``ModelSpec.class_names``.
    """

    xyxy: np.ndarray
    score: np.ndarray
    class_id: np.ndarray

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy, dtype=np.float32)
        score = np.asarray(self.score, dtype=np.float32)
        class_id = np.asarray(self.class_id)
        if xyxy.size == 0:
            xyxy = xyxy.reshape(0, 4)
        if xyxy.ndim != 2 or xyxy.shape[1] != 4:
            raise DetectionsError(f"xyxy must have shape (n, 4), got {xyxy.shape}")
        n = xyxy.shape[0]
        if score.shape != (n,):
            raise DetectionsError(f"score must have shape ({n},) to match xyxy, got {score.shape}")
        if class_id.shape != (n,):
            raise DetectionsError(f"class_id must have shape ({n},) to match xyxy, got {class_id.shape}")
        if n and not np.issubdtype(class_id.dtype, np.integer) and not np.all(np.mod(class_id, 1) == 0):
            raise DetectionsError("class_id must hold integers")
        class_id = class_id.astype(np.int32, copy=False)
        if n:
            if not np.isfinite(xyxy).all():
                raise DetectionsError("xyxy holds NaN or infinite values")
            if not np.isfinite(score).all():
                raise DetectionsError("score holds NaN or infinite values")
            if (xyxy[:, 2] < xyxy[:, 0]).any() or (xyxy[:, 3] < xyxy[:, 1]).any():
                raise DetectionsError("xyxy has boxes with x2 < x1 or y2 < y1")
            if (class_id < 0).any():
                raise DetectionsError("class_id has negative values")
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "score", score)
        object.__setattr__(self, "class_id", class_id)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.int32))

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    def __getitem__(self, index: Any) -> Detections:
        """Select by boolean mask, index array or slice (always returns ``Detections``)."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return Detections(self.xyxy[index], self.score[index], self.class_id[index])

    @property
    def height(self) -> np.ndarray:
        return self.xyxy[:, 3] - self.xyxy[:, 1]

    @property
    def area(self) -> np.ndarray:
        return (self.xyxy[:, 2] - self.xyxy[:, 0]) * (self.xyxy[:, 3] - self.xyxy[:, 1])

    def above(self, threshold: float) -> Detections:
        return self[self.score >= threshold]

    def to_records(self, class_names: Sequence[str]) -> list[dict[str, Any]]:
        """JSON-ready list: ``[{"xyxy": [x1, y1, x2, y2], "score": s, "class": name}, ...]``."""
        return [
            {
                "xyxy": [round(float(v), 2) for v in box],
                "score": round(float(s), 5),
                "class": class_names[c] if c < len(class_names) else str(int(c)),
            }
            for box, s, c in zip(self.xyxy, self.score, self.class_id)
        ]
