"""edge-export dynamic-batch: the same model with a symbolic batch axis; engine --batch needs one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from stopsign.edge.model.onnx_meta import read_spec_from_onnx
from stopsign.export.cli import check_batch_fits, main
from stopsign.export.dynamic_batch import make_batch_dynamic
from stopsign.export.engine_plan import EngineBuildError, inspect_onnx

SHIPPED = Path(__file__).resolve().parents[2] / "edge" / "assets"


def run(path: Path, batch: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: batch})[0]


@pytest.mark.parametrize("name", ["stopsign.onnx", "stopsign.int8.onnx"])
def test_shipped_models_have_a_dynamic_batch(name: str) -> None:
    assert inspect_onnx(SHIPPED / name).dynamic_batch


def test_a_fixed_batch_export_batches_exactly(
    fp32_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "dyn.onnx"
    assert main(["dynamic-batch", str(fp32_onnx), "--out", str(out)]) == 0
    assert "batch axis: dynamic" in capsys.readouterr().out
    assert inspect_onnx(out).dynamic_batch and not inspect_onnx(fp32_onnx).dynamic_batch
    assert read_spec_from_onnx(out) == read_spec_from_onnx(fp32_onnx)
    batch = np.random.default_rng(0).random(
        (3, 3, *read_spec_from_onnx(fp32_onnx).input_size), dtype=np.float32
    )
    together = run(out, batch)
    alone = np.concatenate([run(fp32_onnx, batch[i : i + 1]) for i in range(3)])
    np.testing.assert_array_equal(together, alone)


@pytest.mark.parametrize("name", ["stopsign.onnx", "stopsign.int8.onnx"])
def test_shipped_models_give_each_image_of_a_batch_what_it_gives_alone(name: str) -> None:
    path = SHIPPED / name
    batch = np.random.default_rng(0).random((3, 3, 416, 416), dtype=np.float32)
    together = run(path, batch)
    alone = np.concatenate([run(path, batch[i : i + 1]) for i in range(3)])
    np.testing.assert_array_equal(together, alone)


def test_an_already_dynamic_model_is_unchanged_in_behaviour(fp32_onnx: Path) -> None:
    model = onnx.load(str(fp32_onnx))
    twice = make_batch_dynamic(make_batch_dynamic(model))
    dims = twice.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch"


def test_a_model_with_another_fixed_batch_is_refused(fp32_onnx: Path) -> None:
    model = onnx.load(str(fp32_onnx))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 4
    with pytest.raises(EngineBuildError, match="fixed batch of 4"):
        make_batch_dynamic(model, "m.onnx")


def test_not_an_onnx_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    assert main(["dynamic-batch", str(junk), "--out", str(tmp_path / "o.onnx")]) == 1
    assert "cannot read it as ONNX" in capsys.readouterr().err
    assert not (tmp_path / "o.onnx").exists()


@pytest.mark.parametrize(("batch", "fits"), [(1, True), (3, False), (0, False)])
def test_engine_batch_needs_a_dynamic_or_matching_onnx(fp32_onnx: Path, batch: int, fits: bool) -> None:
    source = fp32_onnx  # fixed at 1
    if fits:
        check_batch_fits(source, batch)
    else:
        with pytest.raises(EngineBuildError, match=f"--batch {batch}"):
            check_batch_fits(source, batch)


def test_engine_batch_accepts_a_dynamic_onnx() -> None:
    check_batch_fits(SHIPPED / "stopsign.onnx", 7)
