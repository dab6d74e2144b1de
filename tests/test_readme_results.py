"""The README's results come from the committed verdict store, never typed: its results block is
exactly what `benchmarks/protocol_report.py --readme` writes from `results/quick/` (or, while the
run has not finished, the fixed sentence that says so), and the figure it shows is committed."""
from __future__ import annotations

from pathlib import Path

from dlfd_lib.report import BEGIN, END, VERDICT_DIR, VERDICT_FIGURE, load_run, pending_block, readme_block

ROOT = Path(__file__).resolve().parents[1]


def test_the_readmes_results_block_is_what_the_report_writes_from_the_committed_store():
    text = (ROOT / "README.md").read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    block = text[text.index(BEGIN): text.index(END) + len(END)]
    run = load_run(ROOT / VERDICT_DIR)
    if run is None:
        assert block == pending_block()
    else:
        assert (ROOT / VERDICT_FIGURE).is_file()
        assert block == readme_block(run, VERDICT_FIGURE), \
            "the README's results differ from the store: run `python benchmarks/protocol_report.py " \
            f"--out-dir {VERDICT_DIR} --figure {VERDICT_FIGURE} --readme README.md`"


def test_the_committed_store_holds_results_and_no_checkpoints():
    folder = ROOT / VERDICT_DIR
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in (".pt", ".pth", ".ckpt", ".npz")]
    assert sum(p.stat().st_size for p in files) < 5 * 2**20  # a few MB at most
