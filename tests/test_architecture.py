"""The architecture as contracts: import-linter's, the layout rules of docs/architecture.md, the
torch-free runtime, and the generated diagram kept in step with the code."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EDGE = REPO / "edge"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
MAX_ROOT_MODULES = 8
MAX_LINES = 450


def lint_imports(cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(REPO / "pyproject.toml")],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_import_contracts_hold() -> None:
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def _copy_of_the_packages(root: Path) -> Path:
    """``root/stopsign/{edge,train,export,calibration}``: edge copied (to be broken), the rest linked."""
    package = root / "stopsign"
    package.mkdir()
    shutil.copytree(EDGE, package / "edge", ignore=shutil.ignore_patterns("__pycache__", "*.onnx", "*.bin"))
    for name in ("train", "export", "calibration"):
        (package / name).symlink_to(REPO / name)
    return root


# (module to change, the import added at its top, the contract that must break)
VIOLATIONS = [
    ("backends/onnxruntime.py", "import stopsign.edge.sinks.jsonl", "Backends know no sources"),
    ("backends/openvino.py", "from stopsign.edge.runtime import loop", "Backends know no sources"),
    ("sinks/udp.py", "import stopsign.edge.backends.base", "Sinks see results and events only"),
    ("vision/letterbox.py", "import stopsign.train.checkpoint", "never imports training"),
    ("runtime/health.py", "import stopsign.edge.cli.detect", "only the CLI knows them all"),
    ("model/spec.py", "import stopsign.edge.vision.tiles", "only the CLI knows them all"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("module", "line", "contract"), VIOLATIONS, ids=[v[0] for v in VIOLATIONS])
def test_a_forbidden_import_breaks_its_contract(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    root = _copy_of_the_packages(tmp_path)
    target = root / "stopsign" / "edge" / module
    source = target.read_text(encoding="utf-8")
    anchor = "from __future__ import annotations\n"
    assert anchor in source, module
    target.write_text(source.replace(anchor, f"{anchor}\n{line}\n", 1), encoding="utf-8")
    result = lint_imports(tmp_path, pythonpath=root)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-2000:]
    _, _, broken = result.stdout.partition("Broken contracts")
    assert contract in broken, result.stdout[-3000:]


def test_an_unchanged_copy_keeps_every_contract(tmp_path: Path) -> None:
    """The copy the violation test uses is itself clean: only the added import breaks it."""
    root = _copy_of_the_packages(tmp_path)
    result = lint_imports(tmp_path, pythonpath=root)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def test_edge_has_few_root_modules_and_every_folder_says_what_it_holds() -> None:
    root_modules = sorted(p.name for p in EDGE.glob("*.py"))
    assert len(root_modules) <= MAX_ROOT_MODULES, root_modules
    for folder in [EDGE, *sorted(p for p in EDGE.iterdir() if (p / "__init__.py").is_file())]:
        docstring = ast.get_docstring(ast.parse((folder / "__init__.py").read_text(encoding="utf-8")))
        assert docstring and len(docstring.split()) >= 8, (
            f"{folder.relative_to(REPO)}/__init__.py: no docstring"
        )


def test_no_module_of_the_runtime_is_over_450_lines() -> None:
    long = {
        str(path.relative_to(REPO)): n
        for path in EDGE.rglob("*.py")
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, long


def test_no_edge_module_imports_torch_when_loaded() -> None:
    """Every module of the runtime loads with torch hidden, but the torch backend's own two."""
    code = """
import importlib, importlib.abc, pkgutil, sys
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] == 'torch':
            raise ImportError(f'{name} hidden by the test')
sys.meta_path.insert(0, Hide())
import stopsign.edge
torch_by_design = {'stopsign.edge.backends.torch', 'stopsign.edge.backends.torch_ops'}
names = [m.name for m in pkgutil.walk_packages(stopsign.edge.__path__, 'stopsign.edge.')]
for name in names:
    if name not in torch_by_design and not name.startswith('stopsign.edge._'):
        importlib.import_module(name)
assert 'torch' not in sys.modules
print(len(names))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout.strip()) > 60


def test_old_import_paths_warn_once_and_give_the_same_module() -> None:
    code = """
import warnings
warnings.simplefilter('always')
with warnings.catch_warnings(record=True) as caught:
    from stopsign.edge.spec import ModelSpec
    import stopsign.edge.pipeline as old_loop
    import stopsign.edge.spec
import stopsign.edge.model.spec as spec, stopsign.edge.runtime.loop as loop
assert ModelSpec is spec.ModelSpec and old_loop is loop and spec.__spec__.name == 'stopsign.edge.model.spec'
moved = [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]
assert len(moved) == 2, moved
assert 'stopsign.edge.spec moved to stopsign.edge.model.spec' in moved[0], moved
print('ok')
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_checked_in_diagram_matches_the_imports() -> None:
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import architecture_diagram as diagram
    finally:
        sys.path.remove(str(REPO / "tools"))
    dot = diagram.dot_source()
    assert diagram.DOT_PATH.read_text(encoding="utf-8") == dot, (
        "docs/img/architecture.dot is out of date: run .venv/bin/python tools/architecture_diagram.py"
    )
    import hashlib

    digest = hashlib.sha256(dot.encode()).hexdigest()
    assert f"dot-sha256: {digest}" in diagram.SVG_PATH.read_text(encoding="utf-8"), (
        "the SVG is older than its .dot"
    )
