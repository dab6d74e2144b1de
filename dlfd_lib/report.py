"""The verdict's tables and words, written from a protocol run's ``protocol.json``.

Every function here reads what :func:`dlfd_lib.protocol.run_protocol` wrote and formats it as
Markdown: the chosen settings, every model's mean (sd) over the evaluation seeds, the paired
differences to DLFD (Student-t interval, verdict, Holm-adjusted p; the bootstrap interval beside
it in the long form), the four membership attacks, the correlation-collapse measures, the
trade-off front points and their hypervolumes, DLFD's ablations, the per-example test, the
verdict in plain words and the cost by stage. Nothing is recomputed: every number is the run's.
``benchmarks/protocol_report.py`` prints them and writes the README's results block
(:func:`readme_block`); notebooks 03 and 05 show the committed verdict with them
(:func:`load_run`).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from .stats import fmt_num, identical_on_every_seed

__all__ = ["LABELS", "label", "load_run", "summary_table", "per_seed_table", "paired_markdown",
           "intervals_markdown", "verdict_markdown", "cost_markdown", "attack_markdown",
           "collapse_markdown", "points_markdown", "hypervolume_markdown", "ablation_markdown",
           "ulira_markdown", "provenance_line", "readme_block", "write_readme", "BEGIN", "END",
           "pending_block", "VERDICT_DIR", "VERDICT_FIGURE", "VERDICT_PAGE", "verdict_page", "pending_page"]

LABELS = {"original": "original", "retrained": "retrained", "dlfd": "**DLFD**", "dlfd_released": "DLFD (released code)", "neggrad": "NegGrad",
          "neggrad_plus": "NegGrad+", "unsir": "UNSIR", "bad_teacher": "Bad Teacher", "scrub": "SCRUB",
          "finetune": "Fine-tune", "random_label": "Random-Label", "salun": "SalUn", "cf_k": "CF-k",
          "eu_k": "EU-k"}
SUMMARY = [("retain_acc", "retain acc"), ("forget_acc", "forget acc"), ("test_acc", "test acc"),
           ("mia", "MIA"), ("abs_mia_gap", "abs(MIA − MIA retr.)"), ("avg_gap", "Avg. Gap"),
           ("nomus", "NoMUS"), ("mia_sampling_sd", "MIA sampling sd")]
PAIRED = [("test_acc", "test acc"), ("abs_mia_gap", "abs(MIA gap)"), ("avg_gap", "Avg. Gap"),
          ("nomus", "NoMUS")]
ATTACKS = ("loss", "confidence", "entropy", "mentr")
COLLAPSE = [("probe_acc", "probe acc (test)"), ("probe_forget_acc", "probe acc (forget)"),
            ("silhouette", "silhouette"), ("identity_knn_acc", "identity 1-NN (forget)"),
            ("cka_to_original_test", "CKA to original (test)")]




def load_run(folder: str | Path) -> dict | None:
    """The ``protocol.json`` of a protocol folder (None if the run has not finished there)."""
    path = Path(folder) / "protocol.json"
    return json.loads(path.read_text()) if path.exists() else None


def provenance_line(run: dict) -> str:
    """Where the run's last invocation ran: CPU and flags, cores, threads, precision, torch, commit."""
    prov = run.get("provenance", {})
    git = prov.get("git") or {}
    return (f"CPU {prov.get('cpu', '?')} ({', '.join(prov.get('cpu_flags', [])) or 'flags unknown'}), "
            f"{prov.get('cpu_count', '?')} cores, {prov.get('threads', '?')} torch threads, "
            f"{prov.get('precision', '?')}, torch {prov.get('torch', '?')}, "
            f"kit commit {str(git.get('commit', '?'))[:10]}{' (modified)' if git.get('dirty') else ''}")


def label(model: str) -> str:
    return LABELS.get(model, model)


def _ms(mean: float, sd: float, digits: int = 3) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    return f"{mean:.{digits}f} ({sd:.{digits}f})" if not math.isnan(sd) else f"{mean:.{digits}f}"


def _fmt_hp(params: dict) -> str:
    out = []
    for k, v in params.items():
        if isinstance(v, float):
            v = f"{v:.3g}"
        out.append(f"`{k}`={v}")
    return ", ".join(out) if out else "declared defaults (no search space)"


