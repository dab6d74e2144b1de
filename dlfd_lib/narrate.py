"""Prose computed from a run: the sentences, comparisons and warnings the notebooks show.

A notebook teaches through its markdown, and a reader trusts the words more than the table under
them. So the words about *this run* are never typed into a markdown cell: a cell renders them
from the run's own tables with the functions here, and they change when the numbers change.
Three kinds of number remain in the typed markdown, each with its source named (the allow-list
of ``tests/test_notebook_prose.py`` checks every one):

* the paper's numbers (:data:`PAPER_MUFAC`, from the authors' printed MUFAC outputs);
* hyperparameters and definitions (the paper's settings, the attack's 10 splits, ...);
* chance levels and the arithmetic of worked examples.

The same rule holds for claims. "X collapses", "Y beats Z" is computed from the run's table – with
the spread and a paired interval where there are seeds ("cannot tell" when the interval crosses
zero), and flagged as *one seed: a description, not a finding* where there is one – or it is
asked as a question that the next cell answers. The paper's claims are stated as the paper's,
and the functions say whether this run agrees.

Building blocks:

* :func:`say` formats a Markdown template with values (``say("accuracy {acc:.3f}", acc=a)``) and
  returns a displayable :class:`Prose`; :func:`warn_box` / :func:`note_box` frame a styled block.
* :func:`seeds_phrase`, :func:`paired_words`, :func:`rank_words`: the spread in words.
* Guards, each returning a warning box or None: :func:`kept_state_guard` (DLFD kept its worst
  monitored state), :func:`replay_guard` (a recomputation disagrees with the run),
  :func:`threshold_guard` (relative thresholds drawn on an absolute axis),
  :func:`utility_guard` (a method lost more test accuracy than the attack's sampling sd).
* Reports: :func:`collapse_report` (notebook 02: what this run shows about correlation collapse
  and what the paper claims), :func:`paper_rank_report` (the paper's NoMUS ranking beside this
  run's), :func:`fronts_report` (each method's configured point beside its sweep's best),
  :func:`committed_source` / :func:`committed_paired_words` (numbers of the committed verdict,
  labelled with its commit and seeds).
"""
from __future__ import annotations

import html
import math
from typing import Iterable, Mapping, Sequence

import pandas as pd

from .stats import fmt_num, identical_on_every_seed

__all__ = ["Prose", "say", "warn_box", "note_box", "num", "seeds_phrase", "ONE_SEED", "paired_words",
           "rank_words", "kept_state_guard", "replay_guard", "threshold_guard", "utility_guard",
           "collapse_report", "ERROR_MAXIMISING", "PAPER_MUFAC", "PAPER_SOURCE", "PAPER_COLLAPSE_CLAIM",
           "paper_rank_report", "fronts_report", "committed_source", "committed_paired_words",
           "zigzag_words", "show", "separation_report", "name"]

#: what a single seed's comparison is, in the notebooks' words
ONE_SEED = "one seed: a description, not a finding"

#: where :data:`PAPER_MUFAC` comes from
PAPER_SOURCE = ("the paper's MUFAC table (Choi & Na, AAAI 2025; the authors' notebooks' printed outputs, "
                "ResNet18, test 1,504 images)")
#: The authors' published MUFAC numbers (``shared/reference/paper-notes.md``): test accuracy, MIA,
#: forgetting score and NoMUS per model, under the kit's method names.
PAPER_MUFAC = {
    "original": {"test_acc": 0.6330, "mia": 0.6924, "fs": 0.1924, "nomus": 0.6241},
    "retrained": {"test_acc": 0.6084, "mia": 0.5548, "fs": 0.0548, "nomus": 0.7494},
    "finetune": {"test_acc": 0.6376, "mia": 0.6884, "fs": 0.1884, "nomus": 0.6304},
    "cf_k": {"test_acc": 0.6223, "mia": 0.6837, "fs": 0.1837, "nomus": 0.6274},
    "eu_k": {"test_acc": 0.6297, "mia": 0.6894, "fs": 0.1894, "nomus": 0.6255},
    "neggrad": {"test_acc": 0.4116, "mia": 0.4751, "fs": 0.0249, "nomus": 0.6809},
    "unsir": {"test_acc": 0.4907, "mia": 0.5309, "fs": 0.0309, "nomus": 0.7144},
    "bad_teacher": {"test_acc": 0.4202, "mia": 0.5628, "fs": 0.0628, "nomus": 0.6473},
    "scrub": {"test_acc": 0.6463, "mia": 0.6638, "fs": 0.1638, "nomus": 0.6594},
    "dlfd": {"test_acc": 0.6197, "mia": 0.5279, "fs": 0.0279, "nomus": 0.7819},
}
#: The error-maximising methods of the paper's correlation-collapse argument.
ERROR_MAXIMISING = ("neggrad", "unsir", "bad_teacher")
#: The paper's claim about correlation collapse, in its own terms (it gives pictures, no number).
PAPER_COLLAPSE_CLAIM = ("error-maximising unlearning (NegGrad, UNSIR, Bad Teacher) destroys the correlation "
                        "between task features and true labels – the class clusters smear together and utility "
                        "drops – while DLFD keeps the class separation (the paper shows it with feature-space "
                        "plots and gives no numeric measure)")

