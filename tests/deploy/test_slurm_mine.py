"""deploy/slurm/mine.sbatch: shellcheck, and on a real one-node SLURM cluster (the fixture of
test_slurm.py) a 2-task shard array plus the merge job choose the same frames as one local run."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from stopsign.train.data.cli import main as edge_data
from tests.deploy.test_slurm import CPU_SHAPE, REPO, sbatch_and_wait, slurm_cluster  # noqa: F401 - the fixture
from tests.train.data.mine.helpers import made_up_drives

MINE_SBATCH = REPO / "deploy" / "slurm" / "mine.sbatch"


def test_mine_sbatch_is_shellcheck_clean(require_tool: Callable[[str, str], str]) -> None:
    shellcheck = require_tool("shellcheck", "apt-get install shellcheck")
    result = subprocess.run(
        [shellcheck, "--severity=style", "--shell=bash", str(MINE_SBATCH)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slurm
@pytest.mark.slow
def test_mine_array_and_merge_equal_a_single_run(slurm_cluster: dict[str, str], tmp_path: Path) -> None:  # noqa: F811
    drives = made_up_drives(tmp_path / "drives")
    listing = tmp_path / "sources.txt"
    listing.write_text("# drives to mine\n" + "".join(f"{d}\n" for d in drives))
    out = tmp_path / "fleet"
    env = {
        **slurm_cluster,
        "REPO": str(REPO),
        "VENV": str(Path(sys.executable).parent.parent),
        "SOURCES": str(listing),
        "OUT": str(out),
        "BUDGET": "10",
        "EXTRA_ARGS": "--threads 1",
        "OMP_NUM_THREADS": "1",
    }
    for step, array in (("shard", "--array=0-1"), ("merge", "--array=0")):
        result = sbatch_and_wait(
            [array, *CPU_SHAPE, f"--output={tmp_path}/{step}-%a.out", f"--export=ALL,STEP={step}", str(MINE_SBATCH)],
            env, tmp_path,
        )  # fmt: skip
        logs = "\n".join(p.read_text()[-2000:] for p in sorted(tmp_path.glob(f"{step}-*.out")))
        assert result.returncode == 0, f"{step}: {result.stderr}\n{logs}"
    assert sorted(p.name for p in (out / "shards").iterdir()) == ["0", "1"]
    single = tmp_path / "single"
    assert (
        edge_data(
            [
                "mine",
                *map(str, drives),
                "--budget",
                "10",
                "--out",
                str(single),
                "--threads",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    read = lambda task: [json.loads(x) for x in (task / "mined.jsonl").read_text().splitlines()]  # noqa: E731
    assert read(out / "task") == read(single)
