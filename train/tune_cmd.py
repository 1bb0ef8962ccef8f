"""``edge-train tune``: hyper-parameter search with Optuna (see :mod:`stopsign.train.tune`).

    edge-train tune --data data/real --img 320 --epochs 10 --trials 30
    edge-train tune ... --storage runs/tune/study.journal     # workers sharing a file system
    edge-train train --data data/real --evolve 30            # the YOLOv5 spelling of the same

Takes every ``edge-train train`` flag for the base configuration (data, model, epochs, batch,
device, --hyp as the starting point), plus the search's own flags below.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from stopsign.train import train_cmd
from stopsign.train.config import ConfigError, TrainConfig
from stopsign.train.data.layout import DatasetError
from stopsign.train.tune import DEFAULT_SPACE, OBJECTIVES, PRUNERS, TuneError, TuneOptions, load_space


def add_parser(parser: argparse.ArgumentParser) -> None:
    train_cmd.add_parser(parser)
    add_search_flags(parser)


def add_search_flags(parser: argparse.ArgumentParser, trials_flag: str = "--trials") -> None:
    group = parser.add_argument_group("search (edge-train tune)")
    if trials_flag == "--trials":
        group.add_argument(
            "--trials", type=int, default=20, help="finished trials the study should hold (default 20)"
        )
    group.add_argument("--study", default="stopsign", help="study name in the storage (default stopsign)")
    group.add_argument(
        "--storage",
        default="",
        help="'' = SQLite file under --out; journal:PATH or *.journal = Optuna journal file (shared file "
        "system, many workers); or a database URL",
    )
    group.add_argument(
        "--space", type=Path, default=DEFAULT_SPACE, help="search-space YAML (default: shipped)"
    )
    group.add_argument("--objective", choices=OBJECTIVES, default="fitness",
                       help="maximised per epoch and at the end: fitness (0.1 mAP50 + 0.9 mAP50-95), map50, recall")  # fmt: skip
    group.add_argument(
        "--pruner", choices=PRUNERS, default="median", help="stop poor trials early (default median)"
    )
    group.add_argument(
        "--timeout", type=float, help="seconds this worker may search (default: until --trials)"
    )
    group.add_argument("--out", type=Path, help="study outputs (default runs/tune/STUDY)")
    group.add_argument(
        "--stale-after",
        type=float,
        default=3600.0,
        help="a RUNNING trial with no finished epoch for this long is taken as crashed and retried (default 3600 s)",
    )


def run_evolve(args: argparse.Namespace) -> int:
    """``edge-train train --evolve N``: ``tune`` with N trials and the search's defaults."""
    search = argparse.ArgumentParser(add_help=False)
    add_search_flags(search)
    defaults = search.parse_args([])
    for key, value in vars(defaults).items():
        if not hasattr(args, key):
            setattr(args, key, value)
    return run(args, trials=args.evolve)


def run(args: argparse.Namespace, trials: int | None = None) -> int:
    from stopsign.train.tune import run_search, write_outputs

    try:
        if getattr(args, "resume", None) is not None:
            raise TuneError("--resume does not apply to a search: a study resumes by running tune again")
        base = train_cmd.config_from_args(args)
        worker = int(os.environ.get("SLURM_ARRAY_TASK_ID", "0") or 0)  # one worker of an array
        if not base.data.data:
            raise ConfigError("command line: --data is required (a data.yaml or dataset folder)")
        options = TuneOptions(
            trials=trials if trials is not None else args.trials,
            out=args.out or Path("runs/tune") / args.study,
            study=args.study,
            storage=args.storage,
            space=load_space(args.space),
            objective=args.objective,
            pruner=args.pruner,
            seed=base.runtime.seed,
            timeout_s=args.timeout,
            stale_after_s=args.stale_after,
            sampler_seed=base.runtime.seed * 1000 + worker,
            baseline=worker == 0,
        )
        study = run_search(base, options, train_trial)
        written = write_outputs(study, base, options.out)
    except (TuneError, ConfigError, DatasetError) as exc:
        print(f"edge-train tune: {exc}", flush=True)
        return 2
    for what, path in written.items():
        print(f"{what}: {path}")
    return 0


def train_trial(config: TrainConfig, on_epoch) -> tuple[dict[str, float], bool]:
    """One trial with the real trainer: (final metrics of its best checkpoint, pruned?)."""
    from stopsign.train.trainer import Trainer

    trainer = Trainer(config, None, None, on_epoch)
    result = trainer.run()
    final = {
        "fitness": result.best_fitness,
        "map50": float(result.final.get("map50", 0.0)),
        "recall": float(result.final.get("recall", 0.0)),
    }
    return final, trainer.stopped_by_hook
