"""mypy on the TensorRT export modules against tensorrt-stubs (repaired by tests/tensorrt_stubs.py).

CI installs the stubs with `pip install --no-deps tensorrt-stubs` (run.sh): their dependency on
the tensorrt wheel needs NVIDIA's index and a GPU.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tensorrt_stubs import mypy_available, run_mypy, typecheckable_stubs

TENSORRT_MODULES = ["export/tensorrt_build.py", "export/engine_plan.py"]
# A probe that type-checks only if the stubs are really in use (else every TensorRT name is Any).
PROBE = """
import tensorrt as trt
config = trt.Builder(trt.Logger(trt.Logger.WARNING)).create_builder_config()
config.set_flag("FP16")
"""


@pytest.fixture(scope="module")
def stubs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not mypy_available():
        pytest.skip("mypy is not installed (CI must have it)")
    folder = typecheckable_stubs(tmp_path_factory.mktemp("trt-stubs"))
    if folder is None:
        pytest.skip("tensorrt-stubs is not installed (CI must have it: pip install --no-deps tensorrt-stubs)")
    return folder


def test_stubs_are_in_effect(stubs: Path, tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    result = run_mypy(stubs, probe)
    assert 'incompatible type "str"; expected "BuilderFlag"' in result.stdout, result.stdout


def test_tensorrt_modules_typecheck(stubs: Path) -> None:
    result = run_mypy(stubs, *TENSORRT_MODULES)
    assert result.returncode == 0, result.stdout + result.stderr
