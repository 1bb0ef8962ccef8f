"""A restricted reader for official YOLOv5 ``.pt`` checkpoints (v5.0 to v7.0) that runs no code.

YOLOv5 pickles whole modules (``models.yolo.DetectionModel``, ``models.common.C3``, torch.nn
layers). A checkpoint is untrusted input, so this reader never imports those classes and never
calls ``torch.load``: it opens the zip archive, unpickles ``data.pkl`` with an allow-list, maps
every YOLOv5 and torch.nn class to an inert :class:`InertObject` that only records its attribute
dict, rebuilds tensors from the archive's raw storages, and refuses any other global with an
error naming it. Nothing in the pickle can call ``os.system`` or any other function.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The checkpoint refers to something outside the allow-list (or is not a torch zip file)."""


class InertObject:
    """Stand-in for a pickled class: keeps the qualified name and the attribute dict, nothing else."""

    qualified_name = "?"
    state: dict[str, Any]

    def __new__(cls, *args: Any, **kwargs: Any) -> InertObject:
        instance = super().__new__(cls)
        instance.state = {}
        return instance

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass  # arguments are ignored: nothing a pickle passes is ever executed

    def __setstate__(self, state: Any) -> None:
        # Objects pickled with __slots__ send (dict, slots); both halves are plain data here.
        if isinstance(state, tuple) and len(state) == 2:
            merged = dict(state[0] or {})
            merged.update(state[1] or {})
            state = merged
        self.state = dict(state) if isinstance(state, dict) else {"_state": state}

    def __repr__(self) -> str:
        return f"<inert {self.qualified_name}>"


_INERT_CLASSES: dict[str, type[InertObject]] = {}


def _inert_class(qualified_name: str) -> type[InertObject]:
    if qualified_name not in _INERT_CLASSES:
        _INERT_CLASSES[qualified_name] = type(
            "Inert_" + qualified_name.replace(".", "_"), (InertObject,), {"qualified_name": qualified_name}
        )
    return _INERT_CLASSES[qualified_name]


# Module prefixes whose classes become inert placeholders (YOLOv5's own code and torch.nn layers).
_INERT_MODULE_PREFIXES = ("models.yolo", "models.common", "models.experimental", "torch.nn.modules.")


class _StorageType:
    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "DoubleStorage": torch.float64,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "UntypedStorage": torch.uint8,
}
_TORCH_DTYPES = {
    name: getattr(torch, name)
    for name in (
        "float32",
        "float16",
        "float64",
        "bfloat16",
        "int64",
        "int32",
        "int16",
        "int8",
        "uint8",
        "bool",
    )
}


def _rebuild_tensor(storage: torch.Tensor, offset: int, size: tuple, stride: tuple, *_: Any) -> torch.Tensor:
    return torch.as_strided(storage, tuple(size), tuple(stride), offset).clone()


def _rebuild_parameter(data: torch.Tensor, *_: Any) -> torch.Tensor:
    return data


def _numpy_scalar(dtype: np.dtype, data: bytes | None = None) -> Any:
    return np.frombuffer(data or b"", dtype=dtype)[0].item() if data else dtype.type(0).item()


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    # Protocol 2 pickles bytes as _codecs.encode(str, "latin1"); nothing else is accepted.
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafeCheckpointError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _path_as_string(*parts: Any) -> str:
    return str(Path(*[str(p) for p in parts]))


_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("__builtin__", "set"): set,  # protocol 2 writes Python 2 module names
    ("__builtin__", "frozenset"): frozenset,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("_codecs", "encode"): _latin1_bytes,
    ("pathlib", "PosixPath"): _path_as_string,
    ("pathlib", "WindowsPath"): _path_as_string,
    ("pathlib", "Path"): _path_as_string,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(
        self, data: bytes, load_storage: Callable[[str, torch.dtype, int], torch.Tensor], source: str
    ):
        super().__init__(io.BytesIO(data))
        self._load_storage = load_storage
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module == "torch" and name in _TORCH_DTYPES:
            return _TORCH_DTYPES[name]
        if module.startswith(_INERT_MODULE_PREFIXES) and name[:1].isupper():
            return _inert_class(f"{module}.{name}")
        raise UnsafeCheckpointError(
            f"{self._source}: refusing to load '{module}.{name}': a checkpoint may only hold tensors, "
            "YOLOv5/torch.nn modules and plain data (this file could run code when unpickled)"
        )

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise UnsafeCheckpointError(f"{self._source}: unexpected persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid[:5]
        dtype = storage_type.dtype if isinstance(storage_type, _StorageType) else torch.uint8
        return self._load_storage(str(key), dtype, int(numel))


def read_yolov5_checkpoint(path: str | Path) -> dict[str, Any]:
    """Unpickle a torch zip checkpoint with the allow-list above; returns the top-level dict."""
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise UnsafeCheckpointError(f"{path}: no such file") from None
    except zipfile.BadZipFile:
        raise UnsafeCheckpointError(
            f"{path}: not a PyTorch zip checkpoint (legacy pre-1.6 pickles and other formats are not supported)"
        ) from None
    with archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise UnsafeCheckpointError(f"{path}: expected one data.pkl in the archive, found {len(pickles)}")
        prefix = pickles[0][: -len("data.pkl")]
        cache: dict[str, torch.Tensor] = {}

        def load_storage(key: str, dtype: torch.dtype, numel: int) -> torch.Tensor:
            if key not in cache:
                raw = bytearray(archive.read(f"{prefix}data/{key}"))
                flat = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
                if flat.numel() < numel:
                    raise UnsafeCheckpointError(f"{path}: storage {key} is truncated")
                cache[key] = flat
            return cache[key]

        result = _RestrictedUnpickler(archive.read(pickles[0]), load_storage, str(path)).load()
    if not isinstance(result, dict):
        raise UnsafeCheckpointError(f"{path}: expected a dict at the top level, got {type(result).__name__}")
    return result


def inert_state_dict(root: InertObject, prefix: str = "") -> dict[str, torch.Tensor]:
    """The state dict an ``nn.Module`` tree would produce, walked off inert placeholders."""
    out: dict[str, torch.Tensor] = {}
    state = root.state
    for name, tensor in (state.get("_parameters") or {}).items():
        if tensor is not None:
            out[prefix + name] = tensor
    skip = set(state.get("_non_persistent_buffers_set") or ())
    for name, tensor in (state.get("_buffers") or {}).items():
        if tensor is not None and name not in skip:
            out[prefix + name] = tensor
    for name, child in (state.get("_modules") or {}).items():
        if isinstance(child, InertObject):
            out.update(inert_state_dict(child, f"{prefix}{name}."))
    return out
