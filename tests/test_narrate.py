"""Issue 27: the notebooks' computed prose (dlfd_lib/narrate.py) – sentences from tables, guards
that fire exactly when the run contradicts its description, and the paper's claims checked."""
import math

import pandas as pd
import pytest

from dlfd_lib import narrate
from dlfd_lib.narrate import (ONE_SEED, PAPER_MUFAC, Prose, collapse_report, committed_paired_words, fronts_report,
                              kept_state_guard, paired_words, paper_rank_report, replay_guard, say,
                              separation_report, threshold_guard, utility_guard, warn_box, zigzag_words)


def test_say_renders_values_and_names_a_missing_one():
    p = say("accuracy {acc:.3f} after {n} epochs", acc=0.61234, n=3)
    assert isinstance(p, Prose) and p._repr_markdown_() == "accuracy 0.612 after 3 epochs" == str(p)
    with pytest.raises(KeyError, match="acc"):
        say("accuracy {acc:.3f}", n=3)


def test_warn_box_is_a_styled_markdown_block_with_a_plain_reading():
    box = warn_box("Title", "body text")
    md = box._repr_markdown_()
    assert md.startswith('<div class="alert alert-block alert-warning"') and "**⚠ Title**" in md and "body text" in md
    assert md.rstrip().endswith("</div>")
    assert str(box).startswith("WARNING: Title")


def _history(val_acc, fs, batches=None):
    n = len(val_acc)
    return pd.DataFrame({"batch": batches or [4 * i + 3 for i in range(n)], "val_acc": val_acc, "fs": fs})


def test_kept_state_guard_fires_only_for_the_worst_state():
    h = _history([0.61, 0.50, 0.23, 0.40], [0.10, 0.08, 0.05, 0.07])
    info = {"selected_batch": 11, "selection_rule": "lowest_fs", "max_fs_used": 0.03}
    box = kept_state_guard(h, info)
    assert box is not None and "worst monitored state" in str(box) and "0.230" in str(box) and "0.610" in str(box)
    assert kept_state_guard(h, {**info, "selected_batch": 3}) is None  # the best state
    assert kept_state_guard(_history([0.5], [0.1]), {**info, "selected_batch": 3}) is None  # one state only


def test_replay_guard_names_each_disagreement():
    info = {"switched_at_batch": 8, "selected_batch": 11, "selection_rule": "lowest_fs"}
    assert replay_guard(dict(info), info) is None
    box = replay_guard({**info, "selected_batch": 3}, info)
    assert "recomputed 3" in str(box) and "the run says 11" in str(box) and "switched_at_batch" not in str(box)


def test_threshold_guard_relative_mode():
    info = {"threshold_mode": "relative", "fs_original": 0.12, "forget_threshold_used": 0.06, "max_fs_used": 0.048}
    # the hyperparameter fractions drawn on the absolute axis: a warning
    bad = threshold_guard(info, {"forget_threshold": 0.5, "max_fs": 0.4})
    assert "WARNING" in str(bad) and "fraction × that FS" in str(bad)
    # the used (absolute) values drawn: a note saying how they were converted
    ok = threshold_guard(info, {"forget_threshold": 0.06, "max_fs": 0.048})
    assert str(ok).startswith("NOTE") and "0.50 × it = 0.060" in str(ok)
    assert threshold_guard({**info, "threshold_mode": "absolute", "fs_original": None},
                           {"forget_threshold": 0.06, "max_fs": 0.048}) is None


def test_utility_guard_compares_the_drop_with_the_attacks_sampling_sd():
    summary = pd.DataFrame({"test_acc": [0.64, 0.61, 0.245, 0.63, 0.50]},
                           index=["original", "retrained", "dlfd", "finetune", "neggrad"])
    noise = {"dlfd": 0.03, "finetune": 0.03, "neggrad": 0.2}
    box = str(utility_guard(summary, noise))
    assert "DLFD 0.245" in box and "Fine-tune" not in box and "NegGrad" not in box  # NegGrad's drop 0.14 < its sd
    assert utility_guard(summary.loc[["original", "finetune"]], noise) is None


