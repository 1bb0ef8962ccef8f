"""TensorRT calibration cache binding (plain Python): reuse only for the same model, else a clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stopsign.calibration.cache import CacheBinding, check_cache, load_cache, sidecar_path, write_cache
from stopsign.calibration.cli import main
from stopsign.calibration.errors import StaleCacheError
from stopsign.edge.model.artifacts import sha256_file

BINDING = CacheBinding(model_sha256="a" * 64, algorithm="entropy2", input_size=(160, 160), n_images=16)
PAYLOAD = b"TRT-100100-EntropyCalibration2\nimages: 3c010a14\n"


def test_roundtrip(tmp_path: Path) -> None:
    cache = write_cache(tmp_path / "m.calib", PAYLOAD, BINDING)
    assert load_cache(cache, BINDING) == PAYLOAD
    assert json.loads(sidecar_path(cache).read_text())["model_sha256"] == "a" * 64


def test_absent_cache_means_calibrate(tmp_path: Path) -> None:
    assert load_cache(tmp_path / "none.calib", BINDING) is None
    assert load_cache(None, BINDING) is None


@pytest.mark.parametrize(
    ("expected", "tamper", "match"),
    [
        (
            CacheBinding("b" * 64, "entropy2", (160, 160)),
            None,
            r"computed for model sha256 aaaaaaaaaaaaaaaa\.\.\., this model is bbbb",
        ),
        (CacheBinding("a" * 64, "minmax", (160, 160)), None, r"algorithm 'entropy2', asked 'minmax'"),
        (
            CacheBinding("a" * 64, "entropy2", (320, 320)),
            None,
            r"input size \[160, 160\], model takes \[320, 320\]",
        ),
        (BINDING, "bytes", r"bytes no longer match the sha256"),
        (BINDING, "no_sidecar", r"has no sidecar m\.calib\.json"),
        (BINDING, "bad_sidecar", r"unreadable calibration-cache sidecar"),
    ],
)
def test_stale_cache_refused(tmp_path: Path, expected: CacheBinding, tamper: str | None, match: str) -> None:
    cache = write_cache(tmp_path / "m.calib", PAYLOAD, BINDING)
    if tamper == "bytes":
        cache.write_bytes(PAYLOAD[:-4])
    elif tamper == "no_sidecar":
        sidecar_path(cache).unlink()
    elif tamper == "bad_sidecar":
        sidecar_path(cache).write_text("{not json")
    with pytest.raises(StaleCacheError, match=match):
        check_cache(cache, expected)


def test_cli_info_checks_model(fp32_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = CacheBinding(sha256_file(fp32_model), "minmax", (160, 160))
    cache = write_cache(tmp_path / "m.calib", PAYLOAD, good)
    assert main(["legacy-cache", "info", str(cache), "--model", str(fp32_model)]) == 0
    assert "valid for" in capsys.readouterr().out
    other = write_cache(tmp_path / "other.calib", PAYLOAD, BINDING)
    assert main(["legacy-cache", "info", str(other), "--model", str(fp32_model)]) == 2
    assert "stale calibration cache" in capsys.readouterr().err
