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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from stopsign.train.config import Hyp, TrainConfig, config_from_dict

DEFAULT_SPACE = Path(__file__).with_name("tune_space.yaml")
# What a trial can be scored on, and which way is better. The trainer reports each per epoch.
OBJECTIVES: dict[str, Literal["minimize", "maximize"]] = {
    "fitness": "maximize",  # 0.1 mAP@0.5 + 0.9 mAP@0.5:0.95 (what picks the best checkpoint)
    "map50": "maximize",
    "recall": "maximize",  # at the F1-optimal threshold
    "recall_small": "maximize",  # signs under 32 px in the network input, at the F1 threshold
    "fp_rate": "minimize",  # share of confuser images (else sign-free ones) with a box, same threshold
}
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
    # One objective, or several separated by commas (e.g. "map50,recall_small"): then the study
    # keeps the Pareto front, and pruning is off (Optuna prunes single-objective studies only).
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

    @property
    def objectives(self) -> tuple[str, ...]:
        return tuple(name.strip() for name in self.objective.split(",") if name.strip())

    @property
    def directions(self) -> list[Literal["minimize", "maximize"]]:
        return [OBJECTIVES[name] for name in self.objectives]

    def __post_init__(self) -> None:
        if self.trials < 1:
            raise TuneError(f"--trials must be >= 1, got {self.trials}")
        names = self.objectives
        unknown = [n for n in names if n not in OBJECTIVES]
        if not names or unknown or len(set(names)) != len(names) or len(names) > 3:
            raise TuneError(
                f"--objective {self.objective!r}: expected one of {tuple(OBJECTIVES)}, or 2-3 distinct "
                "ones separated by commas (a Pareto front)"
            )
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


EpochReport = Callable[[int, Mapping[str, float | None]], bool]
TrainFn = Callable[[TrainConfig, EpochReport], tuple[Mapping[str, float | None], bool]]


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
    objectives = options.objectives
    several = len(objectives) > 1
    if several and options.pruner != "none":
        log(
            f"tune: {len(objectives)} objectives (a Pareto front): no pruning, every trial runs all its epochs"
        )
    try:
        study = optuna.create_study(
            study_name=options.study,
            storage=storage,
            load_if_exists=True,
            directions=options.directions,
            sampler=optuna.samplers.TPESampler(
                seed=options.seed if options.sampler_seed is None else options.sampler_seed,
                n_startup_trials=min(5, options.trials),
            ),
            pruner=_pruner("none" if several else options.pruner),
        )
    except ValueError as exc:  # the stored study was made with other directions
        raise TuneError(f"study {options.study!r} in {options.storage or 'the SQLite file'}: {exc}") from None
    kept = study.user_attrs.get("objectives")
    if kept is None:
        study.set_user_attr("objectives", list(objectives))
    elif list(kept) != list(objectives):
        raise TuneError(
            f"study {options.study!r} was started with --objective {','.join(kept)}; resume it with the "
            f"same objective or name a new --study (asked: {options.objective})"
        )
    base_values = {r.name: float(getattr(base.hyp, r.name)) for r in space}
    if options.baseline and not study.trials and all(r.low <= base_values[r.name] <= r.high for r in space):
        study.enqueue_trial(base_values, user_attrs={"baseline": True})
    retried = retry_stale_trials(study, options.stale_after_s)
    if retried:
        log(f"tune: trials {retried} were left running by a worker that is gone: failed, queued again")

    def objective(trial: optuna.Trial) -> float | list[float]:
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

        def on_epoch(epoch: int, metrics: Mapping[str, float | None]) -> bool:
            trial.set_user_attr("alive_at", time.time())
            values = objective_values(metrics, objectives)
            if several:
                trial.set_user_attr(f"epoch_{epoch}", values)
                return False
            trial.report(values[0], epoch)
            return trial.should_prune()

        final, pruned = train_fn(config, on_epoch)
        if pruned:
            raise optuna.TrialPruned()
        scores = objective_values(final, objectives)
        return scores if several else scores[0]

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


def objective_values(metrics: Mapping[str, float | None], objectives: tuple[str, ...]) -> list[float]:
    """The trial's values for ``objectives``; :class:`TuneError` when the split cannot give one
    (no small signs for ``recall_small``, no sign-free images for ``fp_rate``)."""
    values = []
    for name in objectives:
        value = metrics.get(name)
        if value is None or not math.isfinite(float(value)):
            why = {
                "recall_small": "the validation split has no sign under 32 px in the network input",
                "fp_rate": "the validation split has no confuser or sign-free image",
            }.get(name, "the trainer did not report it")
            raise TuneError(f"--objective {name}: no value ({why})")
        values.append(float(value))
    return values


