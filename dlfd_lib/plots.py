"""Figures shared by the notebooks (matplotlib + seaborn). Every function returns the Figure;
``save_figure`` writes it to figures/ as PNG."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def color_palette(name: str, n: int) -> list[tuple[float, float, float]]:
    """The first ``n`` colours of matplotlib's qualitative colormap ``name`` (``"tab10"``,
    ``"tab20"``), cycling when ``n`` exceeds it: what ``seaborn.color_palette(name, n)`` gives,
    without importing seaborn."""
    colors = plt.get_cmap(name).colors
    return [tuple(colors[i % len(colors)]) for i in range(n)]


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
    palette = color_palette("tab20", len(summary))
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
    value is drawn as a dashed line, and ``<metric>_sd`` columns (a :func:`summarize` table)
    become error bars."""
    metrics = [m for m in metrics if m in table.columns]
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.4 * len(metrics), 3.4), squeeze=False)
    palette = color_palette("tab10", len(table))
    for ax, metric in zip(axes[0], metrics):
        sd = table[f"{metric}_sd"].to_numpy() if f"{metric}_sd" in table else None
        ax.bar(range(len(table)), table[metric].to_numpy(), color=palette,
               yerr=None if sd is None or not np.isfinite(sd).any() else np.nan_to_num(sd), capsize=2)
        if reference is not None and reference in table.index:
            ax.axhline(table.loc[reference, metric], ls="--", color="k", lw=1, label=reference)
            ax.legend(fontsize=8)
        ax.set_xticks(range(len(table)), table.index, rotation=30, ha="right")
        ax.set(title=metric)
        if table[metric].max() <= 1 and table[metric].min() >= 0:  # accuracies, MIA, FS, NoMUS
            ax.set_ylim(0, 1)
    fig.tight_layout()
    return fig


def plot_unlearning_history(history: pd.DataFrame, forget_threshold: float | None = None,
                            max_fs: float | None = None, selected_batch: int | None = None,
                            title: str = "DLFD over its epoch", fs_original: float | None = None) -> plt.Figure:
    """The monitored course of an unlearning run (one row per monitor; the x axis counts the retain
    batches trained, so the state after 0-based ``batch`` i is drawn at i + 1):
    validation accuracy and forgetting score; the OT distance and the cross-entropy; the retain
    weight. Batches trained in plain mode (after the dynamic switch) are shaded, the kept
    checkpoint is marked.

    ``forget_threshold`` and ``max_fs`` are drawn on the forgetting-score axis, so they must be
    the absolute values the run applied (info ``forget_threshold_used`` / ``max_fs_used``). With
    ``fs_original`` (relative mode: the original model's monitored FS) the legend says which
    fraction of it each line is."""
    h = history.reset_index(drop=True)

    def rel(v):
        return f" = {v / fs_original:.2f} × original FS" if fs_original else ""
    x = h["batch"] + 1
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    ax = axes[0]
    ax.plot(x, h["val_acc"], marker="o", ms=3, label="validation accuracy")
    ax.plot(x, h["fs"], marker="o", ms=3, label="forgetting score |MIA-0.5|")
    if forget_threshold is not None:
        ax.axhline(forget_threshold, ls=":", color="tab:orange", label=f"switch threshold{rel(forget_threshold)}")
    if max_fs is not None:
        ax.axhline(max_fs, ls="--", color="tab:orange", lw=1, label=f"max FS kept{rel(max_fs)}")
    if selected_batch is not None:
        ax.axvline(selected_batch + 1, color="k", lw=1, label="kept checkpoint")
    ax.set(xlabel="retain batches trained", ylabel="value", title="utility and forgetting", ylim=(0, 1))
    ax.legend(fontsize=8)
    ax = axes[1]
    if "ot" in h and h["ot"].notna().any():
        ax.plot(x, h["ot"], marker="o", ms=3, color="tab:green", label="OT distance (last δ-step)")
    ax.plot(x, h["ce"], marker="o", ms=3, color="tab:red", label="cross-entropy of the SGD step")
    ax.set(xlabel="retain batches trained", ylabel="loss", title="distance and classification loss")
    ax.legend(fontsize=8)
    ax = axes[2]
    ax.plot(x, h["w_t"], marker="o", ms=3, color="tab:purple")
    ax.set(xlabel="retain batches trained", ylabel="w_t", title="retain (classification) weight", ylim=(-0.05, 1.05))
    if "mode" in h:
        plain = h["mode"] == "plain"
        if plain.any():
            # the switch fires at the monitor before the first plain row: plain CE from the next batch on
            first = int(plain.idxmax())
            start = float(x[first - 1]) if first > 0 else 0.0
            for a in axes:
                a.axvspan(start, float(x.iloc[-1]), color="grey", alpha=0.12)
            axes[0].text(start, 0.95, " plain CE", va="top", fontsize=8, color="grey")
    for a in axes:
        a.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# feature maps (notebook 04) and comparisons of runs (notebooks 02 and 05)
