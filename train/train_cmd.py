"""``edge-train train``: YOLOv5 train.py's flags, e.g. the report's

    edge-train train --img 416 --batch 16 --epochs 100 --data data.yaml \\
        --cfg custom_yolov5s.yaml --weights '' --name yolov5s_results --cache
"""

from __future__ import annotations

import argparse
import signal
import socket
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from stopsign.train.checkpoint import CheckpointError
from stopsign.train.config import ConfigError, TrainConfig, config_from_dict, load_config, load_hyp
from stopsign.train.data.layout import DatasetError
from stopsign.train.devices import DeviceError, DistContext
from stopsign.train.model.yolo import ModelConfigError

if TYPE_CHECKING:
    from stopsign.train.trainer import TrainResult

# flag dest -> (group, key) in TrainConfig; flags left at None do not override.
FLAG_KEYS: dict[str, tuple[str, str]] = {
    "data": ("data", "data"),
    "img": ("data", "img"),
    "cache": ("data", "cache"),
    "workers": ("data", "workers"),
    "cfg": ("model", "cfg"),
    "weights": ("model", "weights"),
    "epochs": ("schedule", "epochs"),
    "batch": ("schedule", "batch"),
    "optimizer": ("schedule", "optimizer"),
    "cos_lr": ("schedule", "cos_lr"),
    "patience": ("schedule", "patience"),
    "time_budget": ("schedule", "time_budget"),
    "device": ("runtime", "device"),
    "seed": ("runtime", "seed"),
    "deterministic": ("runtime", "deterministic"),
    "dist_backend": ("runtime", "dist_backend"),
    "sync_bn": ("runtime", "sync_bn"),
    "freeze_bn": ("runtime", "freeze_bn"),
    "project": ("output", "project"),
    "name": ("output", "name"),
    "exist_ok": ("output", "exist_ok"),
    "save_period": ("output", "save_period"),
}


