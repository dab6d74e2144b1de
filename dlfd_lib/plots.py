"""Figures shared by the notebooks (matplotlib + seaborn). Every function returns the Figure;
``save_figure`` writes it to figures/ as PNG."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns


def save_figure(fig: plt.Figure, name: str, figure_dir: str | Path = "figures", dpi: int = 130) -> Path:
    """Save ``fig`` as ``<figure_dir>/<name>.png`` and return the path."""
    path = Path(figure_dir) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def plot_learning_curves(histories: Mapping[str, Sequence[dict]]) -> plt.Figure:
    """Per-epoch training loss, training accuracy (augmented batches) and validation accuracy of
    one or more training runs, each a list of history rows from ``train_model``."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for name, hist in histories.items():
        df = pd.DataFrame(hist)
        axes[0].plot(df["epoch"], df["train_loss"], label=name)
        axes[1].plot(df["epoch"], df["train_acc"], label=name)
        axes[2].plot(df["epoch"], df["val_acc"], label=name)
    for ax, title, ylabel in zip(axes, ("training loss", "training accuracy (augmented batches)",
                                        "validation accuracy (unseen people)"),
                                 ("cross-entropy", "accuracy", "accuracy")):
        ax.set(title=title, xlabel="epoch", ylabel=ylabel)
        ax.grid(alpha=0.3)
    axes[1].set_ylim(0, 1.02)
    axes[2].set_ylim(0, 1.02)
    axes[0].legend()
    fig.tight_layout()
    return fig


def plot_loss_histograms(losses: Mapping[str, Mapping[str, np.ndarray]],
                         member: str = "forget", nonmember: str = "test",
                         mia: Mapping[str, float] | None = None, bins: int = 40,
                         ncols: int = 4) -> plt.Figure:
    """For each model, the per-sample loss of the forget images (members) beside that of unseen
    test images: the signal the membership-inference attack reads. ``losses[model][split]``;
    panels wrap after ``ncols`` per row and share their axes."""
    names = list(losses)
    ncols = min(ncols, len(names))
    nrows = -(-len(names) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.4 * ncols, 3.3 * nrows), squeeze=False,
                             sharex=True, sharey=True)
    hi = max(np.quantile(np.concatenate([losses[n][member], losses[n][nonmember]]), 0.99) for n in names)
    edges = np.linspace(0, max(hi, 1e-3), bins + 1)
    for ax, name in zip(axes.flat, names):
        ax.hist(np.clip(losses[name][member], 0, edges[-1]), bins=edges, alpha=0.6, density=True,
                label=f"{member} (member)", color="tab:red")
        ax.hist(np.clip(losses[name][nonmember], 0, edges[-1]), bins=edges, alpha=0.6, density=True,
                label=f"{nonmember} (unseen)", color="tab:blue")
        title = name if not mia or name not in mia else f"{name}: MIA {mia[name]:.3f}"
        ax.set(title=title, xlabel="per-sample cross-entropy", ylabel="density")
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_tradeoff(summary: pd.DataFrame, x: str = "fs", y: str = "test_acc",
                  reference: str = "retrained") -> plt.Figure:
    """Utility against forgetting, one point per model (mean over seeds, sd as error bars when
    present): lower forgetting score is better forgetting, higher test accuracy better utility.
    The reference (retrained) model is the star to get close to."""
    fig, ax = plt.subplots(figsize=(7, 5))
    palette = sns.color_palette("tab20", len(summary))
    for (name, row), colour in zip(summary.iterrows(), palette):
        is_ref = name == reference
        ax.errorbar(row[x], row[y], xerr=row.get(f"{x}_sd", 0) if np.isfinite(row.get(f"{x}_sd", np.nan)) else 0,
                    yerr=row.get(f"{y}_sd", 0) if np.isfinite(row.get(f"{y}_sd", np.nan)) else 0,
                    fmt="*" if is_ref else "o", ms=16 if is_ref else 7, color="k" if is_ref else colour,
                    capsize=2, lw=0.8)
        ax.annotate(name, (row[x], row[y]), textcoords="offset points", xytext=(6, 4), fontsize=9,
                    weight="bold" if is_ref or name == "dlfd" else "normal")
    ax.set(xlabel="forgetting score |MIA − 0.5| (lower: forgets better)",
           ylabel="test accuracy (higher: keeps its skill)", title="utility vs forgetting")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_metric_bars(table: pd.DataFrame, metrics: Sequence[str] = ("test_acc", "mia", "fs", "nomus"),
                     reference: str | None = "retrained") -> plt.Figure:
    """One bar panel per metric, one bar per model (rows of ``table``); the reference model's
    value is drawn as a dashed line."""
    metrics = [m for m in metrics if m in table.columns]
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.4 * len(metrics), 3.4), squeeze=False)
    palette = sns.color_palette("tab10", len(table))
    for ax, metric in zip(axes[0], metrics):
        ax.bar(range(len(table)), table[metric].to_numpy(), color=palette)
        if reference is not None and reference in table.index:
            ax.axhline(table.loc[reference, metric], ls="--", color="k", lw=1, label=reference)
            ax.legend(fontsize=8)
        ax.set_xticks(range(len(table)), table.index, rotation=30, ha="right")
        ax.set(title=metric, ylim=(0, 1))
    fig.tight_layout()
    return fig