def write_outputs(study: Any, base: TrainConfig, out: Path) -> dict[str, Path]:
    """best_hyp.yaml (the whole hyp group, best values in), trials.csv, and plots (PNG).

    Several objectives: the Pareto front instead of one best, as ``pareto.csv`` and one
    ``pareto/trial_NNNN.yaml`` per front trial; ``best_hyp.yaml`` is the front's best on the
    first objective.
    """
    from optuna.trial import TrialState

    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    objectives = list(study.user_attrs.get("objectives") or ["value"])
    several = len(study.directions) > 1
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    seed_line = (
        f"# train with: edge-train train --hyp FILE --seed {base.runtime.seed} (same data and epochs)\n"
    )
    if complete:
        if several:
            front = sorted(study.best_trials, key=lambda t: t.number)
            sign = 1.0 if study.directions[0].name == "MAXIMIZE" else -1.0
            best = max(front, key=lambda t: sign * t.values[0])
            what = f"the Pareto front's best on {objectives[0]} of {len(front)} front trials"
            written.update(_write_front(front, base, objectives, out / "pareto", seed_line))
        else:
            best, what = study.best_trial, "best"
        scores = ", ".join(f"{n} {v:.5f}" for n, v in zip(objectives, best.values))
        header = (
            f"# edge-train tune: {what} ({len(complete)} complete trials in study {study.study_name!r}): "
            f"trial {best.number}, {scores}\n" + seed_line.replace("FILE", "best_hyp.yaml")
        )
        path = out / "best_hyp.yaml"
        path.write_text(header + yaml.safe_dump({**base.hyp.__dict__, **best.params}, sort_keys=False),
                        encoding="utf-8")  # fmt: skip
        written["best_hyp"] = path
    names = sorted({name for t in study.trials for name in t.params})
    value_columns = [f"value_{n}" for n in objectives] if several else ["value"]
    path = out / "trials.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["number", "state", *value_columns, "epochs_reported", "seconds", "run_dir", *names])
        for t in study.trials:
            seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else ""
            values = [f"{v:.6f}" for v in t.values] if t.values else [""] * len(value_columns)
            epochs = len(t.intermediate_values) or sum(k.startswith("epoch_") for k in t.user_attrs)
            writer.writerow([t.number, t.state.name, *values, epochs, seconds, t.user_attrs.get("run_dir", ""),
                             *[t.params.get(n, "") for n in names]])  # fmt: skip
    written["trials"] = path
    if len(complete) >= 2:
        written.update(_plots(study, objectives, out))
    return written


def _write_front(
    front: list[Any], base: TrainConfig, objectives: list[str], folder: Path, seed_line: str
) -> dict[str, Path]:
    """pareto.csv beside ``folder`` and one hyp YAML per Pareto-optimal trial in it."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("trial_*.yaml"):  # a trial may have left the front since the last run
        stale.unlink()
    table = folder.parent / "pareto.csv"
    with table.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["number", *objectives, "hyp_file", "run_dir"])
        for t in front:
            hyp_file = folder / f"trial_{t.number:04d}.yaml"
            scores = ", ".join(f"{n} {v:.5f}" for n, v in zip(objectives, t.values))
            hyp_file.write_text(
                f"# edge-train tune: Pareto-optimal trial {t.number}: {scores}\n"
                + seed_line.replace("FILE", hyp_file.name)
                + yaml.safe_dump({**base.hyp.__dict__, **t.params}, sort_keys=False),
                encoding="utf-8",
            )
            writer.writerow(
                [t.number, *[f"{v:.6f}" for v in t.values], hyp_file, t.user_attrs.get("run_dir", "")]
            )
    return {"pareto": table}


def _plots(study: Any, objectives: list[str], out: Path) -> dict[str, Path]:
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.exceptions import ExperimentalWarning
    from optuna.visualization import matplotlib as ovm

    if len(study.directions) > 1:
        first = objectives[0]
        # With a target, the importance evaluator takes lower as better: flip a maximised one.
        lower_better = -1.0 if study.directions[0].name == "MAXIMIZE" else 1.0

        def on_first(draw: Callable[..., Any], sign: float = 1.0) -> Callable[[Any], Any]:
            return lambda s: draw(s, target=lambda t: sign * t.values[0], target_name=first)

        drawings = [
            ("pareto_front", lambda s: ovm.plot_pareto_front(s, target_names=objectives)),
            ("history", on_first(ovm.plot_optimization_history)),
            ("importances", on_first(ovm.plot_param_importances, lower_better)),
            ("parallel", on_first(ovm.plot_parallel_coordinate)),
        ]
    else:
        drawings = [
            ("history", ovm.plot_optimization_history),
            ("importances", ovm.plot_param_importances),
            ("parallel", ovm.plot_parallel_coordinate),
        ]
    written = {}
    for name, draw in drawings:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter(
                    "ignore", ExperimentalWarning
                )  # the matplotlib plots are "experimental"
                # Said whenever a target is given; ours is already signed lower-is-better.
                warnings.filterwarnings("ignore", message="PedAnovaImportanceEvaluator computes")
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
