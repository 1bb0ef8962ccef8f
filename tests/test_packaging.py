"""Package layout: namespace imports, the torch-free edge runtime, and every console script's --help."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

import pytest

CONSOLE_SCRIPTS = sorted(ep for ep in entry_points(group="console_scripts") if ep.name.startswith("edge-"))

HIDE_TORCH = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {'torch', 'onnxruntime', 'tensorrt', 'gi', 'onnx'}:
            raise ImportError(f'{name} hidden by the test')
sys.meta_path.insert(0, Block())
import stopsign.edge, stopsign.edge.vision.postprocess, stopsign.edge.vision.letterbox, stopsign.edge.model.spec
assert 'torch' not in sys.modules
print('ok')
"""


def test_edge_imports_without_torch() -> None:
    result = subprocess.run([sys.executable, "-c", HIDE_TORCH], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_all_console_scripts_are_declared() -> None:
    names = {ep.name for ep in CONSOLE_SCRIPTS}
    assert names >= {
        "edge-detect",
        "edge-bench",
        "edge-replay",
        "edge-record",
        "edge-train",
        "edge-export",
        "edge-calibrate",
        "edge-data",
    }


@pytest.mark.parametrize("script", CONSOLE_SCRIPTS, ids=lambda ep: ep.name)
def test_console_script_help(script) -> None:
    code = f"import sys; from {script.module} import {script.attr} as main; sys.exit(main(['--help']))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage:" in result.stdout
