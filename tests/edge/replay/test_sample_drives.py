"""The project's sample drives must replay to their expected outputs with the shipped model.

Runs through the public pytest plugin (``stopsign.edge.replay.pytest_plugin``), exactly as a user
would point it at their own drives: ``pytest --drives DIR --replay-model M``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SAMPLES = Path(__file__).resolve().parents[3] / "samples" / "drives"
SAMPLE_DRIVES = (
    sorted(d for d in SAMPLES.iterdir() if (d / "frames.jsonl").is_file()) if SAMPLES.is_dir() else []
)


def test_samples_exist() -> None:
    assert {d.name for d in SAMPLE_DRIVES} >= {
        "day_approach",
        "night_approach",
        "no_entry_and_yield",
        "occluded_approach",
    }


@pytest.mark.parametrize("drive", SAMPLE_DRIVES, ids=[d.name for d in SAMPLE_DRIVES])
def test_sample_drive_matches_expected(drive: Path, replay_check) -> None:
    replay_check(drive)


def test_user_drives(recorded_drive: Path, replay_check) -> None:
    """One test per drive given with --drives (none by default)."""
    replay_check(recorded_drive)
