"""stopsign.edge: the vehicle runtime (numpy + OpenCV only; everything else imported lazily).

Shared contracts used by training and export too:

- :class:`~stopsign.edge.spec.ModelSpec`: what a model expects and produces (JSON on disk).
- :class:`~stopsign.edge.detections.Detections`: validated boxes, scores and class ids.
- :mod:`~stopsign.edge.letterbox`: the one definition of the model's input preprocessing.
- :mod:`~stopsign.edge.postprocess`: decode of the YOLOv5 head and class-aware NMS.
"""

from __future__ import annotations

from stopsign.edge.detections import Detections
from stopsign.edge.spec import ModelSpec, ModelSpecError

__all__ = ["Detections", "ModelSpec", "ModelSpecError"]