def test_paired_words_one_seed_cannot_tell_and_verdicts():
    row = {"diff": 0.02, "lo": float("nan"), "hi": float("nan"), "n_seeds": 1, "verdict": "cannot tell"}
    assert ONE_SEED in paired_words(row, "A", "B")
    row = {"diff": 0.02, "lo": -0.01, "hi": 0.05, "n_seeds": 5, "verdict": "cannot tell"}
    assert paired_words(row, "A", "B").startswith("cannot tell")
    row = {"diff": 0.02, "lo": 0.01, "hi": 0.03, "n_seeds": 5, "verdict": "better"}
    assert paired_words(row, "A wins", "B wins").startswith("A wins")
    assert "Holm" not in paired_words({**row, "p_holm": 0.01}, "A wins", "B wins")
    text = paired_words({**row, "p_holm": 0.2}, "A wins", "B wins")
    assert text.startswith("A wins") and "p_Holm 0.200: the call does not survive Holm's correction" in text


def _collapse_table():
    return pd.DataFrame({
        "test_acc": [0.64, 0.61, 0.57, 0.60, 0.55, 0.245],
        "probe_acc": [0.582, 0.60, 0.571, 0.626, 0.560, 0.40],
        "probe_chance": [0.093] * 6,
        "silhouette": [0.080, 0.07, -0.01, 0.02, -0.043, -0.076],
        "identity_knn_acc": [0.9, 0.5, 0.6, 0.7, 0.55, 0.4],
        "cka_to_original_test": [1.0, 0.70, 0.80, 0.75, 0.709, 0.592]},
        index=["original", "retrained", "neggrad", "unsir", "bad_teacher", "dlfd"])


def test_collapse_report_says_what_the_run_shows_and_checks_the_papers_claim():
    text = str(collapse_report(_collapse_table(), ["neggrad", "unsir", "bad_teacher", "dlfd"]))
    for who in ("NegGrad", "UNSIR", "Bad Teacher", "DLFD"):
        assert f"**{who}**" in text
    assert "The paper's claim" in text and "one seed" in text
    # DLFD has a lower probe accuracy and silhouette than every error-maximising method here
    assert text.count("this run disagrees") == 3
    # identity 1-NN: the words follow the side of the retrained model's value (0.5 here)
    # original 0.9, retrained 0.5: 0.6 lies between them, 0.4 below both
    assert "**NegGrad**" in text and "1-NN 0.600, between the reference models' (retrained 0.500" in text
    assert "1-NN 0.400, below both reference models' (recognised worse than by either" in text
    assert "DLFD does not keep the class separation of the reference models here" in text
    t = _collapse_table()
    t.loc["original", "identity_knn_acc"] = 0.3  # an original below the retrained model: 0.4 is between them
    assert "1-NN 0.400, between the reference models'" in str(collapse_report(t, ["dlfd"]))
    # a table in which DLFD keeps more than everyone flips the answer
    t = _collapse_table()
    t.loc["dlfd", ["probe_acc", "silhouette"]] = [0.65, 0.09]
    assert "disagrees" not in str(collapse_report(t, ["neggrad", "unsir", "bad_teacher", "dlfd"]))


def test_separation_report_checks_dlfd_against_each_error_maximiser():
    text = str(separation_report({"original": 0.08, "dlfd": -0.076, "bad_teacher": -0.043, "neggrad": -0.1}))
    assert "Bad Teacher -0.043: does not agree" in text and "NegGrad -0.100: agrees" in text
    # the collapse sign needs a value below both reference models' (02's rule): 0.05 is below the
    # original's 0.08 but above the retrained model's 0.03
    text = str(separation_report({"original": 0.08, "retrained": 0.03, "dlfd": 0.05, "neggrad": 0.01}))
    assert "Below both reference models' (a collapse sign, the reading rule of notebook 02): NegGrad 0.010" in text
    assert "not below: DLFD 0.050" in text


def test_paper_rank_report_reads_the_papers_table_and_this_runs():
    summary = pd.DataFrame({"nomus": [0.639, 0.70, 0.608, 0.65], "n_seeds": [1] * 4},
                           index=["original", "retrained", "dlfd", "neggrad"])
    text = str(paper_rank_report(summary))
    assert f"{PAPER_MUFAC['dlfd']['nomus']:.4f}" in text and "ranks 1 of" in text  # the paper's DLFD leads
    assert "ranks 2 of 2" in text and "does not agree" in text and ONE_SEED in text


