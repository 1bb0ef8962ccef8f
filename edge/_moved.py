"""Old import paths of modules that moved into ``model/``, ``vision/``, ``runtime/``, ``replay/`` and
``cli/``: each still imports, as the very module at its new path, with one FutureWarning.

Installed by ``stopsign.edge.__init__`` as a finder that answers only for the names below, so
``import stopsign.edge.spec`` and ``from stopsign.edge.spec import ModelSpec`` keep working
(and ``monkeypatch`` on either name patches the same module).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

_PREFIX = "stopsign.edge."
MOVED: dict[str, str] = {
    "spec": "model.spec",
    "onnx_meta": "model.onnx_meta",
    "engine_sidecar": "model.engine_sidecar",
    "artifacts": "model.artifacts",
    "openvino_ir": "model.openvino_ir",
    "qdq_unsigned": "model.qdq_unsigned",
    "gpu_info": "model.gpu_info",
    "frame": "vision.frame",
    "letterbox": "vision.letterbox",
    "preprocess": "vision.preprocess",
    "tiles": "vision.tiles",
    "postprocess": "vision.postprocess",
    "detections": "vision.detections",
    "metrics": "vision.metrics",
    "pipeline": "runtime.loop",
    "events": "runtime.events",
    "health": "runtime.health",
    "sdnotify": "runtime.sdnotify",
    "recorder": "replay.recorder",
    "benchmark": "cli.benchmark",
    "demo": "cli.demo",
}


class _Alias(importlib.abc.Loader):
    def __init__(self, new_name: str) -> None:
        self.new_name = new_name
        self._original_spec: importlib.machinery.ModuleSpec | None = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        warnings.warn(
            f"{spec.name} moved to {self.new_name}; the old path will be removed in a later release",
            FutureWarning,
            stacklevel=2,
        )
        module = importlib.import_module(self.new_name)
        self._original_spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # The import machinery stamped the old name's spec on the module: give it back its own.
        module.__spec__ = self._original_spec


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Finds ``stopsign.edge.<old>`` for the moved modules only; every other name is left alone."""

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith(_PREFIX):
            return None
        new = MOVED.get(fullname[len(_PREFIX) :])
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _Alias(_PREFIX + new))


def install() -> None:
    """Adds the finder once (idempotent: a reload of ``stopsign.edge`` does not add a second)."""
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
