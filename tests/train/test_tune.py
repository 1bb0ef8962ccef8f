"""edge-train tune: space files, a real study that prunes and resumes, best_hyp.yaml, shared storage.

Tiny synthetic data (tests/train/conftest.py), 64 px, 2-3 epochs per trial, CPU.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

optuna = pytest.importorskip("optuna")

from stopsign.train.cli import main  # noqa: E402
from stopsign.train.tune import Range, TuneError, load_space  # noqa: E402

SPACE = {"lr0": {"low": 0.002, "high": 0.03, "log": True}, "momentum": {"low": 0.8, "high": 0.95}}


def write_space(path: Path, content: object) -> Path:
    path.write_text(yaml.safe_dump(content) if not isinstance(content, str) else content)
    return path


def tune_argv(data: Path, out: Path, *extra: str) -> list[str]:
    return ["tune", "--data", str(data), "--img", "64", "--batch", "8", "--epochs", "2", "--device", "cpu",
            "--workers", "0", "--deterministic", "--seed", "3", "--space", str(out.parent / "space.yaml"),
            "--out", str(out), *extra]  # fmt: skip


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"learning_rate": {"low": 0.1, "high": 1}}, "learning_rate: not a hyper-parameter"),
        ({"lr0": {"low": 0.1, "high": 0.01}}, "lr0: low 0.1 must be below high 0.01"),
        ({"lr0": {"low": 0.0, "high": 0.01, "log": True}}, "lr0: a log range must be above zero"),
        ({"lr0": {"low": -1, "high": 0.01}}, "leaves the trainer's allowed range"),
        ({"lr0": {"low": 0.001}}, "lr0: expected {low: number, high: number"),
        ({"lr0": {"low": "a", "high": 1}}, "low and high must be numbers"),
        ({"lr0": {"low": 0.001, "high": 0.01, "log": "yes"}}, "log must be true or false"),
        ("[1, 2]", "expected a mapping"),
        ("lr0: [", "not valid YAML"),
    ],
)
def test_bad_space_files_name_the_key(tmp_path: Path, content: object, message: str) -> None:
    with pytest.raises(TuneError, match="space.yaml") as info:
        load_space(write_space(tmp_path / "space.yaml", content))
    assert message in str(info.value)


def test_the_shipped_space_loads() -> None:
    ranges = load_space()
    assert Range("lr0", 0.001, 0.05, True) in ranges and len(ranges) >= 10


@pytest.mark.slow
def test_a_study_runs_prunes_and_its_best_hyp_reproduces(tiny_data: Path, tmp_path: Path, capsys) -> None:
    write_space(tmp_path / "space.yaml", SPACE)
    out = tmp_path / "study"
    assert main(tune_argv(tiny_data, out, "--trials", "5", "--epochs", "3")) == 0
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert [r["number"] for r in rows] == ["0", "1", "2", "3", "4"]
    states = {r["state"] for r in rows}
    assert states <= {"COMPLETE", "PRUNED"} and "COMPLETE" in states
    assert {"history.png", "parallel.png"} <= {p.name for p in out.iterdir()}
    best_hyp = out / "best_hyp.yaml"
    best = max((r for r in rows if r["state"] == "COMPLETE"), key=lambda r: float(r["value"]))
    hyp = yaml.safe_load(best_hyp.read_text())
    assert hyp["lr0"] == pytest.approx(float(best["lr0"])) and "mosaic" in hyp  # the whole hyp group
    # Trained again with best_hyp.yaml and the same seed: the same fitness as its trial.
    again = ["train", "--data", str(tiny_data), "--img", "64", "--batch", "8", "--epochs", "3", "--device",
             "cpu", "--workers", "0", "--deterministic", "--seed", "3", "--hyp", str(best_hyp),
             "--project", str(tmp_path / "again"), "--name", "run"]  # fmt: skip
    capsys.readouterr()
    assert main(again) == 0
    done = capsys.readouterr().out
    fitness = float(done.split("(fitness ")[1].split(")")[0])
    assert fitness == pytest.approx(float(best["value"]), abs=1e-4), (done, best)


def test_pruning_stops_a_trial_early(tiny_data: Path, tmp_path: Path) -> None:
    """A trial reporting far below the others is pruned before its last epoch."""
    from stopsign.train.config import config_from_dict
    from stopsign.train.tune import TuneOptions, run_search

    base = config_from_dict({"data": {"data": str(tiny_data)}})
    calls: list[tuple[int, int]] = []

    def fake_train(config, on_epoch):  # the trainer's contract, with scripted metrics
        trial = len({c[0] for c in calls})
        value = 0.01 if trial == 3 else 0.5 + 0.01 * trial
        for epoch in range(1, 6):
            calls.append((trial, epoch))
            if on_epoch(epoch, {"fitness": value, "map50": value, "recall": value}):
                return {"fitness": value}, True
        return {"fitness": value}, False

    options = TuneOptions(trials=4, out=tmp_path / "s", space=[Range("lr0", 0.001, 0.01, True)], seed=0)
    study = run_search(base, options, fake_train, log=lambda _: None)
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "COMPLETE", "COMPLETE", "PRUNED"]
    assert max(epoch for trial, epoch in calls if trial == 3) < 5


def test_a_killed_worker_is_resumed_and_its_trial_retried(tiny_data: Path, tmp_path: Path) -> None:
    write_space(tmp_path / "space.yaml", SPACE)
    out = tmp_path / "study"
    command = [sys.executable, "-m", "stopsign.train.cli", *tune_argv(tiny_data, out, "--trials", "2", "--epochs",
               "30", "--pruner", "none")]  # fmt: skip
    worker = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not (out / "trials" / "trial_0000" / "weights" / "last").is_dir():  # mid-trial: an epoch is done
        assert time.monotonic() < deadline and worker.poll() is None, worker.stdout.read()[-3000:]
        time.sleep(0.2)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    # Started again (with fewer epochs, to be quick): trial 0 is found RUNNING with its worker
    # gone, failed, and its parameters run again; the study then reaches its 2 trials.
    proc = subprocess.run(
        [*command[:-4], "--epochs", "2", "--pruner", "none"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "trials [0] were left running by a worker that is gone" in proc.stdout
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert [r["state"] for r in rows] == ["FAIL", "COMPLETE", "COMPLETE"], rows
    assert rows[1]["lr0"] == rows[0]["lr0"]  # the killed trial's parameters, run again


def test_two_workers_share_a_journal_without_duplicates(tiny_data: Path, tmp_path: Path) -> None:
    write_space(tmp_path / "space.yaml", SPACE)
    out = tmp_path / "study"
    journal = tmp_path / "shared" / "study.journal"
    command = [sys.executable, "-m", "stopsign.train.cli",
               *tune_argv(tiny_data, out, "--trials", "4", "--epochs", "1", "--storage", str(journal))]  # fmt: skip
    workers = [
        subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "SLURM_ARRAY_TASK_ID": str(i), "OMP_NUM_THREADS": "1"},
        )
        for i in range(2)
    ]
    logs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [log[-2000:] for log in logs]
    study = optuna.load_study(study_name="stopsign", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal))))  # fmt: skip
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert 4 <= len(finished) <= 5  # each worker stops once the study holds 4 (one may be in flight)
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers))
    workers_seen = {t.user_attrs["worker"] for t in study.trials}
    assert len(workers_seen) == 2  # both workers ran trials of the one study
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == len(study.trials)


def test_evolve_is_tune_with_n_trials(tiny_data: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    """`edge-train train --evolve N`, the YOLOv5 spelling: N trials into runs/tune/stopsign."""
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--data", str(tiny_data), "--img", "64", "--batch", "8", "--epochs", "1", "--device", "cpu",
            "--workers", "0", "--evolve", "2"]  # fmt: skip
    assert main(argv) == 0
    rows = list(csv.DictReader((tmp_path / "runs" / "tune" / "stopsign" / "trials.csv").open()))
    assert len(rows) == 2 and "best_hyp: runs/tune/stopsign/best_hyp.yaml" in capsys.readouterr().out