def plot_unlearning_history(history: pd.DataFrame, forget_threshold: float | None = None,
                            max_fs: float | None = None, selected_batch: int | None = None,
                            title: str = "DLFD over its epoch") -> plt.Figure:
    """The monitored course of an unlearning run (one row per monitor, ``batch`` on the x axis):
    validation accuracy and forgetting score; the OT distance and the cross-entropy; the retain
    weight. Batches trained in plain mode (after the dynamic switch) are shaded, the kept
    checkpoint is marked."""
    h = history.reset_index(drop=True)
    x = h["batch"] + 1
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    ax = axes[0]
    ax.plot(x, h["val_acc"], marker="o", ms=3, label="validation accuracy")
    ax.plot(x, h["fs"], marker="o", ms=3, label="forgetting score |MIA-0.5|")
    if forget_threshold is not None:
        ax.axhline(forget_threshold, ls=":", color="tab:orange", label="switch threshold")
    if max_fs is not None:
        ax.axhline(max_fs, ls="--", color="tab:orange", lw=1, label="max FS kept")
    if selected_batch is not None:
        ax.axvline(selected_batch + 1, color="k", lw=1, label="kept checkpoint")
    ax.set(xlabel="retain batch", ylabel="value", title="utility and forgetting", ylim=(0, 1))
    ax.legend(fontsize=8)
    ax = axes[1]
    if "ot" in h and h["ot"].notna().any():
        ax.plot(x, h["ot"], marker="o", ms=3, color="tab:green", label="OT distance (last δ-step)")
    ax.plot(x, h["ce"], marker="o", ms=3, color="tab:red", label="cross-entropy of the SGD step")
    ax.set(xlabel="retain batch", ylabel="loss", title="distance and classification loss")
    ax.legend(fontsize=8)
    ax = axes[2]
    ax.plot(x, h["w_t"], marker="o", ms=3, color="tab:purple")
    ax.set(xlabel="retain batch", ylabel="w_t", title="retain (classification) weight", ylim=(-0.05, 1.05))
    if "mode" in h:
        plain = h["mode"] == "plain"
        if plain.any():
            for a in axes:
                a.axvspan(x[plain.idxmax()] - 0.5, x.iloc[-1] + 0.5, color="grey", alpha=0.12)
            axes[0].text(x[plain.idxmax()], 0.95, " plain CE", va="top", fontsize=8, color="grey")
    for a in axes:
        a.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
