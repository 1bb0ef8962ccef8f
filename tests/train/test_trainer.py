"""End-to-end training on CPU: smoke run through the CLI, loss decrease, resume/rollback, val."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from stopsign.train.checkpoint import load_checkpoint
from stopsign.train.cli import main
from stopsign.train.config import Hyp
from stopsign.train.dataset import ImageStore, load_data_spec
from stopsign.train.loader import YoloDataset, collate
from stopsign.train.loss import YoloLoss
from stopsign.train.model import build_model
from stopsign.train.optim import build_optimizer
from stopsign.train.run_log import read_results

ARGS = [
    *["--img", "64", "--batch", "4", "--cfg", "yolov5n", "--workers", "0", "--device", "cpu"],
    "--weights",
    "",
]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory, draw_data) -> tuple[Path, Path]:
    """Two epochs of yolov5n at 64 px on 8 synthetic images, through `edge-train train`."""
    draw = draw_data
    root = tmp_path_factory.mktemp("smoke")
    data = draw(root / "data", n_train=8, n_val=4, n_confusers=1)
    argv = ["train", *ARGS, "--data", str(data), "--epochs", "2", "--project", str(root / "runs")]
    assert main([*argv, "--name", "s", "--save-period", "1", "--seed", "1", "--deterministic"]) == 0
    return root / "runs" / "s", data


@pytest.mark.timeout(120)
@pytest.mark.slow
def test_smoke_run_writes_everything(smoke_run: tuple[Path, Path]) -> None:
    run, _ = smoke_run
    rows = read_results(run / "results.csv")
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all(r["train/box_loss"] > 0 for r in rows)
    for name in ("results.png", "PR_curve.png", "F1_curve.png", "config.yaml"):
        assert (run / name).stat().st_size > 0, name
    for name in ("last", "best", "epoch_1", "epoch_2"):
        assert (run / "weights" / name / "spec.json").is_file(), name
    assert (run / "weights" / "last" / "train_state.json").is_file()
    best = load_checkpoint(run / "weights" / "best")
    assert best.spec.metrics["operating_threshold_rule"] == "f1"
    assert best.spec.operating_threshold == best.spec.metrics["threshold_f1"]
    assert set(best.spec.metrics["per_source"]) == {"synthA", "synthB"}
    assert best.spec.metrics["negatives"]["confuser"]["images"] == 1
    assert best.spec.input_size == (64, 64) and best.spec.architecture == "yolov5n"


@pytest.mark.slow
def test_resume_from_epoch_reproduces_the_run(smoke_run: tuple[Path, Path], tmp_path: Path) -> None:
    run, _ = smoke_run
    reference = load_file(run / "weights" / "epoch_2" / "weights.safetensors")
    copy = tmp_path / "s"
    shutil.copytree(run, copy)
    state = json.loads((copy / "weights" / "epoch_1" / "train_state.json").read_text())
    state["run_dir"] = str(copy)  # the copied run, as if it had been trained there
    (copy / "weights" / "epoch_1" / "train_state.json").write_text(json.dumps(state))
    epoch_1 = str(copy / "weights" / "epoch_1")
    assert main(["train", "--resume", epoch_1, "--workers", "0", "--device", "cpu"]) == 0
    rows = read_results(copy / "results.csv")
    assert [r["epoch"] for r in rows] == [1, 2]  # epoch 2 replaced, not appended
    resumed = load_file(copy / "weights" / "last" / "weights.safetensors")
    assert resumed.keys() == reference.keys()
    for key in reference:
        torch.testing.assert_close(resumed[key], reference[key], rtol=1e-5, atol=1e-6, msg=key)


@pytest.mark.slow
def test_resume_refuses_a_finished_run(smoke_run: tuple[Path, Path], capsys) -> None:
    run, _ = smoke_run
    assert main(["train", "--resume", str(run), "--device", "cpu"]) == 2
    assert "already trained 2/2 epochs; nothing to resume" in capsys.readouterr().out


@pytest.mark.slow
def test_val_command_writes_threshold_into_spec(smoke_run: tuple[Path, Path], tmp_path: Path) -> None:
    run, data = smoke_run
    ckpt = tmp_path / "best"
    shutil.copytree(run / "weights" / "best", ckpt)
    argv = ["val", "--weights", str(ckpt), "--data", str(data), "--device", "cpu", "--workers", "0"]
    assert main([*argv, "--project", str(tmp_path / "val"), "--threshold", "f1"]) == 0
    out = tmp_path / "val" / "exp"
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"precision", "recall", "map50", "map50_95", "threshold_f1", "per_source"} <= set(metrics)
    assert (out / "PR_curve.png").is_file() and (out / "F1_curve.png").is_file()
    spec = load_checkpoint(ckpt).spec  # still loads: weights untouched, SHA-256 checked
    assert spec.operating_threshold == metrics["threshold_f1"]


def test_loss_goes_down_on_a_fixed_batch(tiny_data: Path) -> None:
    spec = load_data_spec(tiny_data, check=False)
    dataset = YoloDataset(spec.train, ImageStore(spec.train.images, 64), 64, Hyp(), augment=False)
    images, targets, _ = collate([dataset[i] for i in range(2)])
    torch.manual_seed(0)
    model = build_model("yolov5n", 1).train()
    loss_fn = YoloLoss.for_model(model, Hyp(), 64)
    optimizer = build_optimizer(model, "SGD", Hyp(), 5e-4)
    x = images.float() / 255
    losses = []
    for _ in range(30):
        loss, _ = loss_fn(model(x), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5, losses


def test_missing_data_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert main(["train", *ARGS, "--data", str(tmp_path / "nothing.yaml"), "--project", str(tmp_path)]) == 2
    assert "nothing.yaml: no such data.yaml" in capsys.readouterr().out


@pytest.mark.slow
def test_time_budget_cuts_the_epoch_count(tmp_path: Path, draw_data, capsys) -> None:
    """A budget smaller than one epoch: the schedule is refitted to the one epoch done, and the run
    stops there with its checkpoints written (not killed half-way)."""
    data = draw_data(tmp_path / "data", n_train=4, n_val=2, n_confusers=0)
    argv = ["train", *ARGS, "--data", str(data), "--epochs", "5", "--project", str(tmp_path / "runs")]
    assert main([*argv, "--name", "b", "--time-budget", "0.001"]) == 0
    out = capsys.readouterr().out
    assert "1 epochs (was 5)" in out
    rows = read_results(tmp_path / "runs" / "b" / "results.csv")
    assert [r["epoch"] for r in rows] == [1]
    state = json.loads((tmp_path / "runs" / "b" / "weights" / "last" / "train_state.json").read_text())
    assert state["config"]["schedule"]["epochs"] == 1  # a resume sees the fitted schedule as done


@pytest.mark.slow
def test_val_command_takes_a_fixed_threshold(smoke_run: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    run, data = smoke_run
    ckpt = tmp_path / "best"
    shutil.copytree(run / "weights" / "best", ckpt)
    argv = ["val", "--weights", str(ckpt), "--data", str(data), "--device", "cpu", "--workers", "0"]
    assert main([*argv, "--project", str(tmp_path / "val"), "--threshold", "0.5"]) == 0
    spec = load_checkpoint(ckpt).spec
    assert spec.operating_threshold == 0.5
    assert spec.metrics["operating_threshold_rule"] == "fixed"
    assert spec.metrics["operating_point"]["conf"] == 0.5
    assert {role["threshold"] for role in spec.metrics["negatives"].values()} == {0.5}
    for bad in ("1.5", "0", "f2"):
        with pytest.raises(SystemExit):
            main([*argv, "--threshold", bad])
        assert "--threshold" in capsys.readouterr().err
