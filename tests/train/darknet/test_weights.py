"""Darknet .weights I/O: header versions, exact sizes, round trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from stopsign.train.darknet.model import DarknetModel
from stopsign.train.darknet.weights import (
    DarknetWeightsError,
    WeightsHeader,
    expected_floats,
    load_darknet_weights,
    parse_weights,
    weights_bytes,
)
from tests.train.darknet.helpers import write_darknet_files


@pytest.mark.parametrize(("major", "minor", "seen_bytes"), [(0, 1, 4), (0, 2, 8), (1, 0, 8), (0, 0, 4)])
def test_seen_is_int32_or_int64_by_version(major: int, minor: int, seen_bytes: int) -> None:
    header = WeightsHeader(major, minor, 5, 3_000_000_000 if seen_bytes == 8 else 123)
    data = header.to_bytes() + np.arange(3, dtype="<f4").tobytes()
    assert len(data) == 12 + seen_bytes + 12
    parsed = parse_weights(data)
    assert parsed.header == header and parsed.nbytes == len(data)
    assert parsed.values.tolist() == [0.0, 1.0, 2.0]


def test_round_trip_through_a_file(tmp_path: Path) -> None:
    cfg, weights, model = write_darknet_files(tmp_path, "yolov3-tiny", nc=1, size=64, seed=3)
    fresh = DarknetModel(cfg).eval()
    header = load_darknet_weights(fresh, weights)
    assert header.seen == 12345 and header.seen_is_64bit
    for (key, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        if not key.endswith("num_batches_tracked"):  # a training counter, not in the file
            assert torch.equal(a, b), key
    assert weights_bytes(fresh, header) == weights.read_bytes()
    assert weights.stat().st_size == 20 + 4 * expected_floats(model)


def test_truncated_weights_name_both_sizes(tmp_path: Path) -> None:
    cfg, weights, _ = write_darknet_files(tmp_path, "yolov4-tiny", nc=1, size=64)
    full = weights.read_bytes()
    weights.write_bytes(full[:-400])
    need = len(full)
    with pytest.raises(
        DarknetWeightsError, match=rf"{len(full) - 400} bytes .* needs {need} bytes .*truncated"
    ):
        load_darknet_weights(DarknetModel(cfg), weights)


def test_longer_weights_name_both_sizes(tmp_path: Path) -> None:
    cfg, weights, _ = write_darknet_files(tmp_path, "yolov4-tiny", nc=1, size=64)
    full = weights.read_bytes()
    weights.write_bytes(full + b"\0" * 8)
    with pytest.raises(
        DarknetWeightsError, match=rf"{len(full) + 8} bytes .* needs {len(full)} bytes .*longer"
    ):
        load_darknet_weights(DarknetModel(cfg), weights)


def test_weights_for_other_classes_are_refused(tmp_path: Path) -> None:
    cfg, weights, _ = write_darknet_files(tmp_path, "yolov4-tiny", nc=1, size=64)
    with pytest.raises(DarknetWeightsError, match="another cfg / classes"):
        load_darknet_weights(DarknetModel(cfg, nc=3), weights)


def test_garbage_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DarknetWeightsError, match="too short"):
        parse_weights(b"\0" * 10, "x.weights")
    torn = parse_weights(WeightsHeader().to_bytes() + b"\0" * 6, "x.weights")
    assert torn.values.size == 1 and torn.nbytes == 26
