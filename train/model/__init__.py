"""YOLOv5 model built from YAML, with YOLOv5-compatible state-dict keys."""

from stopsign.train.model.yolo import ModelConfigError, YoloModel, build_model, resolve_cfg

__all__ = ["ModelConfigError", "YoloModel", "build_model", "resolve_cfg"]
