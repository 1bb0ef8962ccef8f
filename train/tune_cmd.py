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
from typing import Any

from stopsign.train import train_cmd
from stopsign.train.config import ConfigError, TrainConfig, config_from_dict, config_to_dict
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
    group.add_argument(
        "--objective",
        default="fitness",
        help=f"one of {', '.join(OBJECTIVES)} (default fitness = 0.1 mAP50 + 0.9 mAP50-95); recall and "
        "fp_rate are at the F1-optimal threshold, recall_small counts signs under 32 px in the input. "
        "Two or three joined by commas (e.g. map50,recall_small) search for the Pareto front",
    )
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
    from stopsign.train.distributed import DistributedError, detect_launch
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
        launch = detect_launch(os.environ)
        if launch is not None and launch.world_size > 1:
            return run_distributed(base, options)
        study = run_search(base, options, train_trial)
        written = write_outputs(study, base, options.out)
    except (TuneError, ConfigError, DatasetError, DistributedError) as exc:
        print(f"edge-train tune: {exc}", flush=True)
        return 2
    for what, path in written.items():
        print(f"{what}: {path}")
    return 0


def run_distributed(base: TrainConfig, options: TuneOptions) -> int:
    """One search worker made of several DDP ranks (under torchrun or a multi-task srun).

    Rank 0 alone talks to the study: for each trial it sends the trial's configuration to the
    other ranks, and every rank trains it together (rank 0's pruning decision reaches all of
    them through the trainer's epoch hook). ``None`` tells the other ranks the search is over.
    Failures end every rank the way ``edge-train train`` does (first error printed once).
    """
    import torch

    from stopsign.train.distributed import (
        broadcast_from_main,
        exit_now,
        init_distributed,
        process_group_session,
    )
    from stopsign.train.train_cmd import _report_failure
    from stopsign.train.tune import run_search, write_outputs

    ctx = None
    written: dict[str, Path] = {}
    try:
        with process_group_session(report=lambda line: print(line, flush=True)):
            cuda = torch.cuda.is_available() and base.runtime.device != "cpu"
            ctx = init_distributed(base.runtime.dist_backend, use_cuda=cuda)
            print(f"rank {ctx.rank}/{ctx.world_size} of this search worker", flush=True)
            if ctx.is_main:
                group = ctx

                def train_together(config: TrainConfig, on_epoch) -> tuple[dict[str, Any], bool]:
                    broadcast_from_main(group, config_to_dict(config))
                    return train_trial(config, on_epoch, group)

                try:
                    study = run_search(base, options, train_together)
                    written = write_outputs(study, base, options.out)
                finally:
                    broadcast_from_main(ctx, None)  # the other ranks stop waiting for trials
            else:
                while (doc := broadcast_from_main(ctx, None)) is not None:
                    assert isinstance(doc, dict)
                    train_trial(config_from_dict(doc, source="rank 0's trial"), lambda _e, _m: False, ctx)
    except (Exception, KeyboardInterrupt) as exc:  # every way out of a rank, as in edge-train train
        code = _report_failure(exc, ctx)
        exit_now(code)
    if ctx is not None and ctx.is_main:
        for what, path in written.items():
            print(f"{what}: {path}", flush=True)
    exit_now(0)
    return 0  # not reached: exit_now ends the rank


def train_trial(config: TrainConfig, on_epoch, ctx=None) -> tuple[dict[str, Any], bool]:
    """One trial with the real trainer: (final metrics of its best checkpoint, pruned?).

    Under DDP every rank passes a hook (only rank 0's is called; its answer is broadcast)."""
    from stopsign.train.trainer import Trainer

    trainer = Trainer(config, None, ctx, on_epoch)
    result = trainer.run()
    final = {
        "fitness": result.best_fitness,
        "map50": float(result.final.get("map50", 0.0)),
        "recall": float(result.final.get("recall", 0.0)),
        "recall_small": result.final.get("recall_small"),
        "fp_rate": result.final.get("fp_image_rate"),
    }
    return final, trainer.stopped_by_hook
