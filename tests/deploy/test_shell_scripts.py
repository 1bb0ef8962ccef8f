"""The deployment shell scripts: shellcheck-clean, strict mode, executable."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted((REPO_ROOT / "deploy").rglob("*.sh"))


def test_there_are_scripts() -> None:
    names = {path.name for path in SCRIPTS}
    assert {"install.sh", "docker-entrypoint.sh"} <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=[str(p.relative_to(REPO_ROOT)) for p in SCRIPTS])
def test_shellcheck_clean(require_tool: Callable[[str, str], str], script: Path) -> None:
    shellcheck = require_tool("shellcheck", "apt-get install shellcheck")
    result = subprocess.run(
        [shellcheck, "--severity=style", "--external-sources", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=script.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=[str(p.relative_to(REPO_ROOT)) for p in SCRIPTS])
def test_strict_mode_and_executable(script: Path) -> None:
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "\nset -euo pipefail\n" in text
    assert os.access(script, os.X_OK), f"{script} is not executable (git update-index --chmod=+x)"