def add_parser(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--config", help="full configuration YAML (as written to RUN/config.yaml); flags override it")
    add("--hyp", help="YOLOv5 hyper-parameter YAML (lr0, momentum, box, obj, hsv_h, mosaic, ...)")
    add("--data", help="data.yaml or a dataset folder holding one")
    add("--img", "--img-size", "--imgsz", dest="img", type=int, help="input size in pixels (default 416)")
    add("--batch", "--batch-size", dest="batch", type=int, help="total batch size (default 16)")
    add("--epochs", type=int, help="epochs (default 100)")
    add(
        "--cfg",
        help="model YAML or shipped name (default yolov5n; '' with --weights = its own YAML), "
        "or a Darknet .cfg (yolov4-tiny.cfg, yolov4.cfg, yolov3-tiny.cfg, ... or your own)",
    )
    add("--weights", help="initial checkpoint folder (ours or from import-yolov5); '' = random init")
    add("--name", help="run name under --project (default exp)")
    add("--project", help="runs folder (default runs/train)")
    add("--exist-ok", dest="exist_ok", action="store_const", const=True, help="reuse project/name")
    add(
        "--cache",
        nargs="?",
        const="ram",
        choices=("ram", "disk"),
        help="cache decoded images: bare or 'ram' = memory, 'disk' = .npy files under project/.cache",
    )
    add("--workers", type=int, help="data-loader worker processes (default 2)")
    add("--device", help="'' auto, cpu, cuda, 0, or 0,1 (several GPUs: DDP under torchrun)")
    add("--optimizer", choices=("SGD", "AdamW"), help="optimizer (default SGD)")
    add("--cos-lr", dest="cos_lr", action="store_const", const=True, help="cosine learning-rate schedule")
    add("--patience", type=int, help="early-stopping patience in epochs (default 100, 0 = off)")
    add(
        "--time-budget",
        dest="time_budget",
        type=float,
        help="minutes for the whole run: fit the epoch count (and LR schedule) to it (default 0 = off)",
    )
    add("--save-period", dest="save_period", type=int, help="keep weights/epoch_N every N epochs")
    add("--seed", type=int, help="random seed (default 0)")
    add("--deterministic", action="store_const", const=True, help="deterministic algorithms")
    add(
        "--dist-backend",
        dest="dist_backend",
        choices=("nccl", "gloo"),
        help="DDP backend (default: nccl on CUDA, gloo on CPU)",
    )
    add(
        "--sync-bn",
        dest="sync_bn",
        action="store_const",
        const=True,
        help="SyncBatchNorm across ranks (CUDA only)",
    )
    add("--freeze-bn", dest="freeze_bn", action="store_const", const=True, help="keep BatchNorm in eval mode")
    add(
        "--evolve",
        type=int,
        metavar="N",
        help="search the hyper-parameters instead: N trials of edge-train tune (runs/tune/stopsign)",
    )
    add(
        "--resume",
        nargs="?",
        const="",
        default=None,
        help="continue a run: bare = newest RUN/weights/last under --project; or RUN, RUN/weights/last, "
        "or RUN/weights/epoch_N to roll back to that epoch",
    )


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    config = TrainConfig()
    if args.config:
        config = load_config(args.config, config)
    if args.hyp:
        config = load_hyp(args.hyp, config)
    overrides: dict[str, dict] = {}
    for dest, (group, key) in FLAG_KEYS.items():
        value = getattr(args, dest, None)
        if value is not None:
            overrides.setdefault(group, {})[key] = value
    return config_from_dict(overrides, config, source="command line")


def run(args: argparse.Namespace) -> int:
    if getattr(args, "evolve", None):
        from stopsign.train.tune_cmd import run_evolve

        return run_evolve(args)
    # Imported here so `edge-train info` does not pay for the training stack.
    import torch

    from stopsign.train.distributed import exit_now, init_distributed, process_group_session
    from stopsign.train.trainer import find_resume_checkpoint, train

    ctx = None
    try:
        config = config_from_args(args)
        resume = None
        if args.resume is not None:
            resume = find_resume_checkpoint(args.resume, Path(config.output.project))
        elif not config.data.data:
            raise ConfigError("command line: --data is required (a data.yaml or dataset folder)")
        # Normal exit: the ranks leave the process group together. Error, Ctrl-C or SIGTERM: this
        # rank leaves without a collective (its peers may be dead or blocked).
        with process_group_session(report=lambda line: print(line, flush=True)):
            # Under torchrun or srun this joins the process group; alone it is a single process.
            cuda = torch.cuda.is_available() and config.runtime.device != "cpu"
            ctx = init_distributed(config.runtime.dist_backend, use_cuda=cuda)
            if ctx.world_size > 1:
                print(
                    f"rank {ctx.rank}/{ctx.world_size} (local {ctx.local_rank}) on {socket.gethostname()}",
                    flush=True,
                )
            result = train(config, resume, ctx)
    except (Exception, KeyboardInterrupt) as exc:  # every way out of a rank: see _report_failure
        code = _report_failure(exc, ctx)
        if ctx is not None and ctx.world_size > 1:
            exit_now(code)  # no interpreter teardown: see distributed.exit_now
        if code == 1:
            raise  # a bug: the traceback is the message
        return code
    if ctx is not None and ctx.world_size > 1:
        if ctx.is_main:
            print(_done_line(result), flush=True)
        exit_now(0)
    print(_done_line(result))
    return 0


def _done_line(result: TrainResult) -> str:
    return (
        f"done: {result.epochs_run} epoch(s), best epoch {result.best_epoch} (fitness {result.best_fitness:.4f}); "
        f"results in {result.run_dir}"
    )


def _report_failure(exc: BaseException, ctx: DistContext | None) -> int:
    """Print why this rank stops (the run's first error once, over all ranks); its exit code.

    Exit codes: 128 + signal for Ctrl-C / SIGTERM, 2 for a known error (config, data, device,
    checkpoint, ranks disagreeing), 1 for anything else (a bug: traceback printed).
    """
    from stopsign.train.distributed import DistributedError, Terminated, claim_first_error, linger_for_peers
    from stopsign.train.trainer import TrainError

    distributed = ctx is not None and ctx.world_size > 1
    if isinstance(exc, (KeyboardInterrupt, Terminated)):
        signum = exc.signum if isinstance(exc, Terminated) else signal.SIGINT
        print(f"edge-train train: interrupted by {signal.Signals(signum).name}", flush=True)
        if distributed:
            assert ctx is not None
            # Recorded as the first error, so a peer that stops on the broken connection says so.
            claim_first_error(ctx, f"interrupted by {signal.Signals(signum).name}")
            linger_for_peers(ctx)
        return 128 + signum
    known = (ConfigError, DatasetError, DeviceError, CheckpointError, ModelConfigError, TrainError,
             DistributedError, ValueError)  # fmt: skip
    code = 2 if isinstance(exc, known) else 1
    if not distributed:
        if code == 2:
            print(f"edge-train train: {exc}", flush=True)
        return code
    assert ctx is not None
    message = str(exc) if code == 2 else f"{type(exc).__name__}: {exc}"
    first = claim_first_error(ctx, message)
    if first is None:
        print(f"edge-train train: rank {ctx.rank}: {message}", flush=True)
        if code == 1:
            traceback.print_exception(exc)
    else:
        print(
            f"edge-train train: rank {ctx.rank} stopped after the first error ({first.split(':')[0]})",
            flush=True,
        )
    linger_for_peers(ctx)
    return code
