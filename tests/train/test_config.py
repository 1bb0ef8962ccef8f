"""Training configuration: layering, unknown keys and ranges are errors, round trip through YAML."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from stopsign.train.config import (
    ConfigError,
    TrainConfig,
    config_from_dict,
    dump_config,
    load_config,
    load_hyp,
)
from stopsign.train.train_cmd import add_parser, config_from_args


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_parser(parser)
    return parser.parse_args(list(argv))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"hyp": {"lr": 0.1}}, r"unknown key\(s\) \['hyp.lr'\]"),
        ({"training": {}}, r"unknown group\(s\) \['training'\]"),
        ({"hyp": {"lr0": -1}}, r"hyp.lr0=-1.0 is out of range \[0, 10\]"),
        ({"hyp": {"mixup": 0.5}}, "not supported"),
        ({"data": {"img": 100}}, "multiple of 32"),
        ({"data": {"cache": "gpu"}}, "not one of"),
        ({"schedule": {"epochs": 2.5}}, "must be an integer"),
        ({"schedule": {"cos_lr": "yes"}}, "true or false"),
        ({"schedule": {"optimizer": "Adam"}}, "not one of"),
        ({"hyp": {"corrupt": 1.5}}, r"hyp.corrupt=1.5 is out of range \[0, 1\]"),
        ({"hyp": {"corrupt_sev_min": 4, "corrupt_sev_max": 2}}, "corrupt_sev_min=4.0 is above"),
    ],
)
def test_bad_values_are_errors(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict(data)


def test_dump_round_trips(tmp_path: Path) -> None:
    config = config_from_dict({"hyp": {"lr0": 0.02}, "data": {"img": 320, "cache": "ram"}})
    path = tmp_path / "config.yaml"
    path.write_text(dump_config(config))
    assert load_config(path) == config
    assert "# initial learning rate" in path.read_text()


def test_yolov5_hyp_file_loads(tmp_path: Path) -> None:
    hyp = tmp_path / "hyp.scratch-low.yaml"
    hyp.write_text(
        "lr0: 0.02\nlrf: 0.01\nmomentum: 0.9\nfl_gamma: 0.0\niou_t: 0.2\nanchor_t: 4.0\nanchors: 3\n"
    )
    assert load_hyp(hyp).hyp.lr0 == 0.02


def test_report_command_line() -> None:
    args = _args(
        "--img", "416", "--batch", "16", "--epochs", "100", "--data", "data.yaml",
        "--cfg", "custom_yolov5s.yaml", "--weights", "", "--name", "yolov5s_results", "--cache",
    )  # fmt: skip
    config = config_from_args(args)
    assert (config.data.img, config.schedule.batch, config.schedule.epochs) == (416, 16, 100)
    assert (config.model.cfg, config.model.weights, config.output.name) == (
        "custom_yolov5s.yaml",
        "",
        "yolov5s_results",
    )
    assert config.data.cache == "ram"
    assert config_from_args(_args("--cache", "disk")).data.cache == "disk"
    assert config_from_args(_args()).data.cache == ""


def test_flags_override_config_and_hyp(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("schedule:\n  epochs: 7\n  batch: 8\n")
    hyp = tmp_path / "h.yaml"
    hyp.write_text("lr0: 0.003\n")
    config = config_from_args(_args("--config", str(cfg), "--hyp", str(hyp), "--epochs", "9", "--cos-lr"))
    assert (config.schedule.epochs, config.schedule.batch, config.hyp.lr0) == (9, 8, 0.003)
    assert config.schedule.cos_lr is True and TrainConfig().schedule.cos_lr is False


@pytest.mark.parametrize("name", ["hyp_stage1.yaml", "hyp_finetune_robust.yaml"])
def test_recipe_hyp_files_turn_the_camera_corruptions_on(name: str) -> None:
    path = Path(__file__).resolve().parents[2] / "recipes" / "shipped_model" / name
    hyp = load_hyp(path, TrainConfig()).hyp
    assert hyp.corrupt == 0.3 and (hyp.corrupt_sev_min, hyp.corrupt_sev_max) == (1.0, 4.0)