# --------------------------------------------------------------------------------------------
#: colours of the splits in the feature maps
SPLIT_COLOURS = {"retain": "#9e9e9e", "test": "tab:blue", "forget": "tab:red", "val": "tab:green"}


def _class_colours(classes: Sequence[str]) -> dict:
    """One colour per class name, the same in every panel and in the legend."""
    return dict(zip(classes, color_palette("tab10" if len(classes) <= 10 else "tab20", len(classes))))


def _scatter_embedding(ax: plt.Axes, pts: pd.DataFrame, color_by: str, classes: Sequence[str],
                       size: float) -> None:
    from .embedding import SPLIT_ORDER
    order = [s for s in SPLIT_ORDER if s in set(pts["split"])] + \
        [s for s in pts["split"].unique() if s not in SPLIT_ORDER]
    markers = {"retain": "o", "test": "s", "forget": "^", "val": "D"}
    if color_by == "class":
        palette = _class_colours(classes)
    for split in order:
        sub = pts[pts["split"] == split]
        if color_by == "split":
            colours = SPLIT_COLOURS.get(split, "k")
        elif color_by == "class":
            colours = [palette[c] for c in sub["class"]]
        else:  # identity: a stable colour per person, forget people only (others grey)
            ids = sub["identity"].to_numpy()
            colours = [plt.cm.tab20(hash(int(i)) % 20) if s == "forget" else (0.75, 0.75, 0.75, 0.5)
                       for i, s in zip(ids, sub["split"])]
        ax.scatter(sub["x"], sub["y"], s=size * (1.6 if split == "forget" else 1.0), c=colours,
                   marker=markers.get(split, "o"), linewidths=0, alpha=0.75,
                   label=split if color_by == "split" else None)