def test_fronts_report_puts_the_configured_point_beside_the_sweeps_best():
    pts = pd.DataFrame([
        {"model": "dlfd", "setting": "tuned", "strength": 0.5, "abs_mia_gap": 0.0022831, "test_acc": 0.245, "n_seeds": 1},
        {"model": "dlfd", "setting": "sweep", "strength": 0.9, "abs_mia_gap": 0.04, "test_acc": 0.607, "n_seeds": 1},
        {"model": "neggrad", "setting": "tuned", "strength": 1e-3, "abs_mia_gap": 0.01, "test_acc": 0.5, "n_seeds": 1}])
    text = str(fronts_report(pts, tuned=["neggrad"]))
    assert "DLFD** – configured point (declared defaults): test accuracy 0.245" in text
    assert "the sweep's best test accuracy: 0.607" in text
    assert "NegGrad** – configured point (tuned)" in text and "also the sweep's best" in text
    assert ONE_SEED in text and "mean over" not in text
    assert "mean over 5 seeds" in str(fronts_report(pts.assign(n_seeds=5)))
    mixed = pts.assign(n_seeds=[5, 3, 5])  # the protocol sweeps on fewer seeds than it evaluates the configured setting
    assert "configured points: means over 5 seeds; swept strengths: over 3" in str(fronts_report(mixed))


def test_committed_numbers_carry_their_source():
    assert "not been written yet" in committed_paired_words(None, "ablations_paired", "no OT term", "nomus", "a", "b")
    run = {"provenance": {"git": {"commit": "0123456789abcdef"}}, "config": {"eval_seeds": [0, 1, 2, 3, 4]},
           "ablations_paired": [{"model": "no OT term", "metric": "nomus", "diff": -0.008, "lo": -0.05, "hi": 0.03,
                                 "n_seeds": 5, "verdict": "cannot tell"}]}
    text = committed_paired_words(run, "ablations_paired", "no OT term", "nomus", "a", "b", folder="results/quick")
    assert "commit 0123456789" in text and "[0, 1, 2, 3, 4]" in text and "cannot tell" in text
    run["dataset"] = "synthetic"
    assert "not comparable" in committed_paired_words(run, "ablations_paired", "no OT term", "nomus", "a", "b",
                                                      match={"dataset": "mufac"})


def test_zigzag_words_counts_turns():
    text = zigzag_words([0.1, 0.3, 0.2, 0.4], [0.5, 0.6, 0.4, 0.3], [1.0, 0.9, 1.0, 0.875])
    assert "changed direction 2 time(s) in 3 steps" in text and "0.100 → 0.400" in text and "1.00 → 0.88" in text


def test_num_handles_missing_values():
    assert narrate.num(float("nan")) == "–" and narrate.num(None) == "–" and narrate.num(3) == "3"
    assert narrate.num(0.1234, signed=True) == "+0.123" and not math.isnan(0.0)


def test_numbers_keep_the_side_of_zero_that_three_decimals_would_hide():
    from dlfd_lib.narrate import num, paired_words
    from dlfd_lib.report import paired_markdown
    from dlfd_lib.stats import fmt_num
    assert fmt_num(0.00041, sign=True) == "+0.00041" and fmt_num(-0.00041) == "-0.00041"
    assert fmt_num(0.1234) == "0.123" and fmt_num(0.0, sign=True) == "+0.000" and num(0.00038) == "0.00038"
    assert fmt_num(0.00041, 4) == "0.0004" and fmt_num(float("nan")) == "nan"
    row = {"diff": -0.049, "lo": -0.099, "hi": 0.00038, "n_seeds": 5, "verdict": "cannot tell", "p_holm": 0.2}
    assert "[-0.099, +0.00038]" in paired_words(row, "b", "w")
    same = {"diff": 0.0, "lo": 0.0, "hi": 0.0, "n_seeds": 5, "verdict": "cannot tell", "p_holm": 1.0}
    assert paired_words(same, "b", "w").startswith("identical on every one of 5 seeds")
    table = paired_markdown(pd.DataFrame([{**row, "model": "x", "metric": "test_acc"},
                                          {**same, "model": "y", "metric": "test_acc"}]))
    assert "-0.049 [-0.099, +0.00038] cannot tell" in table and "identical on every seed" in table
