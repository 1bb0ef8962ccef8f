"""Darknet ``.weights`` files: read, write, and copy into / out of a :class:`DarknetModel`.

Layout (little-endian)::

    int32 major, int32 minor, int32 revision
    seen: images seen in training, uint64 when major * 10 + minor >= 2, else uint32
    then, for every [convolutional] layer in cfg order, float32:
        with batch_normalize: bias (beta)[n], scale (gamma)[n], rolling mean[n], rolling variance[n]
        without:              bias[n]
        weights[n x c/groups x size x size]   (the same order as a torch Conv2d weight)

A file that holds fewer or more floats than the cfg needs is an error naming both sizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from stopsign.edge.model.artifacts import atomic_write_bytes
from stopsign.train.darknet.model import DarknetModel


class DarknetWeightsError(ValueError):
    """A ``.weights`` file does not fit its cfg or is not a Darknet weights file."""


@dataclass(frozen=True)
class WeightsHeader:
    major: int = 0
    minor: int = 2
    revision: int = 5
    seen: int = 0

    @property
    def seen_is_64bit(self) -> bool:
        return self.major * 10 + self.minor >= 2 and self.major < 1000 and self.minor < 1000

    @property
    def nbytes(self) -> int:
        return 12 + (8 if self.seen_is_64bit else 4)

    def to_bytes(self) -> bytes:
        head = np.array([self.major, self.minor, self.revision], dtype="<i4").tobytes()
        seen = np.array([self.seen], dtype="<u8" if self.seen_is_64bit else "<u4").tobytes()
        return head + seen


@dataclass(frozen=True)
class WeightsFile:
    """A parsed ``.weights`` file: header, the whole float32 values after it, and its size in bytes."""

    header: WeightsHeader
    values: np.ndarray
    nbytes: int


def parse_weights(data: bytes, source: str = "<weights>") -> WeightsFile:
    """Header and float32 payload of a ``.weights`` file's bytes (a torn last float is dropped
    here and reported by the size check of :func:`load_weights_into`)."""
    if len(data) < 16:
        raise DarknetWeightsError(f"{source}: {len(data)} bytes, too short for a Darknet weights header")
    major, minor, revision = (int(v) for v in np.frombuffer(data, dtype="<i4", count=3))
    header = WeightsHeader(major, minor, revision, 0)
    if len(data) < header.nbytes:
        raise DarknetWeightsError(f"{source}: {len(data)} bytes, too short for a Darknet weights header")
    dtype = "<u8" if header.seen_is_64bit else "<u4"
    seen = int(np.frombuffer(data, dtype=dtype, count=1, offset=12)[0])
    header = WeightsHeader(major, minor, revision, seen)
    payload = data[header.nbytes :]
    whole = len(payload) // 4 * 4
    return WeightsFile(header, np.frombuffer(payload[:whole], dtype="<f4").astype(np.float32), len(data))


def read_weights(path: str | Path) -> WeightsFile:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DarknetWeightsError(f"{path}: cannot read ({exc.strerror})") from None
    return parse_weights(data, str(path))


def _conv_tensors(model: DarknetModel) -> list[tuple[int, list[torch.Tensor]]]:
    """Per conv layer, the tensors in file order (views into the model's parameters/buffers)."""
    out = []
    for index, layer in model.conv_layers():
        conv, bn = layer.conv, layer.bn
        if isinstance(bn, nn.BatchNorm2d):
            tensors = [bn.bias, bn.weight, bn.running_mean, bn.running_var, conv.weight]
        else:
            assert conv.bias is not None, "a fused model has no Darknet file layout; export the unfused one"
            tensors = [conv.bias, conv.weight]
        out.append((index, tensors))
    return out


def expected_floats(model: DarknetModel) -> int:
    return sum(t.numel() for _, tensors in _conv_tensors(model) for t in tensors)


@torch.no_grad()
def load_weights_into(model: DarknetModel, weights: WeightsFile, source: str) -> None:
    """Copy a ``.weights`` payload into ``model``; the size must match the cfg exactly."""
    need = expected_floats(model)
    need_bytes = weights.header.nbytes + 4 * need
    if weights.nbytes != need_bytes:
        what = "truncated" if weights.nbytes < need_bytes else "longer than the cfg needs"
        raise DarknetWeightsError(
            f"{source}: {weights.nbytes} bytes but {model.cfg.source} needs {need_bytes} bytes "
            f"({weights.header.nbytes}-byte header + {need} float32): the file is {what}, "
            "or is for another cfg / classes"
        )
    values = weights.values
    offset = 0
    for _, tensors in _conv_tensors(model):
        for tensor in tensors:
            n = tensor.numel()
            tensor.copy_(torch.from_numpy(values[offset : offset + n].reshape(tensor.shape)))
            offset += n


def load_darknet_weights(model: DarknetModel, path: str | Path) -> WeightsHeader:
    weights = read_weights(path)
    load_weights_into(model, weights, str(path))
    return weights.header


@torch.no_grad()
def weights_bytes(model: DarknetModel, header: WeightsHeader | None = None) -> bytes:
    """The ``.weights`` bytes of ``model`` (unfused: batch-norm layers keep their four vectors)."""
    header = header or WeightsHeader()
    parts = [header.to_bytes()]
    for _, tensors in _conv_tensors(model):
        for tensor in tensors:
            parts.append(tensor.detach().float().cpu().contiguous().numpy().astype("<f4").tobytes())
    return b"".join(parts)


def save_darknet_weights(model: DarknetModel, path: str | Path, header: WeightsHeader | None = None) -> Path:
    """Write ``model`` as a Darknet ``.weights`` file (atomically)."""
    return atomic_write_bytes(path, weights_bytes(model, header))