def tuned_table(run: dict, tuning_dir: Path) -> str:
    lines = ["| method | chosen setting | best validation score | trials |", "|---|---|---|---|"]
    for method, params in run["tuned"].items():
        meta = {}
        f = tuning_dir / f"{method}.json"
        if f.exists():
            meta = json.loads(f.read_text())
        value = meta.get("value")
        lines.append(f"| {label(method)} | {_fmt_hp(params)} | "
                     f"{'–' if value is None else f'{value:.4f}'} | {meta.get('n_trials', '–')} |")
    return "\n".join(lines)


def summary_table(rows: pd.DataFrame) -> str:
    cols = [(c, h) for c, h in SUMMARY if c in rows]
    g = rows.groupby("model", sort=False)
    mean, sd = g.mean(numeric_only=True), g.std(ddof=1, numeric_only=True)
    order = ["original", "retrained"] + [m for m in mean.index if m not in ("original", "retrained")]
    head = "| model | " + " | ".join(h for _, h in cols) + " | seconds |"
    lines = [head, "|" + "---|" * (len(cols) + 2)]
    for m in order:
        cells = [_ms(mean.loc[m, c], sd.loc[m, c]) for c, _ in cols]
        secs = mean.loc[m, "seconds"] if "seconds" in mean else float("nan")
        tail = f"{secs:.0f} (training)" if m in ("original", "retrained") else f"{secs:.0f}"
        lines.append(f"| {label(m)} | " + " | ".join(cells) + f" | {tail} |")
    return "\n".join(lines)


def per_seed_table(rows: pd.DataFrame, metric: str) -> str:
    wide = rows.pivot_table(index="model", columns="seed", values=metric, sort=False)
    seeds = list(wide.columns)
    lines = ["| model | " + " | ".join(f"seed {s}" for s in seeds) + " |", "|" + "---|" * (len(seeds) + 1)]
    for m in wide.index:
        lines.append(f"| {label(m)} | " + " | ".join(f"{wide.loc[m, s]:.3f}" for s in seeds) + " |")
    return "\n".join(lines)


def _p(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.3f}" if value >= 0.001 else "<0.001"


def _interval(r, lo: str = "lo", hi: str = "hi", digits: int = 3, diff: bool = True) -> str:
    """``+d [lo, hi]`` of a paired row (``[lo, hi]`` without ``diff``), each end precise enough to
    show its side of zero (:func:`dlfd_lib.stats.fmt_num`)."""
    ends = f"[{fmt_num(r[lo], digits, True)}, {fmt_num(r[hi], digits, True)}]"
    return f"{fmt_num(r['diff'], digits, True)} {ends}" if diff else ends


def _verdict(r) -> str:
    """A paired row's verdict, marked where the call (better / worse on its own t interval) does not
    survive Holm's correction across its family (p_Holm > 0.05); "identical" where every seed's
    difference is exactly zero (e.g. an ablation whose change the tuned setting already has)."""
    if identical_on_every_seed(r):
        return "identical on every seed"
    p_holm = r.get("p_holm", float("nan"))
    if r["verdict"] in ("better", "worse") and p_holm == p_holm and float(p_holm) > 0.05:
        return f"{r['verdict']} (not after Holm)"
    return str(r["verdict"])