def plot_embeddings(emb: pd.DataFrame, color_by: str = "class", models: Sequence[str] | None = None,
                    splits: Sequence[str] | None = None, ncols: int = 3, size: float = 7,
                    title: str | None = None) -> plt.Figure:
    """One panel per model of the common 2-D map from :func:`dlfd_lib.embedding.fit_umap`.

    ``color_by``: ``"class"`` (task label; markers still tell the split: ○ retain, □ test,
    △ forget), ``"split"`` (grey retain, blue test, red forget) or ``"identity"`` (one colour per
    forgotten person, everyone else grey). ``splits`` filters the points. All panels share their
    axes, so positions can be compared across models.
    """
    if color_by not in ("class", "split", "identity"):
        raise ValueError(f"color_by={color_by!r}: choose 'class', 'split' or 'identity'")
    models = list(dict.fromkeys(emb["model"])) if models is None else list(models)
    pts_all = emb if splits is None else emb[emb["split"].isin(list(splits))]
    classes = list(dict.fromkeys(emb.sort_values("label")["class"]))
    ncols = max(1, min(ncols, len(models)))
    nrows = -(-len(models) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.3 * ncols, 4.0 * nrows), squeeze=False,
                             sharex=True, sharey=True)
    pad_x, pad_y = np.ptp(emb["x"]) * 0.03, np.ptp(emb["y"]) * 0.03
    for ax, model in zip(axes.flat, models):
        _scatter_embedding(ax, pts_all[pts_all["model"] == model], color_by, classes, size)
        ax.set_title(model)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlim(emb["x"].min() - pad_x, emb["x"].max() + pad_x)
        ax.set_ylim(emb["y"].min() - pad_y, emb["y"].max() + pad_y)
    for ax in list(axes.flat)[len(models):]:
        ax.axis("off")
    if color_by == "class":
        handles = [plt.Line2D([], [], ls="", marker="o", color=c, label=k)
                   for k, c in _class_colours(classes).items()]
        handles += [plt.Line2D([], [], ls="", marker=m, color="k", label=s)
                    for s, m in (("retain", "o"), ("test", "s"), ("forget", "^"))]
    elif color_by == "split":
        handles = [plt.Line2D([], [], ls="", marker="o", color=SPLIT_COLOURS[s], label=s)
                   for s in ("retain", "test", "forget")]
    else:
        handles = [plt.Line2D([], [], ls="", marker="^", color=plt.cm.tab20(3), label="forget (one colour per person)"),
                   plt.Line2D([], [], ls="", marker="o", color=(0.75, 0.75, 0.75), label="retain / test")]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 8), fontsize=8,
               bbox_to_anchor=(0.5, -0.02), frameon=False)
    fig.suptitle(title or f"UMAP of penultimate features, coloured by {color_by}")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def plot_histories(histories: Mapping[str, pd.DataFrame], metrics: Sequence[str] = ("val_acc", "fs"),
                   x: str = "step", titles: Mapping[str, str] | None = None,
                   hlines: Mapping[str, float] | None = None) -> plt.Figure:
    """Several runs' monitored curves side by side: one panel per metric, one line per run
    (``histories[label]`` is a history DataFrame with column ``x`` and the metrics). A run
    without a metric is skipped in that panel; ``hlines`` draws a dashed reference per metric
    (e.g. the retrained model's value)."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 3.8), squeeze=False)
    palette = color_palette("tab10" if len(histories) <= 10 else "tab20", max(len(histories), 1))
    for ax, metric in zip(axes[0], metrics):
        for (label, h), colour in zip(histories.items(), palette):
            if metric in h and x in h and h[metric].notna().any():
                ax.plot(h[x], h[metric], marker="o", ms=2.5, lw=1.3, color=colour, label=label)
        if hlines and metric in hlines:
            ax.axhline(hlines[metric], ls="--", color="k", lw=1, label="retrained")
        ax.set(xlabel=x.replace("_", " "), ylabel=metric, title=(titles or {}).get(metric, metric))
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def plot_collapse_concept(seed: int = 0) -> plt.Figure:
    """A schematic (made-up 2-D points, not a model's features) of what notebook 02 measures.

    Left: the original model – three classes in separate clusters, the forget images (triangles)
    inside their classes like any training image. Middle: error-maximising unlearning pushes the
    forget images' loss up; because forget and retain images share the task features, the class
    clusters spread and slide into each other – the features stop predicting the label
    (*correlation collapse*). Right: DLFD moves the retain images' feature distribution away
    from the forget images' (arrows) while a classification term keeps every class where it is,
    so the forget images end up in regions no training image occupies – like unseen people.
    """
    rng = np.random.default_rng(seed)
    centres = np.array([[-2.2, 0.0], [2.2, 0.0], [0.0, 3.0]])
    colours = color_palette("tab10", 3)
    n_r, n_f = 60, 10
    retain = [c + 0.55 * rng.standard_normal((n_r, 2)) for c in centres]
    forget = [c + np.array([0.35, -0.45]) + 0.25 * rng.standard_normal((n_f, 2)) for c in centres]
    mean = centres.mean(axis=0)
    # error maximisation: clusters shrink towards each other and spread; forget points are thrown out
    collapse_r = [mean + 0.35 * (c - mean) + 1.7 * (r - c) for c, r in zip(centres, retain)]
    collapse_f = [mean + 0.35 * (c - mean) + 2.2 * rng.standard_normal((n_f, 2)) for c in centres]
    # DLFD: each class keeps its place; retain points move away from their class's forget points
    dlfd_r = []
    for c, r, f in zip(centres, retain, forget):
        away = r - f.mean(axis=0)
        away /= np.linalg.norm(away, axis=1, keepdims=True)
        dlfd_r.append(r + 0.55 * away)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), sharex=True, sharey=True)
    panels = (("original model", retain, forget, None),
              ("error-maximising unlearning: correlation collapse", collapse_r, collapse_f, None),
              ("DLFD: distance the retain distribution, keep the classes", dlfd_r, forget, retain))
    for ax, (title, rs, fs, before) in zip(axes, panels):
        for k in range(3):
            ax.scatter(*rs[k].T, s=14, color=colours[k], alpha=0.6, label=f"class {k} (retain)")
            ax.scatter(*fs[k].T, s=55, marker="^", color=colours[k], edgecolor="k", linewidths=0.8,
                       label="forget images" if k == 0 else None)
            if before is not None:
                for a, b in zip(before[k][::6], rs[k][::6]):
                    ax.annotate("", xy=b, xytext=a, arrowprops=dict(arrowstyle="->", color="0.35", lw=0.8))
        ax.set(title=title, xticks=[], yticks=[], xlabel="feature direction 1", ylabel="feature direction 2")
    axes[0].legend(fontsize=8, loc="lower left")
    fig.suptitle("schematic (made-up points): what unlearning can do to feature space", y=1.02)
    fig.tight_layout()
    return fig


def plot_attack_gaps(table: pd.DataFrame, metric: str = "auc", reference: str = "retrained") -> plt.Figure:
    """Heatmap of ``<metric>_gap`` (model − retrained) per model (rows) and attack (columns), from
    :func:`dlfd_lib.attacks.attack_table`. Near 0 (white) means the attack sees the model as it
    sees the retrained model; red: the forget set still looks like members; blue: it looks *less*
    like members than never-seen data – over-forgetting, itself a membership signal."""
    gap = table[f"{metric}_gap"].unstack("attack")
    gap = gap.drop(index=reference, errors="ignore")
    lim = max(float(np.nanmax(np.abs(gap.to_numpy()))), 1e-3)
    fig, ax = plt.subplots(figsize=(1.6 * gap.shape[1] + 3, 0.45 * gap.shape[0] + 1.6))
    import seaborn as sns  # lazily: its import costs ~2 s a process
    sns.heatmap(gap, annot=True, fmt="+.3f", cmap="RdBu_r", center=0, vmin=-lim, vmax=lim, ax=ax,
                cbar_kws={"label": f"{metric} − {reference}'s {metric}"})
    ax.set(title=f"membership attacks: {metric} gap to the {reference} model", xlabel="attack", ylabel="")
    fig.tight_layout()
    return fig


def _seeds_words(pts) -> str:
    """How many seeds the fronts' points are means over, in words: "mean over 5 evaluation seeds",
    "one seed", or, where the swept strengths ran on fewer seeds than the configured setting,
    "swept strengths: mean over 3 seeds, configured setting: 5"."""
    if "n_seeds" not in pts or not len(pts):
        return "one seed"
    def over(n):
        return f"mean over {n} seeds" if n > 1 else "one seed"
    counts = sorted({int(v) for v in pts["n_seeds"]})
    if len(counts) == 1:
        return f"mean over {counts[0]} evaluation seeds" if counts[0] > 1 else "one seed"
    if "setting" in pts:
        sw = sorted({int(v) for v in pts.loc[pts["setting"] != "tuned", "n_seeds"]})
        tu = sorted({int(v) for v in pts.loc[pts["setting"] == "tuned", "n_seeds"]})
        if len(sw) == 1 and len(tu) == 1:
            return f"swept strengths: {over(sw[0])}, configured setting: {tu[0]}"
    return f"means over {counts[0]} to {counts[-1]} seeds"


def plot_fronts(points: pd.DataFrame, x: str = "abs_mia_gap", y: str = "test_acc",
                reference: Mapping[str, float] | None = None, highlight: str = "dlfd",
                tuned: Sequence[str] | None = None) -> plt.Figure:
    """Trade-off fronts (:mod:`dlfd_lib.fronts`): every evaluated setting of every method as a
    point (hollow: dominated within its own method; a ring: the method's configured setting), and
    each method's Pareto front as a step line. Up and left is better: more test accuracy at a
    smaller gap to the retrained model's MIA. ``reference`` (e.g. the retrained model's mean test
    accuracy as ``{"test_acc": ...}``) is drawn as a dashed line.

    The words follow the points: the title says "mean over N seeds" only when the points are
    means over N > 1 seeds (``n_seeds``), and the ring is called *tuned* only for the methods in
    ``tuned`` (None: every configured point counts as tuned, as in a finished protocol run)."""
    from .fronts import mark_fronts

    pts = points if "on_front" in points else mark_fronts(points, x=x, y=y)
    models = list(dict.fromkeys(pts["model"]))
    tuned_set = set(models) if tuned is None else set(tuned)
    palette = dict(zip(models, color_palette("tab10" if len(models) <= 10 else "tab20", len(models))))
    fig, ax = plt.subplots(figsize=(8, 5.5))
    ring_kinds = set()
    for m in models:
        part = pts[pts["model"] == m]
        c = palette[m]
        lw = 2.6 if m == highlight else 1.2
        front = part[part["on_front"]].sort_values(x)
        ax.step(front[x], front[y], where="post", color=c, lw=lw, label=m)
        ax.scatter(front[x], front[y], color=c, s=36 if m != highlight else 60, zorder=3)
        dom = part[~part["on_front"]]
        ax.scatter(dom[x], dom[y], facecolors="none", edgecolors=c, s=30, zorder=3)
        if "setting" in part:
            conf = part[part["setting"] == "tuned"]
            if len(conf):
                is_tuned = m in tuned_set
                ring_kinds.add(is_tuned)
                ax.scatter(conf[x], conf[y], facecolors="none", edgecolors="k", s=120, lw=1.2, zorder=4,
                           linestyle="-" if is_tuned else "--")
    if reference and y in reference:
        ax.axhline(reference[y], color="k", ls="--", lw=1, label="retrained model")
    seeds = _seeds_words(pts)
    ring = {frozenset({True}): "ring = tuned setting", frozenset({False}): "dashed ring = declared defaults (not tuned)",
            frozenset({True, False}): "ring = tuned setting, dashed ring = declared defaults"}.get(frozenset(ring_kinds))
    ax.set(xlabel="|MIA − MIA of the retrained model| (lower: closer to retraining)",
           ylabel="test accuracy (higher: keeps its skill)",
           title=f"trade-off fronts ({seeds}" + (f"; {ring})" if ring else ")"))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2, loc="lower right")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# DLFD step by step (notebook 03): entropic OT on toy clouds, one perturbation traced
# --------------------------------------------------------------------------------------------
def plot_ot_problem(x: np.ndarray, y: np.ndarray, cost: np.ndarray, plan: np.ndarray,
                    title: str = "entropic optimal transport between two point clouds") -> plt.Figure:
    """Three panels: the two clouds with a line for every pair (i, j) whose width is T_ij (the
    mass moved from x_i to y_j), the cost matrix C and the plan T as heatmaps."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), gridspec_kw={"width_ratios": [1.2, 1, 1]})
    ax = axes[0]
    tmax = plan.max()
    for i in range(len(x)):
        for j in range(len(y)):
            if plan[i, j] > 0.02 * tmax:
                ax.plot([x[i, 0], y[j, 0]], [x[i, 1], y[j, 1]], color="0.3",
                        lw=4 * plan[i, j] / tmax, alpha=0.6, zorder=1)
    ax.scatter(*x.T, s=70, color="tab:blue", label="x (μ: retain-like)", zorder=2)
    ax.scatter(*y.T, s=70, marker="^", color="tab:red", label="y (ν: forget-like)", zorder=2)
    for i, p in enumerate(x):
        ax.annotate(str(i), p, textcoords="offset points", xytext=(-10, 4), fontsize=8, color="tab:blue")
    for j, p in enumerate(y):
        ax.annotate(str(j), p, textcoords="offset points", xytext=(5, 4), fontsize=8, color="tab:red")
    ax.set(title="the clouds; line width = mass moved T_ij", xlabel="coordinate 1", ylabel="coordinate 2")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(fontsize=8, loc="best")
    import seaborn as sns  # lazily: its import costs ~2 s a process
    sns.heatmap(cost, ax=axes[1], cmap="viridis", cbar_kws={"label": "C_ij"})
    axes[1].set(title="cost matrix C (squared distance / max)", xlabel="j (y)", ylabel="i (x)")
    sns.heatmap(plan, ax=axes[2], cmap="magma_r", cbar_kws={"label": "T_ij"})
    axes[2].set(title=f"transport plan T  (⟨T, C⟩ = {(plan * cost).sum():.4f})", xlabel="j (y)", ylabel="i (x)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_plans_over_eps(cost: np.ndarray, plans: Mapping[float, np.ndarray],
                        exact: tuple[np.ndarray, float] | None = None) -> plt.Figure:
    """One heatmap of the entropic plan per ε (largest first), and the exact (ε = 0) plan last:
    a large ε spreads the mass over every pair, a small one concentrates it on a few."""
    items = sorted(plans.items(), key=lambda kv: -kv[0])
    if exact is not None:
        items.append(("0 (exact, ot.emd)", exact[0]))
    fig, axes = plt.subplots(1, len(items), figsize=(3.6 * len(items), 3.4))
    axes = np.atleast_1d(axes)
    vmax = max(float(p.max()) for _, p in items)
    import seaborn as sns  # lazily: its import costs ~2 s a process
    for ax, (eps, plan) in zip(axes, items):
        sns.heatmap(plan, ax=ax, cmap="magma_r", vmin=0, vmax=vmax, cbar=False)
        ax.set(title=f"ε = {eps}\n⟨T, C⟩ = {(plan * cost).sum():.4f}", xlabel="j", ylabel="i")
    fig.suptitle("the transport plan for several ε (same colour scale)")
    fig.tight_layout()
    return fig


def plot_sinkhorn_convergence(results: Mapping[float, object], exact_cost: float | None = None) -> plt.Figure:
    """Per ε (a :class:`dlfd_lib.teach.SinkhornResult` each): the marginal error of the plan after
    each iteration (log scale) and its transport cost ⟨T, C⟩, with the exact OT cost as a line."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    for eps, r in sorted(results.items(), key=lambda kv: -kv[0]):
        it = np.arange(1, len(r.marginal_error) + 1)
        axes[0].semilogy(it, np.maximum(r.marginal_error, 1e-17), label=f"ε = {eps}")
        axes[1].plot(it, r.transport_cost, label=f"ε = {eps}")
    if exact_cost is not None:
        axes[1].axhline(exact_cost, color="k", ls="--", lw=1, label="exact OT (ot.emd2)")
    axes[0].set(title="Sinkhorn: marginal error ‖T1−a‖₁ + ‖Tᵀ1−b‖₁", xlabel="iteration", ylabel="error")
    axes[1].set(title="transport cost ⟨T, C⟩ of the current plan", xlabel="iteration", ylabel="⟨T, C⟩")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_dlfd_step(trace, mean: Sequence[float], std: Sequence[float], class_names: Sequence[str] | None = None,
                   n_show: int = 6, title: str | None = None) -> plt.Figure:
    """One DLFD perturbation (a :class:`dlfd_lib.teach.StepTrace`) on one figure. Left: the first
    ``n_show`` retain images, δ magnified (grey = 0; the factor is in the row label) and the
    perturbed images, each titled with the label and the model's prediction. Right: the feature
    distance to the forget batch and the cross-entropy (with the batch accuracy) over the K
    steps, and the clean and perturbed features beside the forget features in one 2-D plane
    (:func:`dlfd_lib.teach.feature_plane`), an arrow per image."""
    from .teach import feature_plane, to_pixels

    n_show = max(1, min(n_show, len(trace.x)))
    names = list(class_names) if class_names is not None else None

    def lab(k):  # the class's short name ("g" of "g (56-66)")
        return names[int(k)].split(" ")[0] if names is not None else str(int(k))

    fig = plt.figure(figsize=(17, 5.6))
    left, right = fig.subfigures(1, 2, width_ratios=[1.05, 1.95], wspace=0.02)
    img_axes = left.subplots(3, n_show, squeeze=False, gridspec_kw={"wspace": 0.08, "hspace": 0.45})
    clean, star = to_pixels(trace.x[:n_show], mean, std), to_pixels(trace.x_star[:n_show], mean, std)
    delta = trace.delta[:n_show].numpy() * np.asarray(std, dtype=float).reshape(1, -1, 1, 1)  # pixel units
    peak = float(np.abs(delta).max())
    mag = 0.5 / peak if peak > 0 else 1.0
    delta_img = np.clip(0.5 + mag * delta, 0, 1).transpose(0, 2, 3, 1)
    for i in range(n_show):
        y = trace.y[i]
        img_axes[0, i].imshow(clean[i])
        img_axes[0, i].set_title(f"y={lab(y)} ŷ={lab(trace.pred_clean[i])}", fontsize=8,
                                 color="k" if trace.pred_clean[i] == y else "tab:red")
        img_axes[1, i].imshow(delta_img[i])
        img_axes[2, i].imshow(star[i])
        img_axes[2, i].set_title(f"ŷ*={lab(trace.pred_star[i])}", fontsize=8,
                                 color="k" if trace.pred_star[i] == y else "tab:red")
        for r in range(3):
            img_axes[r, i].set_xticks([]), img_axes[r, i].set_yticks([])
    for r, text in enumerate(("retain x", f"δ × {mag:.1f}", "x* = x + δ")):
        img_axes[r, 0].set_ylabel(text, fontsize=9)
    left.suptitle(f"y: label, ŷ / ŷ*: prediction (red: wrong)\nmax |δ| = {peak:.3f}, mean |δ| = "
                  f"{float(np.abs(delta).mean()):.3f} (pixels in [0, 1])", fontsize=9)

    ax_d, ax_c, ax_f = right.subplots(1, 3, gridspec_kw={"wspace": 0.75})
    steps = np.arange(len(trace.distance))
    dist_name = "OT distance ⟨T, C⟩" if trace.params.get("distance", "ot") == "ot" else "mean-feature distance"
    ax_d.plot(steps, trace.distance, marker="o", ms=3, color="tab:green")
    ax_d.set(title=f"{dist_name}\nto the forget batch", xlabel="δ-step k", ylabel="distance")
    ax_c.plot(steps, trace.ce, marker="o", ms=3, color="tab:red", label="cross-entropy")
    ax_c.set(title="cross-entropy and accuracy\nof the perturbed batch", xlabel="δ-step k", ylabel="cross-entropy")
    ax_a = ax_c.twinx()
    ax_a.plot(steps, trace.acc, ls="--", color="0.4", label="accuracy")
    ax_a.set(ylabel="batch accuracy", ylim=(-0.02, 1.02))
    lines = ax_c.get_lines() + ax_a.get_lines()
    ax_c.legend(lines, [ln.get_label() for ln in lines], fontsize=8, loc="best")
    plane = feature_plane(trace)
    ax_f.scatter(*plane["forget"].T, marker="^", s=45, color="tab:red", alpha=0.7, label="forget batch")
    ax_f.scatter(*plane["clean"].T, s=30, color="tab:blue", alpha=0.5, label="retain, clean")
    ax_f.scatter(*plane["perturbed"].T, s=30, color="tab:purple", marker="s", alpha=0.8, label="retain, perturbed")
    for a, b in zip(plane["clean"], plane["perturbed"]):
        ax_f.annotate("", xy=b, xytext=a, arrowprops=dict(arrowstyle="->", color="0.45", lw=0.7))
    ax_f.set(title="features, unit length\n(2 principal axes)", xlabel="PC 1", ylabel="PC 2")
    ax_f.legend(fontsize=8, loc="best")
    for ax in (ax_d, ax_c, ax_f):
        ax.grid(alpha=0.3)
    for ax in (ax_d, ax_c):
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    p = trace.params
    right.suptitle(title or f"one DLFD perturbation: K={p['K']}, α={p['alpha']}, w_f={p['w_f']}, "
                   f"w_t={p['w_t']} ({p['feature_layer']})", fontsize=10, y=1.04)
    return fig