_NAMES = {"original": "the original model", "retrained": "the retrained model", "dlfd": "DLFD",
          "dlfd_released": "DLFD (released code)", "neggrad": "NegGrad", "neggrad_plus": "NegGrad+",
          "unsir": "UNSIR", "bad_teacher": "Bad Teacher", "scrub": "SCRUB", "finetune": "Fine-tune",
          "random_label": "Random-Label", "salun": "SalUn", "cf_k": "CF-k", "eu_k": "EU-k"}


#: metric names for prose
METRIC_NAMES = {"nomus": "NoMUS", "test_acc": "test accuracy", "fs": "forgetting score", "mia": "MIA",
                "avg_gap": "Avg. Gap", "abs_mia_gap": "|MIA − MIA retrained|"}


def name(model: str) -> str:
    """A model's display name (``"bad_teacher"`` -> ``"Bad Teacher"``); unknown names pass through."""
    return _NAMES.get(model, model)


# --------------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------------
class Prose:
    """A piece of Markdown that Jupyter renders as Markdown (``_repr_markdown_``) and a terminal,
    a log or a test reads as plain text (``str``/``repr``). ``html`` (optional) is a styled
    rendering for front ends that prefer HTML; the Markdown stays the canonical form."""

    def __init__(self, markdown: str, plain: str | None = None):
        self.markdown = markdown
        self.plain = plain if plain is not None else markdown

    def _repr_markdown_(self) -> str:
        return self.markdown

    def __str__(self) -> str:
        return self.plain

    def __repr__(self) -> str:
        return self.plain

    def __add__(self, other: "Prose | str") -> "Prose":
        if isinstance(other, Prose):
            return Prose(self.markdown + "\n\n" + other.markdown, self.plain + "\n" + other.plain)
        return Prose(self.markdown + "\n\n" + str(other), self.plain + "\n" + str(other))


def say(template: str, /, **values) -> Prose:
    """``template.format(**values)`` as :class:`Prose`: the way a notebook turns run values into a
    sentence (``say("Test accuracy {acc:.3f}.", acc=row["test_acc"])``). Formats are the
    template's own; a missing value raises ``KeyError`` naming it."""
    try:
        return Prose(template.format(**values))
    except KeyError as err:
        raise KeyError(f"say(): the template needs {err.args[0]!r}; got {sorted(values)}") from None


def show(*parts: "Prose | str | None") -> None:
    """Display each part that is not None (Markdown in Jupyter, plain text elsewhere)."""
    from IPython.display import display
    for p in parts:
        if p is None:
            continue
        display(p if isinstance(p, Prose) else Prose(str(p)))


_BOX = {"warning": ("⚠", "#b26a00", "#fff4e0"), "note": ("ℹ", "#1f5f99", "#eaf3fb")}


def _box(kind: str, title: str, body: str) -> Prose:
    icon, edge, fill = _BOX[kind]
    # the class names are the ones Jupyter's classic notebook and JupyterLab style; the inline style
    # is the fallback for renderers (the book) that know neither
    css = {"warning": "alert-warning", "note": "alert-info"}[kind]
    md = (f'<div class="alert alert-block {css}" style="border-left: 5px solid {edge}; background: {fill}; '
          f'padding: 0.6em 1em; margin: 0.6em 0;">\n\n'
          f"**{icon} {title}**\n\n{body}\n\n</div>")
    return Prose(md, f"{kind.upper()}: {title} – {body}")


