"""stopsign.edge: the vehicle runtime (numpy + OpenCV only; everything else imported lazily).

Grouped by purpose (``docs/architecture.md`` draws it from the real imports):

- ``model/``: what a model file is (ModelSpec, ONNX metadata, sidecars, artifacts);
- ``vision/``: how a frame becomes boxes (letterbox, preprocess, tiles, decode + NMS, Detections);
- ``backends/``: inference behind one interface; ``sources/``: frames by URI;
- ``tracking/``: temporal smoothing into events; ``runtime/``: the loop, events, health;
- ``sinks/``: the outputs, one module each; ``replay/``: recorded drives and regression checks;
- ``rosmsg/``: ROS 2 message types for bags in and out (the ``ros`` extra);
- ``cli/``: the console scripts, the only layer that knows all of the above.

Shared contracts used by training and export too:

- :class:`~stopsign.edge.model.spec.ModelSpec`: what a model expects and produces (JSON on disk).
- :class:`~stopsign.edge.vision.detections.Detections`: validated boxes, scores and class ids.
- :mod:`~stopsign.edge.vision.letterbox`: the one definition of the model's input preprocessing.
- :mod:`~stopsign.edge.vision.postprocess`: decode of the YOLOv5 head and class-aware NMS.
"""

from __future__ import annotations

from stopsign.edge import _moved
from stopsign.edge.model.spec import ModelSpec, ModelSpecError
from stopsign.edge.vision.detections import Detections

_moved.install()

__all__ = ["Detections", "ModelSpec", "ModelSpecError"]
