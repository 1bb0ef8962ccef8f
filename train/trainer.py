"""The training loop: warm-up, schedule, accumulation to the nominal batch, AMP, EMA, clipping,
per-epoch validation, checkpoints (last, best, every N epochs), resume and early stopping.

Run folder::

    RUN/config.yaml           effective configuration (loads back with --config)
    RUN/results.csv, .png     per-epoch losses, metrics and learning rates (the .png redrawn at most
                              once a minute, and at the end: run_log.py)
    RUN/weights/last          checkpoint after the latest epoch (with train state: --resume)
    RUN/weights/best          checkpoint with the best fitness (0.1 mAP50 + 0.9 mAP50-95)
    RUN/weights/epoch_N       every --save-period epochs (with train state: roll back to it)
    RUN/PR_curve.png, F1_curve.png   of the best checkpoint on the val split

Checkpoint weights are the EMA weights (what is evaluated and exported); the raw weights being
optimised travel in the train state as ``model.<key>`` with the optimizer buffers.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from stopsign.train import distributed, evaluate, optim
from stopsign.train.checkpoint import (
    TrainState,
    load_checkpoint,
    optimizer_from_state,
    optimizer_to_state,
    save_checkpoint,
    spec_for_model,
)
from stopsign.train.config import TrainConfig, config_from_dict, config_to_dict, dump_config
from stopsign.train.dataset import DataSpec, ImageStore, load_data_spec
from stopsign.train.devices import DistContext, resolve_device, seed_everything
from stopsign.train.ema import ModelEMA
from stopsign.train.loader import YoloDataset, build_loader
from stopsign.train.loss import YoloLoss
from stopsign.train.model.yolo import build_model
from stopsign.train.plots import plot_f1_curve, plot_pr_curve
from stopsign.train.run_log import RunLog
from stopsign.train.weights import build_initial_model

# Batches between reads of the running loss (each read waits for the device to finish).
SYNC_EVERY = 10

# The time budget may grow the epoch count only over this many first epochs (see _fit_schedule_to_budget).
FIT_BUDGET_EPOCHS = 5


@dataclass(frozen=True)
class TimeBudget:
    """Seconds a run may take, counted from ``started`` (a ``time.perf_counter()``); 0 = unlimited."""

    seconds: float
    started: float

    @property
    def active(self) -> bool:
        return self.seconds > 0

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.started)


# (epoch number from 1, {"fitness", "map50", "map50_95", "precision", "recall", "recall_small",
# "fp_rate"}) -> stop? The last two are None when the val split has no small sign / no sign-free
# image. Under DDP every rank must pass a hook: rank 0's is called and its answer broadcast.
EpochHook = Callable[[int, dict[str, Any]], bool]


class TrainError(RuntimeError):
    """Training cannot start or continue; the message says why."""


@dataclass
class TrainResult:
    run_dir: Path
    epochs_run: int
    best_epoch: int
    best_fitness: float
    final: dict[str, Any]


def unique_run_dir(project: Path, name: str, exist_ok: bool) -> Path:
    """project/name, or project/name2, name3, ... when taken (unless ``exist_ok``)."""
    path = project / name
    if exist_ok or not path.exists():
        return path
    n = 2
    while (project / f"{name}{n}").exists():
        n += 1
    return project / f"{name}{n}"


def find_resume_checkpoint(resume: str, project: Path) -> Path:
    """'' = the newest RUN/weights/last under ``project``; a run folder = its weights/last."""
    if resume == "":
        candidates = sorted(project.glob("*/weights/last"), key=lambda p: (p / "spec.json").stat().st_mtime)
        if not candidates:
            raise TrainError(f"--resume: no {project}/*/weights/last checkpoint to resume")
        return candidates[-1]
    path = Path(resume)
    if (path / "weights" / "last").is_dir():
        path = path / "weights" / "last"
    if not (path / "train_state.json").is_file():
        raise TrainError(
            f"--resume {resume}: not a checkpoint with train state (RUN/weights/last or epoch_N)"
        )
    return path


class Trainer:
    """One training run. ``ctx`` places this process in a distributed run (single process by default)."""

    def __init__(
        self,
        config: TrainConfig,
        resume: Path | None = None,
        ctx: DistContext | None = None,
        on_epoch: EpochHook | None = None,
    ):
        self.process_started = time.perf_counter()  # a --time-budget counts from here
        # Called on rank 0 after each epoch's validation with (epoch, metrics); True stops the run
        # (a hyper-parameter search pruning a poor trial). Rank 0's answer holds for every rank.
        self.on_epoch = on_epoch
        self.stopped_by_hook = False
        self.epochs_asked = config.schedule.epochs
        self.ctx = ctx or DistContext()
        self.resume_from = resume
        self.state: TrainState | None = None
        if resume is not None:
            checkpoint = load_checkpoint(resume, with_train_state=True)
            if checkpoint.train_state is None:
                raise TrainError(f"{resume}: checkpoint has no train state to resume from")
            self.state = checkpoint.train_state
            done, planned = (
                int(self.state.meta["epoch"]),
                int(self.state.meta["config"]["schedule"]["epochs"]),
            )
            if done >= planned:
                raise TrainError(f"{resume}: already trained {done}/{planned} epochs; nothing to resume")
            saved = config_from_dict(self.state.meta["config"], source=f"{resume}/train_state.json")
            saved.runtime.device, saved.data.workers = config.runtime.device, config.data.workers
            config = saved
            self.run_dir = Path(self.state.meta["run_dir"])
            if not self.run_dir.is_dir():
                self.run_dir = resume.parent.parent
        else:
            self.run_dir = unique_run_dir(
                Path(config.output.project), config.output.name, config.output.exist_ok
            )
        self.config = config
        self.plan = resolve_device(config.runtime.device)
        if self.plan.distributed and self.ctx.world_size == 1:
            raise TrainError(
                f"--device {config.runtime.device} names {len(self.plan.ids)} GPUs: multi-GPU training runs "
                "one process per GPU (DDP); launch it with torchrun --nproc_per_node "
                f"{len(self.plan.ids)} (see the distributed-training docs)"
            )
        self.device = self.plan.device
        if self.ctx.world_size > 1 and self.device.type == "cuda":
            # One process per GPU: this rank's GPU is the local rank's entry of --device (or its index).
            ids = self.plan.ids or tuple(range(torch.cuda.device_count()))
            self.device = torch.device(f"cuda:{ids[self.ctx.local_rank % len(ids)]}")
        self.amp = config.runtime.amp and self.device.type == "cuda"
        if config.runtime.sync_bn and self.device.type != "cuda":
            # Checked before any process group work, so every rank stops with the same message.
            raise TrainError(
                f"--sync-bn needs CUDA (device here: {self.device}): PyTorch's SyncBatchNorm does not run "
                "on CPU; drop --sync-bn (or use --freeze-bn) for CPU runs"
            )

    def log(self, message: str) -> None:
        if self.ctx.is_main:
            tqdm.write(message)

    # --- set-up --------------------------------------------------------------------------------

    def _setup(self) -> None:
        cfg = self.config
        seed_everything(cfg.runtime.seed + self.ctx.rank, cfg.runtime.deterministic)
        self.data: DataSpec = load_data_spec(cfg.data.data, check=cfg.data.check)
        self.log(
            f"data {self.data.yaml_path}: {len(self.data.train)} train / {len(self.data.val)} val images, "
            f"classes {self.data.names}"
        )
        if self.state is not None:
            model = build_model(self.state.meta["model_yaml"], nc=self.data.nc)
            model.name = self.state.meta.get("model_name", model.name)
            raw = {
                k.removeprefix("model."): v for k, v in self.state.tensors.items() if k.startswith("model.")
            }
            model.load_state_dict(raw, strict=True)
        else:
            model = build_initial_model(cfg.model.cfg, cfg.model.weights, self.data.nc, log=self.log)
        # channels_last: the layout tensor cores want for convolutions under AMP (CUDA only; on CPU
        # it is no faster). Saved checkpoints are made contiguous (checkpoint._contiguous_float).
        self.memory_format = torch.channels_last if self.device.type == "cuda" else torch.contiguous_format
        self.model = model.to(self.device, memory_format=self.memory_format)
        self.train_module = self._distribute(self.model)
        self.hyp = cfg.hyp
        self.loss_fn = YoloLoss.for_model(self.model, cfg.hyp, cfg.data.img)
        batch = cfg.schedule.batch // self.ctx.world_size
        if batch * self.ctx.world_size != cfg.schedule.batch:
            raise TrainError(
                f"--batch {cfg.schedule.batch} is not divisible by world size {self.ctx.world_size}"
            )
        self.batch = batch
        accumulate = max(round(cfg.schedule.nbs / cfg.schedule.batch), 1)
        weight_decay = cfg.hyp.weight_decay * cfg.schedule.batch * accumulate / cfg.schedule.nbs
        self.optimizer = optim.build_optimizer(self.model, cfg.schedule.optimizer, cfg.hyp, weight_decay)
        self.lr_factor = optim.lr_factor(cfg.schedule.epochs, cfg.hyp.lrf, cfg.schedule.cos_lr)
        self.ema = (
            ModelEMA(self.model, cfg.schedule.ema_decay, cfg.schedule.ema_tau) if cfg.schedule.ema else None
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.start_epoch, self.best_fitness, self.best_epoch = 0, -1.0, 0
        self.last_step = -1  # iteration of the latest optimizer step (accumulation counts from it)
        history: list[dict[str, float]] = []
        if self.state is not None:
            self._restore(history)
        cache_dir = Path(cfg.output.project) / ".cache" / f"img{cfg.data.img}"
        img = cfg.data.img
        train_store = ImageStore(self.data.train.images, img, cfg.data.cache, cache_dir)
        val_store = ImageStore(self.data.val.images, img, cfg.data.cache, cache_dir)
        seed = cfg.runtime.seed
        self.train_set = YoloDataset(self.data.train, train_store, img, cfg.hyp, augment=True, seed=seed)
        self.val_set = YoloDataset(self.data.val, val_store, img, cfg.hyp, augment=False, seed=seed)
        pin = self.device.type == "cuda"
        workers = cfg.data.workers
        rank, world = self.ctx.rank, self.ctx.world_size
        self.train_loader = build_loader(self.train_set, batch, workers, True, seed, pin, rank, world)
        # Each rank validates its shard; the records are gathered (see validate).
        self.val_loader = build_loader(self.val_set, batch * 2, workers, False, seed, pin, rank, world)
        if world > 1:
            self.run_dir = Path(distributed.broadcast_from_main(self.ctx, str(self.run_dir)))
            files = [str(p) for p in self.data.train.images + self.data.val.images]
            fingerprint = hashlib.sha256(json.dumps([config_to_dict(cfg), files]).encode()).hexdigest()
            distributed.check_same_everywhere(
                self.ctx, "the configuration and the dataset files", fingerprint
            )
        if self.ctx.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "weights").mkdir(exist_ok=True)
            (self.run_dir / "config.yaml").write_text(dump_config(cfg))
            self.run_log = RunLog(self.run_dir, history)
            self.run_log.write()
        self.log(dump_config(cfg))
        ddp = (
            f"; DDP over {self.ctx.world_size} ranks, batch {self.batch} each"
            if self.ctx.world_size > 1
            else ""
        )
        self.log(f"run folder {self.run_dir}; device {self.device}{' (AMP)' if self.amp else ''}{ddp}")

    def _distribute(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module the training step runs: DDP-wrapped when there are several ranks."""
        if self.ctx.world_size == 1:
            if self.config.runtime.sync_bn:
                self.log("--sync-bn: one process, nothing to synchronise; plain BatchNorm")
            return model
        if self.config.runtime.sync_bn:  # CUDA only: checked in __init__
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)

    def _restore(self, history: list[dict[str, float]]) -> None:
        assert self.state is not None
        meta, tensors = self.state.meta, self.state.tensors
        optimizer_from_state(self.optimizer, meta["optimizer"], tensors)
        if self.ema is not None:
            ema_state = {k.removeprefix("ema."): v for k, v in tensors.items() if k.startswith("ema.")}
            self.ema.ema.load_state_dict(ema_state)
            self.ema.updates = int(meta["ema_updates"])
        if meta.get("scaler"):
            self.scaler.load_state_dict(meta["scaler"])
        self.start_epoch = int(meta["epoch"])
        self.last_step = int(meta["last_step"])
        self.best_fitness, self.best_epoch = float(meta["best_fitness"]), int(meta["best_epoch"])
        history += [row for row in meta["results"] if row["epoch"] <= self.start_epoch]
        self.log(
            f"resuming {self.resume_from} after epoch {self.start_epoch} (best fitness {self.best_fitness:.4f})"
        )

    # --- checkpoints ---------------------------------------------------------------------------

    def _eval_model(self) -> torch.nn.Module:
        return self.ema.ema if self.ema is not None else self.model

    def _save(self, name: str, epoch: int, summary: dict[str, Any], with_state: bool) -> Path:
        model = self._eval_model()
        cfg = self.config
        spec = spec_for_model(
            model,
            self.data.names,
            cfg.data.img,
            training_data={
                "data": str(self.data.yaml_path),
                "train_images": len(self.data.train),
                "epochs": epoch,
            },
            metrics=summary,
        )
        state = None
        if with_state:
            opt_meta, opt_tensors = optimizer_to_state(self.optimizer)
            tensors = dict(opt_tensors)
            tensors.update({f"model.{k}": v for k, v in self.model.state_dict().items()})
            if self.ema is not None:
                tensors.update({f"ema.{k}": v for k, v in self.ema.ema.state_dict().items()})
            meta = {
                "epoch": epoch,
                "best_fitness": self.best_fitness,
                "best_epoch": self.best_epoch,
                "ema_updates": self.ema.updates if self.ema is not None else 0,
                "optimizer": opt_meta,
                "scaler": self.scaler.state_dict() if self.amp else None,
                "config": config_to_dict(cfg),
                "model_yaml": self.model.yaml,
                "model_name": self.model.name,
                "last_step": self.last_step,
                "run_dir": str(self.run_dir),
                "results": self.run_log.rows,
            }
            state = TrainState(meta=meta, tensors=tensors)
        return save_checkpoint(self.run_dir / "weights" / name, model, spec, state)

    # --- loop ----------------------------------------------------------------------------------

    def _train_epoch(self, epoch: int, warmup_iters: int) -> tuple[np.ndarray, float]:
        """One pass over the training split -> (mean box/obj/cls loss, seconds spent waiting for data)."""
        cfg = self.config
        self.model.train()
        if self.config.runtime.freeze_bn:
            for module in self.model.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.eval()
        self.train_loader.sampler.set_epoch(epoch)  # type: ignore[attr-defined]
        batches = len(self.train_loader)
        factor = self.lr_factor(epoch)
        bar = tqdm(
            self.train_loader,
            total=batches,
            desc=f"epoch {epoch + 1}/{cfg.schedule.epochs}",
            unit="batch",
            disable=not self.ctx.is_main,
        )
        self.optimizer.zero_grad()
        data_wait = 0.0
        # Loss items are summed on the device and read back every SYNC_EVERY batches: a read is a
        # host-device sync, and one per batch keeps the CPU from queueing the next step's kernels.
        loss_sum = torch.zeros(3, device=self.device)
        mean_loss = np.zeros(3)
        asked = time.perf_counter()
        for i, (images, targets, _) in enumerate(bar):
            data_wait += time.perf_counter() - asked
            iteration = i + batches * epoch
            # Accumulation follows the global batch, so a DDP run steps exactly when one process would.
            accumulate = optim.accumulation_steps(
                cfg.schedule.batch, cfg.schedule.nbs, iteration, warmup_iters
            )
            optim.apply_schedule(self.optimizer, self.hyp, factor, iteration, warmup_iters)
            x = images.to(self.device, non_blocking=True).float().div_(255)
            x = x.contiguous(memory_format=self.memory_format)
            with torch.autocast(self.device.type, enabled=self.amp):
                preds = self.train_module(x)
                loss, items = self.loss_fn(preds, targets.to(self.device))
            # DDP hook (issue 5): gradients are averaged over ranks; YOLOv5 scales by world size here.
            self.scaler.scale(loss * self.ctx.world_size).backward()
            if iteration - self.last_step >= accumulate:
                self._step()
                self.last_step = iteration
            loss_sum += items
            if (i + 1) % SYNC_EVERY == 0 or i + 1 == batches:
                mean_loss = loss_sum.cpu().numpy() / (i + 1)
                if not np.isfinite(mean_loss).all():
                    raise TrainError(
                        f"epoch {epoch + 1}, batches {max(0, i + 1 - SYNC_EVERY)}-{i}: loss is not finite "
                        f"(box/obj/cls mean {mean_loss.tolist()}: diverged); roll back with --resume "
                        "RUN/weights/epoch_N"
                    )
                bar.set_postfix(
                    box=f"{mean_loss[0]:.4f}",
                    obj=f"{mean_loss[1]:.4f}",
                    cls=f"{mean_loss[2]:.4f}",
                    labels=len(targets),
                )
            asked = time.perf_counter()
        return mean_loss, data_wait

    def _step(self) -> None:
        self.scaler.unscale_(self.optimizer)
        if self.config.schedule.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm=self.config.schedule.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad()
        if self.ema is not None:
            self.ema.update(self.model)

    def validate(self, model: torch.nn.Module, final: bool = False) -> evaluate.EvalResult:
        """Metrics on the validation set: each rank predicts its shard, every rank gets all records."""
        cfg = self.config
        loader = self.val_loader if not final else self._full_val_loader()
        records, losses, ms = evaluate.predict_and_match(
            model,
            loader,
            self.device,
            cfg.output.val_conf,
            cfg.output.val_iou,
            self.loss_fn,
            self.amp,
            desc="val (final)" if final else "val",
            show_progress=self.ctx.is_main,
        )
        if not final and self.ctx.world_size > 1:
            # Every rank gets every rank's records, so all compute the same metrics and take the same
            # best-checkpoint and early-stopping decisions. DistributedSampler pads shards to equal
            # length: keep one record per image. Losses and timings are averaged over ranks.
            parts = distributed.gather_to_main(self.ctx, [(records, losses, ms)])
            unique = {r.index: r for part in parts for r in part[0]}
            records = [unique[i] for i in sorted(unique)]
            losses = None if losses is None else np.mean([part[1] for part in parts], axis=0)
            ms = float(np.mean([part[2] for part in parts]))
        return evaluate.summarise(records, self.data.val, self.data.nc, losses, ms)

    def _full_val_loader(self) -> torch.utils.data.DataLoader:
        if self.ctx.world_size == 1:
            return self.val_loader
        cfg = self.config
        pin = self.device.type == "cuda"
        return build_loader(self.val_set, self.batch * 2, cfg.data.workers, False, cfg.runtime.seed, pin)

    def run(self) -> TrainResult:
        self._setup()
        cfg = self.config
        epochs = cfg.schedule.epochs
        batches = len(self.train_loader)
        warmup_iters = round(cfg.hyp.warmup_epochs * batches) if cfg.hyp.warmup_epochs > 0 else 0
        warmup_iters = max(warmup_iters, 100) if warmup_iters else 0
        started = time.perf_counter()
        budget = TimeBudget(cfg.schedule.time_budget * 60, self.process_started)
        epoch_durations: list[float] = []
        epoch = self.start_epoch
        for epoch in range(self.start_epoch, epochs):
            if epoch >= self.config.schedule.epochs:  # the time budget cut the schedule short
                break
            epoch_started = time.perf_counter()
            train_loss, data_wait = self._train_epoch(epoch, warmup_iters)
            val_started = time.perf_counter()
            result = self.validate(self._eval_model())
            val_seconds = time.perf_counter() - val_started
            if budget.active and self.start_epoch == 0:  # before saving: checkpoints hold the fitted plan
                epoch_durations.append(time.perf_counter() - epoch_started)
                self._fit_schedule_to_budget(budget, epoch + 1, epoch_durations)
            m = result.metrics
            fit = evaluate.fitness(m.map50, m.map)
            summary = result.summary()
            lrs = [g["lr"] for g in self.optimizer.param_groups]
            val_loss = result.losses if result.losses is not None else np.full(3, np.nan)
            improved = fit > self.best_fitness
            if improved:
                self.best_fitness, self.best_epoch = fit, epoch + 1
            if self.ctx.is_main:
                self.run_log.add(
                    {
                        "epoch": epoch + 1,
                        "train/box_loss": train_loss[0],
                        "train/obj_loss": train_loss[1],
                        "train/cls_loss": train_loss[2],
                        "metrics/precision": m.precision,
                        "metrics/recall": m.recall,
                        "metrics/mAP_0.5": m.map50,
                        "metrics/mAP_0.5:0.95": m.map,
                        "val/box_loss": val_loss[0],
                        "val/obj_loss": val_loss[1],
                        "val/cls_loss": val_loss[2],
                        "x/lr0": lrs[0],
                        "x/lr1": lrs[1],
                        "x/lr2": lrs[2],
                    }
                )
                self._save("last", epoch + 1, summary, with_state=True)
                if improved:
                    self._save("best", epoch + 1, summary, with_state=False)
                period = cfg.output.save_period
                if period > 0 and (epoch + 1) % period == 0:
                    self._save(f"epoch_{epoch + 1}", epoch + 1, summary, with_state=True)
            elapsed = time.perf_counter() - started
            done = epoch + 1 - self.start_epoch
            epoch_seconds = time.perf_counter() - epoch_started
            epochs = self.config.schedule.epochs
            eta = elapsed / done * (epochs - epoch - 1)
            self.log(
                f"epoch {epoch + 1}/{epochs}: P {m.precision:.3f} R {m.recall:.3f} mAP50 {m.map50:.3f} "
                f"mAP50-95 {m.map:.3f} fitness {fit:.4f}{' (best)' if improved else ''}; "
                f"{epoch_seconds:.1f} s (data wait {data_wait:.1f} s, val {val_seconds:.1f} s), "
                f"ETA {eta / 60:.1f} min"
            )
            # Rank 0's clock decides for every rank, so DDP ranks never disagree on the epoch count.
            out_of_time = budget.left() < time.perf_counter() - epoch_started
            if budget.active and distributed.broadcast_from_main(self.ctx, out_of_time):
                self.log(f"time budget: {budget.left():.0f} s left, less than an epoch; stopping")
                break
            if self.on_epoch is not None:
                metrics = {"fitness": fit, "map50": m.map50, "map50_95": m.map, "precision": m.precision,
                           "recall": m.recall, "recall_small": summary["recall_small"],
                           "fp_rate": summary.get("fp_image_rate")}  # fmt: skip
                stop = bool(self.on_epoch(epoch + 1, metrics)) if self.ctx.is_main else False
                if distributed.broadcast_from_main(self.ctx, stop):
                    self.log(f"stopped after epoch {epoch + 1} by the caller (a search pruned this trial)")
                    self.stopped_by_hook = True
                    break
            patience = cfg.schedule.patience
            if patience and epoch + 1 - self.best_epoch >= patience:
                self.log(f"early stop: no improvement for {patience} epochs (best epoch {self.best_epoch})")
                break
        final = self._finish()
        return TrainResult(
            self.run_dir, epoch + 1 - self.start_epoch, self.best_epoch, self.best_fitness, final
        )

    def _fit_schedule_to_budget(
        self, budget: TimeBudget, epochs_done: int, epoch_seconds: list[float]
    ) -> None:
        """Fit the epoch count to the time budget, so the learning-rate schedule anneals before time
        runs out. Epoch time is the median of the last few epochs, the first left out once there
        are others (it pays for cuDNN autotuning and worker start-up). Over the first
        FIT_BUDGET_EPOCHS epochs, still in warm-up, the count may grow or shrink; later it only
        shrinks, by the few epochs that slower-than-expected epochs cost."""
        recent = epoch_seconds[1:][-FIT_BUDGET_EPOCHS:] or epoch_seconds
        per_epoch = float(np.median(recent))
        schedule = self.config.schedule
        fits = epochs_done + int(budget.left() // per_epoch)
        cap = self.epochs_asked if epochs_done <= FIT_BUDGET_EPOCHS else schedule.epochs
        fitted = int(distributed.broadcast_from_main(self.ctx, max(epochs_done, min(cap, fits))))
        if fitted != schedule.epochs:
            self.log(
                f"time budget {budget.seconds / 60:.1f} min at {per_epoch:.1f} s/epoch: "
                f"{fitted} epochs (was {schedule.epochs})"
            )
            schedule.epochs = fitted
            self.lr_factor = optim.lr_factor(fitted, self.config.hyp.lrf, schedule.cos_lr)

    def _finish(self) -> dict[str, Any]:
        """Validate the best checkpoint once more; write plots and its operating threshold.

        Rank 0 alone does this on the whole val split (its outputs are files only rank 0 writes);
        the other ranks leave at once rather than wait at a barrier, which could outlast the
        collective timeout on a large val split.
        """
        if not self.ctx.is_main:
            return {}
        self.run_log.close()
        best_dir = self.run_dir / "weights" / "best"
        if not best_dir.is_dir():
            return {}
        best = load_checkpoint(best_dir)
        result = self.validate(best.model.to(self.device), final=True)
        plot_pr_curve(result, self.data.names, self.run_dir / "PR_curve.png")
        plot_f1_curve(result, self.data.names, self.run_dir / "F1_curve.png")
        spec = evaluate.spec_with_result(best.spec, result, "f1")
        spec.save(best_dir / "spec.json")
        self.log(evaluate.format_result(result, self.data.names))
        self.log(f"best checkpoint {best_dir}: operating_threshold {spec.operating_threshold}")
        return result.summary()


def train(
    config: TrainConfig,
    resume: Path | None = None,
    ctx: DistContext | None = None,
    on_epoch: EpochHook | None = None,
) -> TrainResult:
    return Trainer(config, resume, ctx, on_epoch).run()
