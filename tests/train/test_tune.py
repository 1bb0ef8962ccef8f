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
        [*command[:-4], "--epochs", "1", "--pruner", "none"], capture_output=True, text=True
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


def test_two_objectives_keep_the_pareto_front(tiny_data: Path, tmp_path: Path) -> None:
    """map50 up, fp_rate down: pareto.csv holds exactly the non-dominated trials, one hyp file each;
    best_hyp.yaml is the front's best map50; no trial is pruned."""
    from stopsign.train.config import config_from_dict
    from stopsign.train.tune import TuneOptions, run_search, write_outputs

    base = config_from_dict({"data": {"data": str(tiny_data)}})
    scripted = [(0.5, 0.10), (0.6, 0.20), (0.4, 0.05), (0.55, 0.30), (0.6, 0.15), (0.3, 0.05)]
    count = {"n": 0}

    def fake_train(config, on_epoch):
        map50, fp = scripted[count["n"]]
        count["n"] += 1
        for epoch in (1, 2):
            metrics = {"fitness": map50, "map50": map50 * epoch / 2, "recall": 0.5, "recall_small": 0.1,
                       "fp_rate": fp}  # fmt: skip
            assert on_epoch(epoch, metrics) is False  # never pruned
        return {"map50": map50, "fp_rate": fp}, False

    out = tmp_path / "s"
    options = TuneOptions(
        trials=6, out=out, space=[Range("lr0", 0.001, 0.01, True)], objective="map50,fp_rate"
    )
    study = run_search(base, options, fake_train, log=lambda _: None)
    written = write_outputs(study, base, out)
    # Non-dominated: (0.6, 0.15) beats (0.6, 0.20); (0.5, 0.10) and (0.4, 0.05) stand; (0.3, 0.05)
    # is dominated by (0.4, 0.05); (0.55, 0.30) by (0.6, 0.15).
    rows = list(csv.DictReader(written["pareto"].open()))
    assert sorted(int(r["number"]) for r in rows) == [0, 2, 4]
    assert sorted((float(r["map50"]), float(r["fp_rate"])) for r in rows) == [
        (0.4, 0.05),
        (0.5, 0.1),
        (0.6, 0.15),
    ]
    assert sorted(p.name for p in (out / "pareto").iterdir()) == [
        "trial_0000.yaml",
        "trial_0002.yaml",
        "trial_0004.yaml",
    ]
    best = (out / "best_hyp.yaml").read_text()
    assert "trial 4, map50 0.60000, fp_rate 0.15000" in best
    assert yaml.safe_load(best)["lr0"] == pytest.approx(study.trials[4].params["lr0"])
    trials = list(csv.DictReader(written["trials"].open()))
    assert [r["epochs_reported"] for r in trials] == ["2"] * 6 and "value_fp_rate" in trials[0]
    assert {"pareto", "pareto_front", "history", "importances"} <= set(written)
    # A study keeps its objectives: resuming it with other ones is an error that says so.
    with pytest.raises(TuneError, match="was started with --objective map50,fp_rate"):
        run_search(base, TuneOptions(trials=7, out=out, objective="map50,recall_small"), fake_train)


@pytest.mark.parametrize(
    ("objective", "message"),
    [
        ("map", "expected one of"),
        ("map50,map50", "distinct"),
        ("", "expected one of"),
        ("fitness,map50,recall,fp_rate", "2-3 distinct"),
    ],
)
def test_bad_objectives_are_named(tmp_path: Path, objective: str, message: str) -> None:
    from stopsign.train.tune import TuneOptions

    with pytest.raises(TuneError, match=message):
        TuneOptions(trials=1, out=tmp_path, objective=objective)


def test_an_objective_the_split_cannot_give_is_a_clear_error() -> None:
    from stopsign.train.tune import objective_values

    assert objective_values({"map50": 0.5, "recall_small": 0.25}, ("recall_small", "map50")) == [0.25, 0.5]
    with pytest.raises(TuneError, match="recall_small: no value .*no sign under 32 px"):
        objective_values({"recall_small": None}, ("recall_small",))
    with pytest.raises(TuneError, match="fp_rate: no value .*no confuser or sign-free image"):
        objective_values({"fp_rate": float("nan")}, ("fp_rate",))


def test_small_sign_recall_and_fp_rate_from_a_real_study(tiny_data: Path, tmp_path: Path) -> None:
    """The real trainer reports recall_small and fp_rate; a two-objective CLI run writes the front."""
    write_space(tmp_path / "space.yaml", SPACE)
    out = tmp_path / "study"
    assert main(tune_argv(tiny_data, out, "--trials", "2", "--epochs", "1",
                          "--objective", "recall_small,fp_rate")) == 0  # fmt: skip
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert [r["state"] for r in rows] == ["COMPLETE", "COMPLETE"]
    for row in rows:
        assert 0.0 <= float(row["value_recall_small"]) <= 1.0 and 0.0 <= float(row["value_fp_rate"]) <= 1.0
        metrics = yaml.safe_load((Path(row["run_dir"]) / "weights" / "best" / "spec.json").read_text())[
            "metrics"
        ]
        # Every sign of the 64 px set is under 32 px; the trial's value is its best checkpoint's.
        assert metrics["instances_small"] == metrics["instances"] > 0
        assert float(row["value_recall_small"]) == pytest.approx(metrics["recall_small"], abs=1e-5)
    assert (out / "pareto.csv").is_file() and (out / "best_hyp.yaml").is_file()


def test_a_search_worker_can_be_a_ddp_run_under_torchrun(tiny_data: Path, tmp_path: Path) -> None:
    """torchrun with 2 ranks (gloo, CPU) as one search worker: rank 0 runs the study, both ranks
    train every trial together, and both exit 0 when the study is done."""
    write_space(tmp_path / "space.yaml", SPACE)
    out = tmp_path / "study"
    torchrun = Path(sys.executable).with_name("torchrun")
    command = [str(torchrun), "--standalone", "--nproc_per_node", "2", "--no-python",
               str(Path(sys.executable).with_name("edge-train")),
               *tune_argv(tiny_data, out, "--trials", "2", "--epochs", "2", "--pruner", "none")]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "rank 0/2 of this search worker" in log and "rank 1/2 of this search worker" in log
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert [r["state"] for r in rows] == ["COMPLETE", "COMPLETE"], rows
    # Each trial trained as one DDP run (rank 1 not training along would hang rank 0's trainer).
    assert log.count("DDP over 2 ranks, batch 4 each") == 2, log[-4000:]
    assert log.count("best_hyp:") == 1  # rank 0 alone reports the outputs
