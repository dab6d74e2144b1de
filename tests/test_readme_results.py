"""The README's results come from the committed verdict store, never typed: its results block is
exactly what `benchmarks/protocol_report.py --readme` writes from `results/quick/` (or, while the
run has not finished, the fixed sentence that says so), so is the whole verdict's page
(docs/verdict.md), and the figure they show is committed."""
from __future__ import annotations

from pathlib import Path

from dlfd_lib.report import (BEGIN, END, VERDICT_DIR, VERDICT_FIGURE, VERDICT_PAGE, load_run, pending_block, pending_page,
                             readme_block, verdict_page)

ROOT = Path(__file__).resolve().parents[1]


def test_the_readmes_results_block_is_what_the_report_writes_from_the_committed_store():
    text = (ROOT / "README.md").read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    block = text[text.index(BEGIN): text.index(END) + len(END)]
    run = load_run(ROOT / VERDICT_DIR)
    page = (ROOT / VERDICT_PAGE).read_text()
    if run is None:
        assert block == pending_block() and page == pending_page()
    else:
        assert (ROOT / VERDICT_FIGURE).is_file()
        assert block == readme_block(run, VERDICT_FIGURE), \
            "the README's results differ from the store: run `python benchmarks/protocol_report.py " \
            f"--out-dir {VERDICT_DIR} --figure {VERDICT_FIGURE} --readme README.md`"
        assert page == verdict_page(run, "img/" + Path(VERDICT_FIGURE).name), "docs/verdict.md differs from the store"


def test_the_committed_store_holds_results_and_no_checkpoints():
    folder = ROOT / VERDICT_DIR
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in (".pt", ".pth", ".ckpt", ".npz")]
    assert sum(p.stat().st_size for p in files) < 5 * 2**20  # a few MB at most


def test_the_verdicts_lead_counts_each_side_of_every_question():
    """The lead of the verdict counts, per question, the methods DLFD beats, loses to and cannot be
    told from – a method's 'worse' is DLFD's win, whatever the metric's direction."""
    from dlfd_lib.report import verdict_markdown

    def row(model, metric, verdict, p_holm=0.01):
        return {"model": model, "metric": metric, "verdict": verdict, "diff": 0.1, "lo": 0.05, "hi": 0.15,
                "p_holm": p_holm}

    rows = [{"model": m, "seed": s, "avg_gap": 0.1} for s in (0, 1) for m in ("original", "retrained", "dlfd", "a", "b", "c")]
    run = {"rows": rows,
           "paired": [row("a", "test_acc", "worse"), row("b", "test_acc", "worse"), row("c", "test_acc", "cannot tell"),
                      row("a", "abs_mia_gap", "better"), row("b", "abs_mia_gap", "better", 0.2), row("c", "abs_mia_gap", "better", 0.06)],
           "hypervolume_paired": [row("a", "hypervolume", "cannot tell"), row("b", "hypervolume", "better")],
           "collapse_paired": [row(m, k, "worse") for m in "abc" for k in ("probe_acc", "silhouette")]}
    text = verdict_markdown(run)
    assert "DLFD's front is larger than 0, smaller than 1, cannot tell for 2" in text  # c: not measured
    assert "DLFD keeps more than 2, less than 0, cannot tell for 1" in text
    assert "DLFD is closer than 0, further than 3, cannot tell for 0" in text
    assert "DLFD collapses less than 3, more than 0, cannot tell for 0" in text
    assert "DLFD scores higher than 0, lower than 0, cannot tell for 3" in text  # no NoMUS rows: nothing called
    # calls: 2 + 3 (paired) + 1 (fronts) + 6 (collapse) = 12, of which 10 keep p_Holm <= 0.05
    assert "10 of these 12 calls keep p ≤ 0.05" in text
    assert text.count("- **") == 5 + 3 and "paired over 2 evaluation seeds" in text


def test_the_committed_store_gives_the_committed_tables_again_without_training_or_unlearning(tmp_path, monkeypatch):
    """The protocol run again on a copy of the committed store (no checkpoints on this machine)
    finds every job of its plan finished and writes the committed tables byte for byte: the plan
    computes the same keys the verdict's run stored, and nothing is trained or unlearned."""
    import json
    import shutil

    import pytest

    import dlfd_lib.train as train_mod
    import dlfd_lib.unlearn as unlearn_mod
    from dlfd_lib.protocol import ProtocolConfig, run_protocol
    folder = ROOT / VERDICT_DIR
    run = json.loads((folder / "protocol.json").read_text())
    shutil.copytree(folder, tmp_path / "store-copy")
    monkeypatch.setenv("DLFD_CPU_BF16", "0")  # the verdict ran in float32; the precision names its checkpoints
    monkeypatch.setattr(train_mod, "train_or_load", lambda *a, **k: pytest.fail("trained a reference model"))
    monkeypatch.setattr(unlearn_mod, "unlearn", lambda *a, **k: pytest.fail("unlearned again"))
    messages = []
    run_protocol(run["profile"], tmp_path / "store-copy", ProtocolConfig(**run["config"]), dataset=run["dataset"],
                 task=run["task"], device="cpu", ckpt_dir=tmp_path / "no-checkpoints", progress=False,
                 log=messages.append)
    assert any(" 0 to run" in m for m in messages), messages[:3]
    for table in sorted(folder.glob("*.csv")):
        assert (tmp_path / "store-copy" / table.name).read_bytes() == table.read_bytes(), table.name
