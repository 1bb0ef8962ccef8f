"""PNG plots: precision-recall, F1 versus confidence, and training curves (results.png).

Uses matplotlib's object API with the Agg canvas, so nothing touches global pyplot state.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from stopsign.edge.vision.metrics import CONF_GRID
from stopsign.train.evaluate import EvalResult


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    return path


def plot_pr_curve(result: EvalResult, names: list[str], path: Path) -> Path:
    """Precision versus recall at IoU 0.5, one line per class (swept over confidence)."""
    m = result.metrics
    fig = Figure(figsize=(6, 5))
    ax = fig.add_subplot()
    for row, c in enumerate(m.classes):
        ax.plot(m.recall_curve[row], m.precision_curve[row], label=f"{names[c]} AP50 {m.ap[row, 0]:.3f}")
    ax.set(
        xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.01), title="Precision-recall (IoU 0.5)"
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    return _save(fig, path)


def plot_f1_curve(result: EvalResult, names: list[str], path: Path) -> Path:
    """F1, precision and recall versus confidence, with the chosen thresholds marked."""
    m = result.metrics
    fig = Figure(figsize=(6, 5))
    ax = fig.add_subplot()
    for row, c in enumerate(m.classes):
        ax.plot(CONF_GRID, m.f1_curve[row], label=f"{names[c]} F1")
    if len(m.classes):
        ax.plot(CONF_GRID, m.precision_curve.mean(0), "--", alpha=0.6, label="precision")
        ax.plot(CONF_GRID, m.recall_curve.mean(0), ":", alpha=0.6, label="recall")
    if result.fp_basis:
        ax.plot(
            CONF_GRID,
            result.fp_rate_curve,
            color="tab:red",
            alpha=0.6,
            label=f"{result.fp_basis} image FP rate",
        )
    ax.axvline(m.best_conf, color="k", lw=0.8, label=f"F1-optimal {m.best_conf:.3f}")
    if result.confuser_threshold is not None:
        conf = result.confuser_threshold[0]
        ax.axvline(conf, color="tab:red", lw=0.8, ls="--", label=f"FP-rate bound {conf:.3f}")
    ax.set(xlabel="confidence", ylabel="value", xlim=(0, 1), ylim=(0, 1.01), title="F1 versus confidence")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    return _save(fig, path)


def plot_results(rows: list[dict[str, float]], path: Path) -> Path:
    """Training curves from results.csv rows: one panel per column except epoch.

    Fixed margins rather than ``tight_layout`` and a tight bounding box: those measure every label
    again and took 0.9 of the 2 s this figure cost on a 2-core CPU.
    """
    keys = [k for k in rows[0] if k != "epoch"] if rows else []
    cols = 5
    nrows = max(1, -(-len(keys) // cols))
    fig = Figure(figsize=(3.2 * cols, 2.6 * nrows))
    epochs = np.array([r["epoch"] for r in rows])
    for i, key in enumerate(keys):
        ax = fig.add_subplot(nrows, cols, i + 1)
        ax.plot(epochs, [r[key] for r in rows], marker=".")
        ax.set_title(key, fontsize=9)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    fig.subplots_adjust(left=0.04, right=0.99, bottom=0.04, top=0.95, wspace=0.3, hspace=0.35)
    FigureCanvasAgg(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    return path