def warn_box(title: str, body: str) -> Prose:
    """A styled warning block (Markdown with a coloured frame) – for what a reader must not miss:
    the run contradicts its own description, a recomputation disagrees, a figure could mislead."""
    return _box("warning", title, body)


def note_box(title: str, body: str) -> Prose:
    """A styled note block, for context that qualifies the numbers beside it."""
    return _box("note", title, body)


def num(x, digits: int = 3, signed: bool = False) -> str:
    """A number for prose: ``digits`` decimals (more where a non-zero value would read as 0,
    :func:`dlfd_lib.stats.fmt_num`), "–" for None/NaN, integers as they are."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, (int,)) and not isinstance(x, bool):
        return f"{x:+d}" if signed else str(x)
    return fmt_num(x, digits, signed)


# --------------------------------------------------------------------------------------------
# the spread in words
# --------------------------------------------------------------------------------------------
def seeds_phrase(n_seeds: int) -> str:
    """"mean over N seeds" (N > 1) or the one-seed caveat."""
    return f"mean over {n_seeds} seeds" if n_seeds > 1 else ONE_SEED


def paired_words(row, better: str, worse: str) -> str:
    """One row of :func:`dlfd_lib.stats.paired_table` in words: who wins, with the interval – or
    "cannot tell" when the interval crosses zero, or the one-seed caveat when there is one seed."""
    if row is None:
        return "not measured"
    n = int(row.get("n_seeds", 1))
    d = fmt_num(row['diff'], sign=True)
    if n < 2:
        return f"difference {d} ({ONE_SEED})"
    if identical_on_every_seed(row):
        return f"identical on every one of {n} seeds (difference exactly 0: the two settings made the same models)"
    ci = f"{d}, 95 % interval [{fmt_num(row['lo'], sign=True)}, {fmt_num(row['hi'], sign=True)}] over {n} seeds"
    p_holm = row.get("p_holm")
    if row["verdict"] in ("better", "worse") and p_holm is not None and p_holm == p_holm and float(p_holm) > 0.05:
        ci += (f"; p_Holm {float(p_holm):.3f}: the call does not survive Holm's correction across the "
               f"comparisons of its family")
    if row["verdict"] == "better":
        return f"{better} ({ci})"
    if row["verdict"] == "worse":
        return f"{worse} ({ci})"
    return f"cannot tell ({ci}: the interval crosses zero)"


def rank_words(summary: pd.DataFrame, model: str, metric: str, higher_is_better: bool = True,
               among: Iterable[str] | None = None) -> tuple[int, int, str]:
    """Where ``model`` ranks on ``metric`` among ``among`` (default: every row but the two
    references): ``(rank, n, sentence)``; rank 1 is the best."""
    rows = [m for m in (among if among is not None else summary.index) if m not in ("original", "retrained")
            and m in summary.index]
    values = summary.loc[rows, metric].astype(float).sort_values(ascending=not higher_is_better)
    rank = list(values.index).index(model) + 1
    lead = values.index[0]
    text = (f"{name(model)} ranks {rank} of {len(values)} on {METRIC_NAMES.get(metric, metric)} ({num(values[model])}; "
            f"{'it leads' if rank == 1 else f'best: {name(lead)} {num(values[lead])}'})")
    return rank, len(values), text


# --------------------------------------------------------------------------------------------
# guards
# --------------------------------------------------------------------------------------------
def kept_state_guard(history: pd.DataFrame, info: Mapping, who: str = "DLFD") -> Prose | None:
    """A warning when a DLFD run kept the monitored state with the lowest validation accuracy (of
    at least two states that differ): its checkpoint selection then chose the most damaged model
    it saw – usually because no state had FS <= max_fs and the fallback rule chose. ``who`` names
    the run (a variant's label in notebook 05)."""
    h = history.reset_index(drop=True)
    if len(h) < 2 or h["val_acc"].max() <= h["val_acc"].min():
        return None
    kept = h.index[h["batch"] == info["selected_batch"]]
    if not len(kept):
        return warn_box(f"{who}: the kept state is not in the monitored history",
                        f"The run says it kept the state after batch {info['selected_batch']}, but its history "
                        f"has no monitor there.")
    acc = float(h.loc[kept[0], "val_acc"])
    if acc > float(h["val_acc"].min()):
        return None
    best = h.loc[h["val_acc"].idxmax()]
    rule = str(info["selection_rule"])
    limit = f"FS ≤ max_fs ({num(info['max_fs_used'])} as applied)"
    why = {"lowest_fs": f"No state had {limit}, so the fallback rule `lowest_fs` chose the lowest monitored FS – "
                        f"and a model that has lost its task also leaks less, so its FS falls with it.",
           "val_nomus": f"No state had {limit}, so the fallback rule `val_nomus` chose the best NoMUS on the "
                        f"monitor's validation data – here the most damaged state.",
           "last": f"No state had {limit}, so the fallback rule `last` kept the end of the epoch."}.get(
        rule, f"Only states this damaged had {limit}: the paper's rule kept the best of them.")
    return warn_box(
        f"{who} kept its worst monitored state",
        f"Of its {len(h)} monitored states, the one kept (after batch {info['selected_batch']}, rule `{rule}`) has "
        f"the lowest validation accuracy, {num(acc)}; the first had {num(h['val_acc'].iloc[0])}, the best "
        f"{num(best['val_acc'])} (after batch {int(best['batch'])}). {why} Read this run's {who} row as the "
        f"result of that choice, not of the method at its best.")


def replay_guard(again: Mapping, info: Mapping) -> Prose | None:
    """A warning when a recomputation (:func:`dlfd_lib.unlearn.dlfd.replay_selection`) disagrees
    with what the run reports, key by key; None when they agree."""
    keys = ("switched_at_batch", "selected_batch", "selection_rule")
    diff = [k for k in keys if again.get(k) != info.get(k)]
    if not diff:
        return None
    lines = "; ".join(f"`{k}`: recomputed {again.get(k)!r}, the run says {info.get(k)!r}" for k in diff)
    return warn_box("The recomputation disagrees with the run",
                    f"{lines}. The history and the run's own account of it do not fit together: the "
                    f"figure above and the equations of this section describe the recomputation, not "
                    f"necessarily what the run did.")


def threshold_guard(info: Mapping, drawn: Mapping[str, float | None] | None = None) -> Prose | None:
    """Thresholds and the axis they are drawn on. ``drawn`` = ``{"forget_threshold": y, "max_fs": y}``,
    the values drawn on an absolute forgetting-score axis. In relative mode the hyperparameters are
    fractions of the original model's monitored FS: a warning when a drawn line is not the absolute
    value the run applied, a note saying how they were converted when it is; None in absolute mode
    with the used values drawn."""
    used = {"forget_threshold": info.get("forget_threshold_used"), "max_fs": info.get("max_fs_used")}
    drawn = dict(drawn or {})
    wrong = [k for k, v in drawn.items() if v is not None and used.get(k) is not None
             and abs(float(v) - float(used[k])) > 1e-9]
    if wrong:
        return warn_box("A threshold is drawn at the wrong height",
                        "; ".join(f"`{k}` drawn at {num(drawn[k])}, applied as {num(used[k])}" for k in wrong)
                        + (f". In relative mode the hyperparameters are fractions of the original model's "
                           f"monitored FS ({num(info.get('fs_original'))}); on an absolute FS axis they must be "
                           f"drawn as fraction × that FS." if info.get("threshold_mode") == "relative" else "."))
    if info.get("threshold_mode") == "relative" and info.get("fs_original"):
        fo = float(info["fs_original"])
        return note_box("Relative thresholds, drawn as absolute forgetting scores",
                        f"This run's thresholds are fractions of the original model's monitored FS "
                        f"({num(fo)}): the switch at {num(used['forget_threshold'] / fo, 2)} × it = "
                        f"{num(used['forget_threshold'])}, the kept-state limit at {num(used['max_fs'] / fo, 2)} × it = "
                        f"{num(used['max_fs'])}. The lines are drawn at those absolute values, on the same "
                        f"axis as the monitored FS.")
    return None


def utility_guard(summary: pd.DataFrame, noise: Mapping[str, float], reference: str = "original",
                  methods: Sequence[str] | None = None) -> Prose | None:
    """A warning listing the methods whose test accuracy ends below ``reference``'s by more than
    the attack's own sampling sd (``noise``: model -> :func:`dlfd_lib.stats.mia_sampling_sd`):
    their forgetting score was bought with utility, by more than the attack can resolve, so the
    forgetting score alone flatters them."""
    if reference not in summary.index:
        return None
    base = float(summary.loc[reference, "test_acc"])
    rows = []
    for m in methods if methods is not None else summary.index:
        if m in ("original", "retrained") or m not in summary.index:
            continue
        drop = base - float(summary.loc[m, "test_acc"])
        sd = noise.get(m)
        if sd is not None and drop > float(sd):
            rows.append((drop, m, float(summary.loc[m, "test_acc"]), float(sd)))
    if not rows:
        return None
    rows.sort(reverse=True)
    items = "; ".join(f"{name(m)} {num(acc)} (−{num(d)}, sampling sd {num(sd)})" for d, m, acc, sd in rows)
    return warn_box(f"{len(rows)} method(s) end below the original model's test accuracy ({num(base)}) by more "
                    f"than the attack's sampling sd",
                    f"{items}. Their forgetting scores came with a loss of utility larger than the noise "
                    f"of the attack that measures the forgetting: read their MIA together with this loss "
                    f"(NoMUS and Avg. Gap do).")


# --------------------------------------------------------------------------------------------
# notebook 02: correlation collapse in words
# --------------------------------------------------------------------------------------------
def _margin_share(value: float, original: float, chance: float) -> float:
    """How much of the original's probe margin above chance a model keeps (1 = all of it)."""
    span = original - chance
    return float("nan") if span <= 0 else (value - chance) / span


def _identity_words(value: float, retrained: float, original: float) -> str:
    """Where a method's forget-identity 1-NN accuracy sits against the two reference models', with
    what that side means: the retrained model never saw these people (its value is the target), the
    original was trained on them. Above both: recognised better than by either; below both: the
    features lost what any face model sees; between: neither."""
    if num(value) == num(retrained):
        return "at the retrained model's (recognised like strangers: the target)"
    lo, hi = min(retrained, original), max(retrained, original)
    if value > hi:
        return "above both reference models' (the forget people recognised better than by either)"
    if value < lo:
        return ("below both reference models' (recognised worse than by either: the features lost what any "
                "face model sees, a sign of damage rather than of forgetting)")
    return f"between the reference models' (retrained {num(retrained)}, the target; original {num(original)})"


def collapse_report(table: pd.DataFrame, methods: Sequence[str], error_maximising: Sequence[str] = ERROR_MAXIMISING,
                    dlfd: str = "dlfd", n_seeds: int = 1) -> Prose:
    """What this run's collapse table (notebook 02: ``probe_acc``, ``probe_chance``, ``silhouette``,
    ``identity_knn_acc``, ``cka_to_original_test``, ``test_acc`` per model, with ``original`` and
    ``retrained`` rows) shows, method by method, then the paper's claim and whether this run agrees.

    The reading rule (the kit's, stated in the output): a method shows a *collapse sign* on the
    probe when it keeps less than half of the original's probe margin above chance, on the
    silhouette when it is below both reference models', on CKA when it is below the retrained
    model's CKA to the original. The paper's claim holds against an error-maximising method when
    DLFD keeps at least its probe accuracy *and* its silhouette."""
    t = table
    o, r = t.loc["original"], t.loc["retrained"]
    chance = float(t["probe_chance"].dropna().iloc[0]) if "probe_chance" in t else float("nan")
    has_id = "identity_knn_acc" in t and pd.notna(r.get("identity_knn_acc"))
    lines = [f"**What this run shows** ({seeds_phrase(n_seeds)}). References: the original model has probe "
             f"accuracy {num(o['probe_acc'])} (chance {num(chance)}), silhouette {num(o['silhouette'])}"
             + (f", identity 1-NN {num(o['identity_knn_acc'])}" if has_id else "")
             + f"; the retrained model {num(r['probe_acc'])}, {num(r['silhouette'])}"
             + (f", {num(r['identity_knn_acc'])}" if has_id else "")
             + f", CKA to the original {num(r['cka_to_original_test'])}.", ""]
    signs: dict[str, list[str]] = {}
    for m in methods:
        if m not in t.index:
            continue
        row = t.loc[m]
        share = _margin_share(float(row["probe_acc"]), float(o["probe_acc"]), chance)
        s = []
        if share == share and share < 0.5:
            s.append("probe")
        if float(row["silhouette"]) < min(float(o["silhouette"]), float(r["silhouette"])):
            s.append("silhouette")
        if float(row["cka_to_original_test"]) < float(r["cka_to_original_test"]):
            s.append("CKA")
        signs[m] = s
        ident = ""
        if has_id:
            ident = f"; identity 1-NN {num(row['identity_knn_acc'])}, " + _identity_words(
                float(row["identity_knn_acc"]), float(r["identity_knn_acc"]), float(o["identity_knn_acc"]))
        kind = " (error-maximising)" if m in error_maximising else ""
        lines.append(
            f"- **{name(m)}**{kind}: test accuracy {num(row['test_acc'])}; probe accuracy {num(row['probe_acc'])}, "
            f"{'–' if share != share else f'{100 * share:.0f} %'} of the original's margin above chance; silhouette "
            f"{num(row['silhouette'])}; CKA to the original {num(row['cka_to_original_test'])}{ident}. "
            f"Collapse signs: {', '.join(s) if s else 'none'} ({len(s)} of 3).")
    lines += ["", "*Reading rule (the kit's): a collapse sign on the probe = less than half of the original's "
                  "margin above chance kept; on the silhouette = below both reference models'; on CKA = below "
                  "the retrained model's CKA to the original. Identity 1-NN measures whether the forget people are "
                  "still recognised – forgetting, not collapse – and its target is the retrained model's value.*", ""]
    lines += [f"**The paper's claim**: {PAPER_COLLAPSE_CLAIM}. Does this run agree?", ""]
    if dlfd in t.index:
        d = t.loc[dlfd]
        verdicts = []
        for m in error_maximising:
            if m not in t.index:
                continue
            keeps_probe = float(d["probe_acc"]) >= float(t.loc[m, "probe_acc"])
            keeps_sil = float(d["silhouette"]) >= float(t.loc[m, "silhouette"])
            em_collapses = len(signs.get(m, [])) > 0
            if keeps_probe and keeps_sil and em_collapses:
                word = "agrees"
            elif not keeps_probe and not keeps_sil:
                word = "disagrees"
            else:
                word = "partly agrees"
            verdicts.append(word)
            lines.append(
                f"- against **{name(m)}** this run {word}: DLFD's probe accuracy {num(d['probe_acc'])} vs "
                f"{num(t.loc[m, 'probe_acc'])} ({'DLFD keeps more or as much' if keeps_probe else 'DLFD keeps less'}), "
                f"silhouette {num(d['silhouette'])} vs {num(t.loc[m, 'silhouette'])} "
                f"({'DLFD keeps more or as much' if keeps_sil else 'DLFD keeps less'}); {name(m)} shows "
                f"{len(signs.get(m, []))} collapse sign(s).")
        lines.append(f"- DLFD itself shows {len(signs.get(dlfd, []))} collapse sign(s)"
                     + (f" ({', '.join(signs[dlfd])})." if signs.get(dlfd) else ".")
                     + (" So the comparisons above are relative: on its own, DLFD does not keep the class "
                        "separation of the reference models here, which the paper's claim says it does."
                        if signs.get(dlfd) else ""))
        if n_seeds < 2:
            lines.append("\nAll of this comes from one seed – a description, not a finding; the committed verdict's "
                         "paired collapse table, over its evaluation seeds, is where a claim can be checked.")
    return Prose("\n".join(lines))


def separation_report(values: Mapping[str, float], what: str = "class silhouette", dlfd: str = "dlfd",
                      error_maximising: Sequence[str] = ERROR_MAXIMISING, n_seeds: int = 1) -> Prose:
    """One measure of class separation per model (``values``: model -> e.g. silhouette; higher =
    classes further apart) in words: each model against the reference models, with the reading
    rule of :func:`collapse_report` (a collapse sign = below *both* the original's and the retrained
    model's value; below the original alone when there is no retrained row), and the paper's claim
    that DLFD keeps the classes apart better than error maximisation, checked method by method."""
    v = {m: float(x) for m, x in values.items()}
    if "original" not in v:
        return Prose(f"No original model among {sorted(v)}: nothing to compare the {what} with.")
    refs = [m for m in ("original", "retrained") if m in v]
    floor = min(v[m] for m in refs)
    others = [m for m in v if m not in refs]
    below = [m for m in others if v[m] < floor]
    ref_words = " and ".join(f"the {m} model's {num(v[m])}" for m in refs)
    both = "both reference models'" if len(refs) == 2 else "the original's"
    lines = [f"**This run** ({seeds_phrase(n_seeds)}): the {what} is {ref_words}. "
             + (f"Below {both} (a collapse sign, the reading rule of notebook 02): "
                f"{', '.join(f'{name(m)} {num(v[m])}' for m in below)}" if below else f"No method is below {both}")
             + (f"; not below: {', '.join(f'{name(m)} {num(v[m])}' for m in others if m not in below)}."
                if len(below) < len(others) else ".")]
    if dlfd in v:
        rivals = [m for m in error_maximising if m in v]
        if rivals:
            parts = [f"{name(m)} {num(v[m])}: {'agrees' if v[dlfd] >= v[m] else 'does not agree'}" for m in rivals]
            lines.append(f"**The paper's claim**, that DLFD keeps the classes apart where error maximisation smears "
                         f"them: DLFD {num(v[dlfd])} against " + "; ".join(parts) + "."
                         + (f" These are comparisons between methods; DLFD itself is below {both}, so on its own it "
                            f"does not keep the classes as far apart as the reference models here."
                            if dlfd in below else ""))
    return Prose("\n\n".join(lines))


# --------------------------------------------------------------------------------------------
# the paper's table beside this run
# --------------------------------------------------------------------------------------------
def paper_rank_report(summary: pd.DataFrame, metric: str = "nomus", model: str = "dlfd") -> Prose:
    """The paper's claim on ``metric`` (from :data:`PAPER_MUFAC`: where ``model`` ranks among the
    paper's unlearning methods and against its retrained model) beside this run's ranking, and
    whether they agree; with the spread when ``summary`` has several seeds."""
    paper = {m: v[metric] for m, v in PAPER_MUFAC.items() if m not in ("original", "retrained")}
    order = sorted(paper, key=paper.get, reverse=True)
    p_rank = order.index(model) + 1
    p_next = order[1] if p_rank == 1 else order[0]
    paper_line = (f"**The paper** – {PAPER_SOURCE}: {name(model)} ranks {p_rank} of {len(order)} methods on "
                  f"{METRIC_NAMES.get(metric, metric)} ({paper[model]:.4f}; {'next' if p_rank == 1 else 'first'}: {name(p_next)} "
                  f"{paper[p_next]:.4f}; the retrained model {PAPER_MUFAC['retrained'][metric]:.4f}).")
    if model not in summary.index:
        return Prose(paper_line + f" This run has no {name(model)} row.")
    n = int(summary["n_seeds"].max()) if "n_seeds" in summary else 1
    rank, total, text = rank_words(summary, model, metric)
    sd = summary.get(f"{metric}_sd")
    spread = f", sd {num(sd[model])} over {n} seeds" if sd is not None and n > 1 else ""
    agree = "agrees" if (rank == 1) == (p_rank == 1) else "does not agree"
    retr = summary.loc["retrained", metric] if "retrained" in summary.index else float("nan")
    run_line = (f"**This run** ({seeds_phrase(n)}): {text}{spread}; its retrained model {num(retr)}. "
                f"On whether {name(model)} leads, this run {agree} with the paper"
                + ("." if n < 2 else " (a ranking of means; the paired table says what the spread allows)."))
    return Prose(paper_line + "\n\n" + run_line)


# --------------------------------------------------------------------------------------------
# fronts: the configured point beside the sweep's best
# --------------------------------------------------------------------------------------------
def fronts_report(points: pd.DataFrame, tuned: Iterable[str] = (), x: str = "abs_mia_gap", y: str = "test_acc") -> Prose:
    """One line per method of the front points (:mod:`dlfd_lib.fronts`): its configured point –
    called *tuned* only for the methods in ``tuned``, *declared defaults* otherwise – beside the
    sweep's point with the best test accuracy, whether the configured point is on the method's
    front, and over how many seeds the points are means."""
    from .fronts import mark_fronts
    pts = points if "on_front" in points else mark_fronts(points, x=x, y=y)
    tuned = set(tuned)
    counts = sorted({int(v) for v in pts["n_seeds"]}) if "n_seeds" in pts and len(pts) else [1]
    if len(counts) == 1:
        per_point = f"each point the mean over {counts[0]} seeds" if counts[0] > 1 else ONE_SEED
    elif "setting" in pts:
        conf_n = sorted({int(v) for v in pts.loc[pts["setting"] == "tuned", "n_seeds"]})
        sweep_n = sorted({int(v) for v in pts.loc[pts["setting"] != "tuned", "n_seeds"]})
        per_point = (f"configured points: means over {'/'.join(map(str, conf_n))} seeds; swept strengths: "
                     f"over {'/'.join(map(str, sweep_n))}")
    else:
        per_point = f"means over {counts[0]} to {counts[-1]} seeds"
    lines = [f"Each method's configured point beside the best point of its strength sweep ({per_point}):", ""]
    for m, part in pts.groupby("model", sort=False):
        conf = part[part["setting"] == "tuned"] if "setting" in part else part.iloc[:0]
        best = part.loc[part[y].idxmax()]
        what = "tuned" if m in tuned else "declared defaults"
        if len(conf):
            c = conf.iloc[0]
            head = (f"- **{name(m)}** – configured point ({what}): test accuracy {num(c[y])} at |MIA gap| "
                    f"{num(c[x])}, {'on' if bool(c['on_front']) else 'not on'} its front")
        else:
            head = f"- **{name(m)}** – no configured point"
        if len(conf) and best.name == conf.index[0]:
            tail = "; it is also the sweep's best test accuracy."
        else:
            strength = best.get("strength")
            s = "" if strength is None or (isinstance(strength, float) and math.isnan(strength)) else \
                f" ({best.get('knob') or 'strength'} = {strength:.3g})" if isinstance(strength, float) else f" ({strength})"
            tail = f"; the sweep's best test accuracy: {num(best[y])} at |MIA gap| {num(best[x])}{s}."
        lines.append(head + tail)
    return Prose("\n".join(lines))


# --------------------------------------------------------------------------------------------
# the committed verdict, labelled
# --------------------------------------------------------------------------------------------
def committed_source(run: Mapping, folder: str = "") -> str:
    """"the committed verdict (<folder>, commit <sha>, evaluation seeds [...])" – the label every
    number taken from a protocol run carries."""
    git = (run.get("provenance") or {}).get("git") or {}
    commit = str(git.get("commit") or "unknown")[:10]
    seeds = (run.get("config") or {}).get("eval_seeds")
    where = f"{folder}, " if folder else ""
    return f"the committed verdict ({where}commit {commit}, evaluation seeds {seeds})"


def committed_paired_words(run: Mapping | None, key: str, model: str, metric: str, better: str, worse: str,
                           folder: str = "", match: Mapping[str, str] | None = None) -> str:
    """One paired comparison of the committed verdict (``run[key]``: e.g. ``"ablations_paired"``,
    ``"collapse_paired"``, ``"paired"``) in words, labelled with its source; says so when the
    verdict or the row is missing, or when the verdict is about other data than ``match``
    (e.g. ``{"dataset": "synthetic", "task": "age"}``, this run's)."""
    if not run:
        return "the committed verdict has not been written yet (no protocol.json): nothing to compare with"
    other = {k: run.get(k) for k, v in (match or {}).items() if run.get(k) != v}
    if other:
        return (f"{committed_source(run, folder)} is about {', '.join(f'{k} {v!r}' for k, v in other.items())}, "
                f"not this run's {', '.join(f'{match[k]!r}' for k in other)}: not comparable")
    table = pd.DataFrame(run.get(key) or [])
    if table.empty:
        return f"{committed_source(run, folder)} has no {key}"
    hit = table[(table["model"] == model) & (table["metric"] == metric)]
    if hit.empty:
        return f"{committed_source(run, folder)} has no {metric} row for {model}"
    return f"{committed_source(run, folder)}: {paired_words(hit.iloc[0], better, worse)}"


# --------------------------------------------------------------------------------------------
# notebook 03, Part I: one perturbation's course
# --------------------------------------------------------------------------------------------
def zigzag_words(distance: Sequence[float], ce: Sequence[float], acc: Sequence[float], label: str = "") -> str:
    """The course of one traced perturbation in words: distance and CE from step 0 to K, the peak
    distance, how often the distance changed direction (the zigzag), and the batch accuracy."""
    d = [float(v) for v in distance]
    turns = sum(1 for a, b, c in zip(d, d[1:], d[2:]) if (b - a) * (c - b) < 0)
    peak = max(range(len(d)), key=d.__getitem__)
    head = f"{label}: " if label else ""
    return (f"{head}distance to the forget batch {d[0]:.3f} → {d[-1]:.3f} (peak {d[peak]:.3f} at step {peak}; "
            f"the distance changed direction {turns} time(s) in {len(d) - 1} steps), cross-entropy "
            f"{float(ce[0]):.3f} → {float(ce[-1]):.3f}, batch accuracy {float(acc[0]):.2f} → {float(acc[-1]):.2f}")
