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
                         mia: Mapping[str, float] | None = None, bins: int = 40) -> plt.Figure:
    """For each model, the per-sample loss of the forget images (members) beside that of unseen
    test images: the signal the membership-inference attack reads. ``losses[model][split]``."""
    names = list(losses)
    fig, axes = plt.subplots(1, len(names), figsize=(4.6 * len(names), 3.6), squeeze=False, sharey=True)
    hi = max(np.quantile(np.concatenate([losses[n][member], losses[n][nonmember]]), 0.99) for n in names)
    edges = np.linspace(0, max(hi, 1e-3), bins + 1)
    for ax, name in zip(axes[0], names):
        ax.hist(np.clip(losses[name][member], 0, edges[-1]), bins=edges, alpha=0.6, density=True,
                label=f"{member} (member)", color="tab:red")
        ax.hist(np.clip(losses[name][nonmember], 0, edges[-1]), bins=edges, alpha=0.6, density=True,
                label=f"{nonmember} (unseen)", color="tab:blue")
        title = name if not mia or name not in mia else f"{name}: MIA {mia[name]:.3f}"
        ax.set(title=title, xlabel="per-sample cross-entropy", ylabel="density")
        ax.legend()
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
