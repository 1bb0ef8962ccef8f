"""Inference backends behind one interface (``base.Backend``, with ``is_available()``):
TensorRT, OpenVINO, ONNX Runtime and torch; ``auto`` picks the best one present and says why.

Backends import neither sources, sinks, the runtime nor the CLI (a contract CI checks): they turn
a batch into raw model output (or a whole frame into detections) and nothing else.
"""
