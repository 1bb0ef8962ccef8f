"""Shared test helper: a copy of ``tensorrt-stubs`` that mypy can parse, for the TensorRT typecheck tests.

tensorrt-stubs (10.13.0.35.1) installs bare ``tensorrt/`` and ``tensorrt_bindings/`` folders of
``.pyi`` files without ``py.typed``, so mypy only sees them through ``MYPYPATH``; and two
signatures do not parse (a parameter named ``in``; ``add_scale_nd`` with a parameter without a
default after ones with defaults). :func:`typecheckable_stubs` copies the stubs, renames ``in`` to
``in_`` and gives such trailing parameters ``= ...``; nothing else changes. It installs only with
``pip install --no-deps tensorrt-stubs`` (its dependency, the tensorrt wheel, needs NVIDIA's index).
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MYPY_INI = """[mypy]
python_version = 3.10
ignore_missing_imports = True
warn_unused_ignores = True
[mypy-tensorrt.*]
ignore_errors = True
[mypy-tensorrt_bindings.*]
ignore_errors = True
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
    """One stub line with ``in`` renamed and defaults added after the first defaulted parameter."""
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
    """The installed ``tensorrt``/``tensorrt_bindings`` stub folders, or None when tensorrt-stubs is absent."""
    roots = []
    for name in ("tensorrt", "tensorrt_bindings"):
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            return None
        folder = Path(next(iter(spec.submodule_search_locations)))
        if not (folder / "__init__.pyi").is_file():
            return None  # the real runtime, not the stubs
        roots.append(folder)
    return roots


def typecheckable_stubs(target: Path) -> Path | None:
    """Repaired copy of the stubs under ``target`` (plus ``target/mypy.ini``); None when not installed."""
    roots = stub_roots()
    if roots is None:
        return None
    for root in roots:
        shutil.copytree(
            root, target / root.name, ignore=shutil.ignore_patterns("*.py", "*.so", "__pycache__")
        )
        for stub in (target / root.name).rglob("*.pyi"):
            lines = stub.read_text(encoding="utf-8").splitlines(keepends=True)
            stub.write_text("".join(repair_stub_line(line) for line in lines), encoding="utf-8")
    (target / "mypy.ini").write_text(MYPY_INI)
    return target


def mypy_available() -> bool:
    return importlib.util.find_spec("mypy") is not None


def run_mypy(stubs: Path, *targets: str | Path) -> subprocess.CompletedProcess[str]:
    """mypy on ``targets`` (paths relative to the repository root) with the repaired stubs in effect."""
    command = [
        sys.executable, "-m", "mypy", "--config-file", str(stubs / "mypy.ini"),
        "--cache-dir", str(stubs / ".mypy_cache"), *map(str, targets),
    ]  # fmt: skip
    env = {"MYPYPATH": str(stubs), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False
    )
