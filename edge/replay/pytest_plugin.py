"""A pytest plugin for regression-testing a detector on recorded drives.

Use it from a ``conftest.py``::

    pytest_plugins = ["stopsign.edge.replay.pytest_plugin"]

then point the tests at your own drives and model::

    pytest --drives path/to/drives --replay-model model.onnx

Each drive folder with an expected-output file for the model becomes one test
(``test_recorded_drive[<name>]``, added by this plugin, which replays the drive and fails with the
diff). A drive without expected outputs is skipped with the command that creates them. The
``replay_check`` fixture runs the same check from a test of your own.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from stopsign.edge.model.artifacts import sha256_file
from stopsign.edge.replay.expected import Tolerance, compare, expected_for, read_expected, to_lines
from stopsign.edge.replay.runner import replay

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "assets" / "stopsign.onnx"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("recorded drives")
    group.addoption(
        "--drives", action="append", default=[], help="folder of recorded drives to regression-test"
    )
    group.addoption("--replay-model", default=None, help=f"model to replay with (default {DEFAULT_MODEL})")
    group.addoption("--replay-tolerance", default="iou=0.9,score=0.02", help="box IoU and score tolerance")


def check_drive(drive: Path, model: Path, tolerance: Tolerance) -> None:
    """Replay ``drive`` and compare with its expected outputs; skips or fails with a readable reason."""
    if not model.is_file():
        pytest.skip(f"no model at {model}")
    if not any((drive / "expected").glob(f"{sha256_file(model)[:16]}*.jsonl")):
        pytest.skip(
            f"{drive.name}: no expected outputs for {model.name}; run: edge-replay {drive} --model {model} --update-expected"
        )
    result = replay(drive, model)
    path = expected_for(result)  # reduced precision: this runtime's own file
    if not path.is_file():
        pytest.skip(f"{drive.name}: no {path.name} for {model.name} on {result.runtime}; run: edge-replay "
                    f"{drive} --model {model} --update-expected")  # fmt: skip
    diffs = compare(read_expected(path), to_lines(result), tolerance)
    assert not diffs, f"{drive}: {len(diffs)} difference(s) from {path}:\n  " + "\n  ".join(diffs[:30])


@pytest.fixture
def replay_check(request: pytest.FixtureRequest) -> Callable[[Path, Path | None], None]:
    """``replay_check(drive, model=None)``: the check above with the command line's model and tolerance."""
    tolerance = Tolerance.parse(request.config.getoption("--replay-tolerance"))
    default = Path(request.config.getoption("--replay-model") or DEFAULT_MODEL)

    def run(drive: Path, model: Path | None = None) -> None:
        check_drive(Path(drive), Path(model) if model else default, tolerance)

    return run


def _drives(config: pytest.Config) -> list[Path]:
    """The drives given with ``--drives``: each a drive folder or a folder of drive folders."""
    drives: list[Path] = []
    for folder in map(Path, config.getoption("--drives")):
        if not folder.is_dir():
            raise pytest.UsageError(f"--drives {folder}: no such folder")
        if (folder / "frames.jsonl").is_file():
            drives.append(folder)
            continue
        found = sorted(d for d in folder.iterdir() if (d / "frames.jsonl").is_file())
        if not found:
            raise pytest.UsageError(f"--drives {folder}: no drive folders (with frames.jsonl) in it")
        drives += found
    return drives


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "recorded_drive" in metafunc.fixturenames:
        drives = _drives(metafunc.config)
        if not drives:
            skip = pytest.mark.skip(reason="no --drives given (pytest --drives DIR [--replay-model M])")
            metafunc.parametrize("recorded_drive", [pytest.param(None, marks=skip)], ids=["no-drives"])
            return
        metafunc.parametrize("recorded_drive", drives, ids=[d.name for d in drives])
