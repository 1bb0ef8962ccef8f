"""Hyper-parameter search over the trainer's ``hyp`` group, with Optuna.

One *study* holds the trials; each trial trains the model with hyper-parameters drawn from the
search space (``tune_space.yaml``), reports its validation objective after every epoch so the
pruner can stop a poor trial early, and keeps its own run folder. Every trial trains with the
same seed, so trials differ only by their hyper-parameters and the best one can be trained again
exactly (``best_hyp.yaml`` + the same ``--seed``).

The study lives in a storage that several workers may share: an SQLite file (the default,
nothing to start), Optuna's journal file (many workers on a shared file system, e.g. a SLURM job
array), or any database URL Optuna takes. Workers never run the same trial twice (the storage
hands out trial numbers), stop once the study holds ``trials`` finished trials, and a worker
that starts finds trials left RUNNING by a crashed or preempted one, marks them failed and runs
their hyper-parameters again.
"""

from __future__ import annotations

import csv
import math
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from stopsign.train.config import Hyp, TrainConfig, config_from_dict

DEFAULT_SPACE = Path(__file__).with_name("tune_space.yaml")
OBJECTIVES = ("fitness", "map50", "recall")
PRUNERS = ("median", "hyperband", "none")


class TuneError(ValueError):
    """A search setting or space file is wrong; the message names the file and the key."""


@dataclass(frozen=True)
class Range:
    """One searched hyper-parameter: ``low`` <= value <= ``high``, log-uniform when ``log``."""

    name: str
    low: float
    high: float
    log: bool = False


