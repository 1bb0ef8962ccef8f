"""mypy on the TensorRT modules against tensorrt-stubs (CI must install tensorrt-stubs: `pip install --no-deps
tensorrt-stubs`, since its dependency on the tensorrt wheel needs NVIDIA's index)."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TENSORRT_MODULES = ["export/tensorrt_build.py", "export/engine_plan.py", "edge/backends/tensorrt.py"]
MYPY_INI = """[mypy]
python_version = 3.10
ignore_missing_imports = True
[mypy-tensorrt.*]
ignore_errors = True
[mypy-tensorrt_bindings.*]
ignore_errors = True
"""
# A probe that type-checks only if the stubs are really in use (else every TensorRT name is Any).
PROBE = """
import tensorrt as trt
config = trt.Builder(trt.Logger(trt.Logger.WARNING)).create_builder_config()
config.set_flag("FP16")
"""
_IN_PARAM = re.compile(r"([(,] *)in:")


def _split_params(params: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(params):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            parts.append(params[start:i])
            start = i + 1
    return [*parts, params[start:]]


def repair_stub_line(line: str) -> str:
    """tensorrt-stubs 10.13 has parameters named ``in`` and a non-default parameter after defaults."""
    line = _IN_PARAM.sub(r"\1in_:", line)
    match = re.match(r"^(\s*def \w+\()(.*)(\) -> .*:\s*)$", line)
    if not match:
        return line
    params, seen_default = _split_params(match.group(2)), False
    for i, param in enumerate(params):
        if "=" in param:
            seen_default = True
        elif seen_default and ":" in param and not param.strip().startswith("*"):
            params[i] = param + " = ..."
    return match.group(1) + ",".join(params) + match.group(3)


def stub_roots() -> list[Path] | None:
    """tensorrt-stubs puts bare ``tensorrt/`` and ``tensorrt_bindings/`` .pyi folders (no py.typed) in site-packages."""
    roots = []
    for name in ("tensorrt", "tensorrt_bindings"):
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            return None
        folder = Path(next(iter(spec.submodule_search_locations)))
        if not (folder / "__init__.pyi").is_file():
            return None
        roots.append(folder)
    return roots


@pytest.fixture(scope="module")
def mypy_env(tmp_path_factory):
    if (
        shutil.which("mypy", path=str(Path(sys.executable).parent)) is None
        and importlib.util.find_spec("mypy") is None
    ):
        pytest.skip("mypy is not installed (CI must have it)")
    roots = stub_roots()
    if roots is None:
        pytest.skip("tensorrt-stubs is not installed (CI must have it: pip install --no-deps tensorrt-stubs)")
    # Without py.typed mypy ignores the stubs and the syntax errors stop it: copy, repair, use via MYPYPATH.
    stubs = tmp_path_factory.mktemp("trt-stubs")
    for root in roots:
        shutil.copytree(root, stubs / root.name, ignore=shutil.ignore_patterns("*.py", "*.so", "__pycache__"))
        for stub in (stubs / root.name).rglob("*.pyi"):
            lines = stub.read_text(encoding="utf-8").splitlines(keepends=True)
            stub.write_text("".join(repair_stub_line(line) for line in lines), encoding="utf-8")
    config = stubs / "mypy.ini"
    config.write_text(MYPY_INI)
    return {**os.environ, "MYPYPATH": str(stubs)}, config


def run_mypy(env_config, *targets: str) -> subprocess.CompletedProcess[str]:
    env, config = env_config
    command = [sys.executable, "-m", "mypy", "--config-file", str(config), "--no-incremental", *targets]
    return subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_stubs_are_in_effect(mypy_env, tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    result = run_mypy(mypy_env, str(probe))
    assert 'incompatible type "str"; expected "BuilderFlag"' in result.stdout, result.stdout


def test_tensorrt_modules_typecheck(mypy_env):
    result = run_mypy(mypy_env, *TENSORRT_MODULES)
    assert result.returncode == 0, result.stdout + result.stderr