def paired_markdown(paired: pd.DataFrame, metrics=PAIRED) -> str:
    """``paired`` (:func:`dlfd_lib.stats.paired_table`) as Markdown, one column per metric of
    ``metrics`` (``(column, header)`` pairs) that it holds: the mean difference, its Student-t 95 %
    interval, the verdict on it and the Holm-adjusted p-value across the models of that metric."""
    metrics = [(c, h) for c, h in metrics if c in set(paired["metric"])]
    lines = ["| model − DLFD | " + " | ".join(h for _, h in metrics) + " |", "|" + "---|" * (len(metrics) + 1)]
    for model, grp in paired.groupby("model", sort=False):
        g = grp.set_index("metric")
        cells = []
        for c, _ in metrics:
            r = g.loc[c]
            cells.append(f"{_interval(r)} {_verdict(r)}, p_Holm {_p(r.get('p_holm', float('nan')))}")
        lines.append(f"| {label(model)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def intervals_markdown(paired: pd.DataFrame, metrics=PAIRED) -> str:
    """The long form of ``paired``: per model and metric the t and the bootstrap interval side by
    side, the raw and the Holm-adjusted p-value and the number of seeds."""
    names = dict(metrics)
    lines = ["| model − DLFD | metric | mean | t 95 % | bootstrap 95 % | p | p (Holm) | seeds | verdict |",
             "|---|---|---|---|---|---|---|---|---|"]
    for _, r in paired[paired["metric"].isin(names)].iterrows():
        lines.append(f"| {label(r['model'])} | {names[r['metric']]} | {fmt_num(r['diff'], sign=True)} | "
                     f"{_interval(r, diff=False)} | {_interval(r, 'boot_lo', 'boot_hi', diff=False)} | "
                     f"{_p(r['p'])} | {_p(r['p_holm'])} | {int(r['n_seeds'])} | {r['verdict']} |")
    return "\n".join(lines)


def _find(paired: pd.DataFrame, model: str, metric: str):
    if paired is None or paired.empty:
        return None
    hit = paired[(paired["model"] == model) & (paired["metric"] == metric)]
    return None if hit.empty else hit.iloc[0]


def _who(r, model: str, better: str, worse: str, what: str) -> str:
    """A paired row of ``model − DLFD`` in words: who wins on ``what``, with the t interval."""
    if r is None:
        return f"{what}: not measured"
    ci = _interval(r)
    if _verdict(r).endswith("(not after Holm)"):
        ci += ", not after Holm"
    if r["verdict"] == "better":
        return f"{what}: {better} ({ci})"
    if r["verdict"] == "worse":
        return f"{what}: {worse} ({ci})"
    return f"{what}: cannot tell ({ci})"


def verdict_markdown(run: dict, detail: bool = True) -> str:
    """The verdict in plain words, computed from the run: for every method, against DLFD, whether
    DLFD keeps more test accuracy at the tuned points and whether their MIA is as close to the
    retrained model's, whether its front is larger (hypervolume), whether it collapses less
    (probe accuracy, silhouette), and how far each is from the retrained model (Avg. Gap). Every
    call rests on a paired Student-t 95 % interval over the evaluation seeds; "cannot tell" where
    it crosses zero. ``detail=False``: the lead only (one count per question)."""
    rows = pd.DataFrame(run["rows"])
    paired = pd.DataFrame(run["paired"])
    hv = pd.DataFrame(run.get("hypervolume_paired", []))
    cp = pd.DataFrame(run.get("collapse_paired", []))
    gap = rows.groupby("model", sort=False)["avg_gap"].mean()
    seeds = sorted(set(rows["seed"]))
    methods = [m for m in dict.fromkeys(rows["model"]) if m not in ("original", "retrained", "dlfd")]
    out = []
    for m in methods:
        parts = [
            _who(_find(paired, m, "test_acc"), m, f"{label(m)} keeps more", "DLFD keeps more",
                 "test accuracy at the tuned points"),
            _who(_find(paired, m, "abs_mia_gap"), m, f"{label(m)}'s MIA is closer to the retrained model's",
                 "DLFD's MIA is closer to the retrained model's", "|MIA − MIA retrained|"),
            _who(_find(hv, m, "hypervolume"), m, f"{label(m)}'s front is larger", "DLFD's front is larger",
                 "trade-off front (hypervolume)"),
            _who(_find(cp, m, "probe_acc"), m, f"{label(m)} collapses less", "DLFD collapses less",
                 "linear-probe accuracy"),
            _who(_find(cp, m, "silhouette"), m, f"{label(m)} collapses less", "DLFD collapses less",
                 "class silhouette"),
        ]
        g = f"Avg. Gap to the retrained model {gap.get(m, float('nan')):.3f} (DLFD {gap.get('dlfd', float('nan')):.3f})"
        out.append(f"- **{label(m)}** – " + "; ".join(parts) + f"; {g}.")

    def tally(frame, metric, dlfd_wins, dlfd_loses):
        """'DLFD <wins> N, <loses> M, cannot tell for K' over the methods (a method's 'worse' is DLFD's win)."""
        calls = [None if (r := _find(frame, m, metric)) is None else r["verdict"] for m in methods]
        n = [sum(c == v for c in calls) for v in ("worse", "better")]
        tie = sum(c not in ("worse", "better") for c in calls)
        return f"{dlfd_wins} {n[0]}, {dlfd_loses} {n[1]}, cannot tell for {tie}"

    head = (f"Against {len(methods)} methods, paired over {len(seeds)} evaluation seeds (each seed draws its own "
            f"data and trains its own original and retrained models, so the intervals cover the training seed "
            f"too, not only reruns of one unlearning run), counting the methods on each side of a 95 % interval "
            f"that excludes zero:\n\n"
            f"- **at matched forgetting** (the trade-off fronts' hypervolume): DLFD's front is "
            + tally(hv, "hypervolume", "larger than", "smaller than") + ";\n"
            "- **at the tuned points**, test accuracy: DLFD keeps "
            + tally(paired, "test_acc", "more than", "less than") + ";\n"
            "- **at the tuned points**, forgetting (|MIA − MIA of the retrained model|): DLFD is "
            + tally(paired, "abs_mia_gap", "closer than", "further than") + ";\n"
            "- **at the tuned points**, NoMUS (the paper's headline score): DLFD scores "
            + tally(paired, "nomus", "higher than", "lower than") + "; Avg. Gap to the retrained model: DLFD is "
            + tally(paired, "avg_gap", "closer than", "further than") + ";\n"
            "- **correlation collapse**, linear-probe accuracy: DLFD collapses "
            + tally(cp, "probe_acc", "less than", "more than") + "; class silhouette: "
            + tally(cp, "silhouette", "less than", "more than") + ".")
    frames = [f for f in (paired, hv, cp) if not f.empty]
    calls = pd.concat(frames) if frames else pd.DataFrame(columns=["model", "verdict"])
    calls = calls[calls["model"].isin(methods) & calls["verdict"].isin(["better", "worse"])]
    if "p_holm" in calls and len(calls):
        head += (f"\n\nEach call rests on its own interval. Corrected for the {len(methods)} methods compared per "
                 f"question (Holm), {int((calls['p_holm'] <= 0.05).sum())} of these {len(calls)} calls keep "
                 f"p ≤ 0.05; the others are marked \"not after Holm\" in the method-by-method list and the tables, which give every adjusted p.")
    if not detail:
        return head
    return head + "\n\nMethod by method (the difference is the method minus DLFD, with its 95 % t interval):\n\n" + "\n".join(out)


def cost_markdown(run: dict) -> str:
    """What the run cost, by stage (``stages.json``: wall time of each stage that computed
    something) and the reference models' own training times (their checkpoints' record)."""
    stages = pd.DataFrame(run.get("stages", []))
    rows = pd.DataFrame(run["rows"])
    lines = ["| stage | wall time |", "|---|---|"]
    if not stages.empty:
        kind = stages["stage"].str.replace(r" (seed )?[\w-]+$", "", regex=True)
        for k, secs in stages.groupby(kind, sort=False)["seconds"].sum().items():
            lines.append(f"| {k} ({int((kind == k).sum())} stage(s)) | {secs / 60:.1f} min |")
        lines.append(f"| all stages | {stages['seconds'].sum() / 60:.1f} min |")
    refs = rows[rows["model"].isin(["original", "retrained"])]
    if "seconds" in refs and len(refs):
        lines.append(f"| training the evaluation seeds' {len(refs)} reference models (their checkpoints' "
                     f"record; inside the stages above only where this run trained them) | "
                     f"{refs['seconds'].sum() / 60:.1f} min |")
    where = provenance_line(run)
    commits = sorted({str(t.get("commit"))[:10] for t in run.get("stages", []) if t.get("commit")})
    return "\n".join(lines) + f"\n\nMachine of the last invocation: {where}. Stages computed at commit(s) {', '.join(commits) or '–'}."


def attack_markdown(rows: pd.DataFrame) -> str | None:
    cols = [f"mia_{a}_auc" for a in ATTACKS]
    if not all(c in rows for c in cols):
        return None
    mean = rows.groupby("model", sort=False).mean(numeric_only=True)
    order = ["retrained", "original"] + [m for m in mean.index if m not in ("original", "retrained")]
    lines = ["| model | loss AUC | confidence AUC | entropy AUC | m-entropy AUC | entropy TPR@1%FPR |",
             "|---|---|---|---|---|---|"]
    for m in order:
        name = "retrained (target)" if m == "retrained" else label(m)
        cells = [f"{mean.loc[m, c]:.3f}" for c in cols] + [f"{mean.loc[m, 'mia_entropy_tpr1']:.3f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def collapse_markdown(collapse: pd.DataFrame) -> str | None:
    """Mean (sd) over the evaluation seeds of the correlation-collapse measures (``--collapse``)."""
    cols = [(c, h) for c, h in COLLAPSE if c in collapse]
    if collapse.empty or not cols:
        return None
    g = collapse.groupby("model", sort=False)
    mean, sd = g.mean(numeric_only=True), g.std(ddof=1, numeric_only=True)
    order = ["original", "retrained"] + [m for m in mean.index if m not in ("original", "retrained")]
    lines = ["| model | " + " | ".join(h for _, h in cols) + " |", "|" + "---|" * (len(cols) + 1)]
    for m in order:
        lines.append(f"| {label(m)} | " + " | ".join(_ms(mean.loc[m, c], sd.loc[m, c]) for c, _ in cols) + " |")
    return "\n".join(lines)


def points_markdown(points: pd.DataFrame) -> str:
    lines = ["| method | setting | strength | test acc | abs(MIA gap) | Avg. Gap | seeds | on its front |",
             "|---|---|---|---|---|---|---|---|"]
    for _, r in points.iterrows():
        s = r["strength"]
        s = "–" if s is None or (isinstance(s, float) and math.isnan(s)) else (f"{s:.3g}" if isinstance(s, float) else s)
        lines.append(f"| {label(r['model'])} | {r['setting']} | {s} | {r['test_acc']:.3f} | "
                     f"{r['abs_mia_gap']:.3f} | {r['avg_gap']:.3f} | {int(r['n_seeds'])} | "
                     f"{'yes' if r['on_front'] else ''} |")
    return "\n".join(lines)


def ablation_markdown(run: dict) -> str | None:
    """DLFD's ablations (each on top of its tuned setting) paired against the tuned DLFD."""
    ab = pd.DataFrame(run.get("ablations", []))
    ap = pd.DataFrame(run.get("ablations_paired", []))
    if ab.empty:
        return None
    return summary_table(ab) + "\n\n" + paired_markdown(ap).replace("model − DLFD", "variant − DLFD (paper)")


def ulira_markdown(run: dict) -> str | None:
    u = pd.DataFrame(run.get("ulira", []))
    if u.empty:
        return None
    cols = [c for c in u.columns if c != "model"]
    lines = ["| model | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
    for _, r in u.iterrows():
        cells = [f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in cols]
        lines.append(f"| {label(r['model'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def hypervolume_markdown(run: dict) -> str | None:
    hv = pd.DataFrame(run.get("hypervolume", []))
    if hv.empty:
        return None
    g = hv.groupby("model", sort=False)
    mean, sd = g["hypervolume"].mean(), g["hypervolume"].std(ddof=1)
    paired = pd.DataFrame(run.get("hypervolume_paired", [])).set_index("model") \
        if run.get("hypervolume_paired") else pd.DataFrame()
    ref = run.get("hv_reference", {"abs_mia_gap": 0.5, "test_acc": 0.0})
    lines = [f"Reference point: test accuracy {ref['test_acc']}, 1 − |MIA − MIA retrained| = "
             f"{1 - ref['abs_mia_gap']} (larger is better); one front per seed over "
             f"{int(hv['n_points'].median())} points (the strengths and the tuned setting), "
             f"{hv['seed'].nunique()} front seeds.", "",
             "| method | hypervolume | method − DLFD |", "|---|---|---|"]
    for m in mean.index:
        if m in paired.index:
            r = paired.loc[m]
            cell = f"{_interval(r, digits=4)} {_verdict(r)}, p_Holm {_p(r['p_holm'])}"
        else:
            cell = "–"
        lines.append(f"| {label(m)} | {_ms(mean[m], sd[m], 4)} | {cell} |")
    return "\n".join(lines)


#: the markers of the README's generated results block
BEGIN = "<!-- results:begin – written by benchmarks/protocol_report.py --readme from results/quick; do not edit -->"
END = "<!-- results:end -->"


def verdict_page(run: dict, figure: str | None) -> str:
    """The whole verdict as a page (``docs/verdict.md``): the verdict in words, method by method,
    the main table, the paired table, collapse, fronts (figure and hypervolume), ablations, the
    per-example test and the cost – all from the committed store's ``protocol.json``.
    ``figure``: the fronts figure's path relative to the page."""
    rows = pd.DataFrame(run["rows"])
    parts = ["# The verdict: DLFD against every baseline on the quick profile", "", PAGE_NOTE, "",
             f"Run: {provenance_line(run)}. The command and how to continue or redo it: "
             "[the protocol](protocol.md).", "",
             "## In words", "", verdict_markdown(run), "",
             "## Every model, mean (sd) over the evaluation seeds", "", summary_table(rows), "",
             "## Paired against DLFD: mean difference [Student-t 95 % interval] verdict for the model, "
             "Holm-adjusted p across the methods of each metric", "", paired_markdown(pd.DataFrame(run["paired"])), ""]
    cp = pd.DataFrame(run.get("collapse_paired", []))
    if not cp.empty:
        parts += ["## Correlation collapse, paired against DLFD", "", paired_markdown(cp, COLLAPSE), ""]
    hv = hypervolume_markdown(run)
    if figure or hv:
        parts += ["## Trade-off fronts", ""]
        if figure:
            parts += [f"![trade-off fronts]({figure})", ""]
        if hv:
            parts += [hv, ""]
    ab = ablation_markdown(run)
    if ab:
        parts += ["## DLFD's ablations (on its tuned setting), paired against the tuned DLFD", "", ab, ""]
    u = ulira_markdown(run)
    if u:
        parts += [f"## Per-example test (seed {run['config']['eval_seeds'][0]}, "
                  f"K = {run['config'].get('ulira_k')} retrained references)", "", u, ""]
    parts += ["## What the run cost", "", cost_markdown(run), ""]
    return "\n".join(parts)


def readme_block(run: dict, figure: str | None) -> str:
    """The README's results: the verdict's lead (one count per question), the main table, the
    fronts figure and the total cost, with a link to the whole verdict (:func:`verdict_page`)."""
    rows = pd.DataFrame(run["rows"])
    parts = [BEGIN, "", verdict_markdown(run, detail=False), "",
             "Every model, mean (sd) over the evaluation seeds:", "", summary_table(rows), ""]
    if figure:
        parts += [f"![trade-off fronts: test accuracy against forgetting, one front per method]({figure})", ""]
    stages = run.get("stages", [])
    cost = (f" The run took {sum(t.get('seconds', 0) for t in stages) / 60:.0f} min in all "
            f"({provenance_line(run)})." if stages else "")
    parts += [f"Method by method, the paired tables, collapse, the fronts' hypervolumes, the ablations, the "
              f"per-example test and the cost by stage: [the verdict](docs/verdict.md).{cost}", "", END]
    return "\n".join(parts)


#: where the README's results come from, and the fronts figure they show
VERDICT_DIR = "results/quick"
VERDICT_FIGURE = "docs/img/verdict_fronts_quick.png"
#: the whole verdict, written beside the README's block (:func:`verdict_page`)
VERDICT_PAGE = "docs/verdict.md"
#: the line under the verdict page's title: it is generated, like the README's block
PAGE_NOTE = "<!-- written by benchmarks/protocol_report.py --readme from results/quick; do not edit -->"


def pending_block() -> str:
    """The README's results block while the verdict's run has not finished: no numbers."""
    return "\n".join([BEGIN, "", f"The verdict's run has not finished yet: `{VERDICT_DIR}/` holds the stages "
                       "committed so far (`stages.json` lists them, with their wall times), and the same "
                       "command continues it (see *The protocol*).", "", END])


def pending_page() -> str:
    """The verdict page while the run has not finished: no numbers."""
    return "\n".join(["# The verdict: DLFD against every baseline on the quick profile", "", PAGE_NOTE, "",
                       f"The verdict's run has not finished yet: `{VERDICT_DIR}/` holds the stages committed so "
                       "far, and the same command continues it ([the protocol](protocol.md)).", ""])


def write_readme(path: Path, block: str) -> bool:
    """Replace the block between :data:`BEGIN` and :data:`END` in ``path``; True if it changed."""
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{path} has no results block: put the two lines\n{BEGIN}\n{END}\nwhere it goes")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = head + block + tail
    if new != text:
        path.write_text(new)
    return new != text