def load_space(path: str | Path = DEFAULT_SPACE) -> list[Range]:
    """The search space in ``path``; :class:`TuneError` names the key for any mistake."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TuneError(f"{path}: no such search-space file") from None
    except yaml.YAMLError as exc:
        raise TuneError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict) or not data:
        raise TuneError(f"{path}: expected a mapping of hyper-parameter: {{low, high, log}}")
    fields = {f.name: f for f in Hyp.__dataclass_fields__.values()}
    ranges = []
    for name, spec in data.items():
        where = f"{path}: {name}"
        if name not in fields:
            raise TuneError(f"{where}: not a hyper-parameter of the trainer (known: {sorted(fields)})")
        if (
            not isinstance(spec, dict)
            or set(spec) - {"low", "high", "log"}
            or not {"low", "high"} <= set(spec)
        ):
            raise TuneError(f"{where}: expected {{low: number, high: number, log: true|false}}, got {spec!r}")
        try:
            low, high = float(spec["low"]), float(spec["high"])
        except (TypeError, ValueError):
            raise TuneError(f"{where}: low and high must be numbers, got {spec!r}") from None
        log = spec.get("log", False)
        if not isinstance(log, bool):
            raise TuneError(f"{where}: log must be true or false, got {log!r}")
        if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
            raise TuneError(f"{where}: low {low:g} must be below high {high:g}")
        if log and low <= 0:
            raise TuneError(f"{where}: a log range must be above zero, got low {low:g}")
        meta = fields[name].metadata
        lo, hi = meta.get("lo"), meta.get("hi")
        if (lo is not None and low < lo) or (hi is not None and high > hi):
            raise TuneError(f"{where}: [{low:g}, {high:g}] leaves the trainer's allowed range [{lo}, {hi}]")
        ranges.append(Range(name, low, high, log))
    return ranges


@dataclass(frozen=True)
class TuneOptions:
    """What to search and where to keep it (see ``edge-train tune --help``)."""

    trials: int
    out: Path
    study: str = "stopsign"
    storage: str = ""
    space: list[Range] | None = None
    objective: str = "fitness"
    pruner: str = "median"
    seed: int = 0
    timeout_s: float | None = None
    stale_after_s: float = 3600.0
    # The sampler's seed: a distinct one per worker (e.g. per SLURM array task), or workers that
    # start together would draw the same first trials.
    sampler_seed: int | None = None
    # Trial 0 of a new study trains the base configuration's own values (where they lie inside the
    # space), so the search's gain is measured against them. One worker of a group should do it.
    baseline: bool = True

    def __post_init__(self) -> None:
        if self.trials < 1:
            raise TuneError(f"--trials must be >= 1, got {self.trials}")
        if self.objective not in OBJECTIVES:
            raise TuneError(f"--objective {self.objective!r}: expected one of {OBJECTIVES}")
        if self.pruner not in PRUNERS:
            raise TuneError(f"--pruner {self.pruner!r}: expected one of {PRUNERS}")


def open_storage(storage: str, out: Path) -> Any:
    """An Optuna storage for ``storage``: "" (SQLite under ``out``), a journal file, or a URL.

    A journal file is named ``journal:PATH`` or a path ending in ``.journal`` / ``.log``; it needs
    only a shared file system, which is what a cluster's workers have in common.
    """
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if not storage:
        out.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(out / 'study.db').resolve()}"
    path = storage.removeprefix("journal:")
    if storage.startswith("journal:") or path.endswith((".journal", ".log")):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(path))
    if "://" not in storage:
        raise TuneError(f"--storage {storage!r}: expected a database URL, journal:PATH or a *.journal file")
    return storage


def _pruner(name: str) -> Any:
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1)
    return optuna.pruners.NopPruner()


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def retry_stale_trials(study: Any, stale_after_s: float) -> list[int]:
    """Trials left RUNNING by a worker that is gone: mark them failed and queue their parameters
    again. Gone = a process of this host that no longer exists, or no sign of life (a finished
    epoch) for ``stale_after_s``. Returns the trial numbers retried."""
    from optuna.trial import TrialState

    retried = []
    host = socket.gethostname()
    now = time.time()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = str(trial.user_attrs.get("worker", ""))
        worker_host, _, pid = worker.partition(":")
        alive_at = float(trial.user_attrs.get("alive_at", trial.datetime_start.timestamp()))
        dead_here = worker_host == host and pid.isdigit() and not _process_exists(int(pid))
        if dead_here or now - alive_at > stale_after_s:
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number}, skip_if_exists=False)
            retried.append(trial.number)
    return retried


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


TrainFn = Callable[[TrainConfig, Callable[[int, dict[str, float]], bool]], tuple[dict[str, float], bool]]


def run_search(
    base: TrainConfig, options: TuneOptions, train_fn: TrainFn, log: Callable[[str], None] = print
) -> Any:
    """Run trials until the study holds ``options.trials`` finished ones; returns the study.

    ``train_fn(config, on_epoch) -> (final metrics, pruned)`` trains one trial (the CLI passes the
    real trainer; tests may too).
    """
    import optuna
    from optuna.trial import TrialState

    space = options.space if options.space is not None else load_space()
    storage = open_storage(options.storage, options.out)
    study = optuna.create_study(
        study_name=options.study,
        storage=storage,
        load_if_exists=True,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(
            seed=options.seed if options.sampler_seed is None else options.sampler_seed,
            n_startup_trials=min(5, options.trials),
        ),
        pruner=_pruner(options.pruner),
    )
    base_values = {r.name: float(getattr(base.hyp, r.name)) for r in space}
    if options.baseline and not study.trials and all(r.low <= base_values[r.name] <= r.high for r in space):
        study.enqueue_trial(base_values, user_attrs={"baseline": True})
    retried = retry_stale_trials(study, options.stale_after_s)
    if retried:
        log(f"tune: trials {retried} were left running by a worker that is gone: failed, queued again")

    def objective(trial: optuna.Trial) -> float:
        values = {r.name: trial.suggest_float(r.name, r.low, r.high, log=r.log) for r in space}
        trial.set_user_attr("worker", _worker_id())
        trial.set_user_attr("alive_at", time.time())
        run_name = f"trial_{trial.number:04d}"
        config = config_from_dict(
            {
                "hyp": values,
                "runtime": {"seed": options.seed},
                "output": {"project": str(options.out / "trials"), "name": run_name, "exist_ok": True},
            },
            base,
            source=f"trial {trial.number}",
        )
        trial.set_user_attr("run_dir", str(options.out / "trials" / run_name))

        def on_epoch(epoch: int, metrics: dict[str, float]) -> bool:
            trial.set_user_attr("alive_at", time.time())
            trial.report(metrics[options.objective], epoch)
            return trial.should_prune()

        final, pruned = train_fn(config, on_epoch)
        if pruned:
            raise optuna.TrialPruned()
        return float(final[options.objective])

    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    done = len(study.get_trials(deepcopy=False, states=finished))
    log(
        f"tune: study {options.study!r}: {done} of {options.trials} trials finished; space {[r.name for r in space]}"
    )
    if done < options.trials:
        study.optimize(
            objective,
            n_trials=None if options.timeout_s else options.trials - done,
            timeout=options.timeout_s,
            callbacks=[optuna.study.MaxTrialsCallback(options.trials, states=finished)],
            gc_after_trial=True,
        )
    return study


def write_outputs(study: Any, base: TrainConfig, out: Path) -> dict[str, Path]:
    """best_hyp.yaml (the whole hyp group, best values in), trials.csv, and plots (PNG)."""
    from optuna.trial import TrialState

    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if complete:
        best = study.best_trial
        hyp = {**base.hyp.__dict__, **best.params}
        header = (
            f"# edge-train tune: best of {len(complete)} complete trials in study {study.study_name!r}: "
            f"trial {best.number}, objective {best.value:.5f}\n"
            f"# train with: edge-train train --hyp best_hyp.yaml --seed {base.runtime.seed} (same data and epochs)\n"
        )
        path = out / "best_hyp.yaml"
        path.write_text(header + yaml.safe_dump(hyp, sort_keys=False), encoding="utf-8")
        written["best_hyp"] = path
    names = sorted({name for t in study.trials for name in t.params})
    path = out / "trials.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["number", "state", "value", "epochs_reported", "seconds", "run_dir", *names])
        for t in study.trials:
            seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else ""
            writer.writerow([t.number, t.state.name, "" if t.value is None else f"{t.value:.6f}",
                             len(t.intermediate_values), seconds, t.user_attrs.get("run_dir", ""),
                             *[t.params.get(n, "") for n in names]])  # fmt: skip
    written["trials"] = path
    if len(complete) >= 2:
        written.update(_plots(study, out))
    return written


def _plots(study: Any, out: Path) -> dict[str, Path]:
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.exceptions import ExperimentalWarning
    from optuna.visualization import matplotlib as ovm

    written = {}
    for name, draw in (
        ("history", ovm.plot_optimization_history),
        ("importances", ovm.plot_param_importances),
        ("parallel", ovm.plot_parallel_coordinate),
    ):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter(
                    "ignore", ExperimentalWarning
                )  # the matplotlib plots are "experimental"
                axes: Any = draw(study)
        except (ValueError, RuntimeError) as exc:  # e.g. importances need two distinct values
            print(f"tune: no {name} plot ({exc})")
            continue
        figure: Any = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
        figure.set_size_inches(9, 5)
        figure.tight_layout()
        path = out / f"{name}.png"
        figure.savefig(path, dpi=100)
        plt.close(figure)
        written[name] = path
    return written
