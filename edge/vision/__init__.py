"""How a frame becomes boxes, on the host: the one definition shared by training, export and the car.

- ``frame``: :class:`Frame`, one image with its index and timestamps;
- ``letterbox``, ``preprocess``: frame -> network input, in buffers made once;
- ``tiles``: high-resolution tiles where far signs appear, batched with the whole frame;
- ``postprocess``: decode of the YOLOv5 head and class-aware NMS;
- ``detections``: :class:`Detections`, validated boxes in frame pixels;
- ``metrics``: COCO-style matching and AP, shared by training validation and drive replay.

Depends on ``stopsign.edge.model`` and numpy/OpenCV only.
"""
