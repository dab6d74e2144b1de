"""Issue 27: no typed "this run" number in the notebooks' markdown.

Every decimal number and every percentage in a markdown cell of a notebook must be a sourced
constant listed in :data:`ALLOWED` for that notebook – the paper's table, a hyperparameter, a
chance level, a constant of the data pipeline or the arithmetic of a worked example – with its
source named. Anything about the run itself is rendered by a code cell from the run's tables
(``dlfd_lib.narrate``), so a number typed into the prose fails here. The checker is itself tested
on a planted cell.
"""
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

#: a decimal (0.5, .6330, 12.25) or a percentage (30 %, 95 %, 30\,\%, 1.5%), not part of a word,
#: a version string's tail or an identifier
NUMBER = re.compile(r"(?<![\w.])(?:\d+\.\d+|\.\d+)(?:\s*(?:\\,)?\s*\\?%)?(?![\w.]*\d)"
                    r"|(?<![\w.])\d+\s*(?:\\,)?\s*\\?%")

#: Per notebook (its two-digit prefix): each number the prose may contain, and where it comes from.
ALLOWED: dict[str, dict[str, str]] = {
    "01": {
        "0.5": "chance level: the MIA of an attack that cannot tell members from non-members (FS's target)",
        "0.75": "arithmetic: an always-'member' attack on 300 members and 100 non-members scores 300/400",
        "0.25": "arithmetic: |0.75 − 0.5|, the forgetting score of that always-'member' attack",
        "0.3": "hyperparameter: the attack's held-out share, StratifiedShuffleSplit(10, 0.3)",
        "30 %": "hyperparameter: the attack's held-out share; the paper: RAF-DB's forget share",
        "0.5196": "paper: the retrained RAF-DB model's MIA in the authors' released outputs",
        "0.5625": "arithmetic: NoMUS = ½·⅛ + ½ of a perfect forgetter that guesses among 8 classes",
        "0.5548": "paper: the retrained model's MIA in the paper's MUFAC table",
    },
    "02": {
        "0.036": "arithmetic: (C − 1)/(N − C) = 7/192, the scatter ratio of label-free features",
    },
    "03": {
        "0.5": "chance level: MIA / AUC of an attack that cannot tell members apart (FS's target)",
        "1 %": "hyperparameter: the false-positive rate of the attacks' TPR@1%FPR",
        "95 %": "hyperparameter: the confidence level of the paired intervals",
        "5 %": "hyperparameter: the significance level of the per-example test (p < 0.05)",
        "0.05": "hyperparameter: the significance level of the per-example test",
        "0.01": "hyperparameter: DLFD's Sinkhorn ε (the paper)",
        "0.4": "hyperparameter: the paper's α on MUFAC",
        "0.225": "constant: ImageNet's pixel std, the normalisation of the kit's inputs",
        "0.09": "arithmetic: α · std = 0.4 × 0.225, one step in [0, 1] pixel units",
        "1.35": "arithmetic: K · α · std = 15 × 0.4 × 0.225",
    },
    "04": {},
    "05": {
        "95 %": "hyperparameter: the confidence level of the paired intervals",
    },
}


def _normal(token: str) -> str:
    """'30\\,\\%' and '30%' -> '30 %'; decimals unchanged."""
    token = token.replace("\\,", " ").replace("\\%", "%")
    return re.sub(r"\s*%$", " %", token.strip())


def typed_numbers(source: str) -> list[str]:
    """The decimals and percentages of a markdown source, normalised."""
    return [_normal(m.group()) for m in NUMBER.finditer(source)]


def unsourced(prefix: str, cells) -> list[tuple[str, str]]:
    """``(cell id, number)`` for every number of a markdown cell that is not in ``ALLOWED[prefix]``."""
    allowed = ALLOWED.get(prefix, {})
    return [(c.get("id", "?"), n) for c in cells if c.cell_type == "markdown"
            for n in typed_numbers(c.source) if n not in allowed]


def test_the_pattern_finds_decimals_and_percentages_and_ignores_the_rest():
    text = ("MIA 0.5, NoMUS .7819, 30 % forget, $30\\,\\%$ held out, 1.5% and 95 %; not v2.14.1's tail, "
            "not 1,500 images, not K = 15, not x1.5y, not 1e-3")
    assert typed_numbers(text) == ["0.5", ".7819", "30 %", "30 %", "1.5 %", "95 %"]


def test_a_planted_typed_number_fails():
    planted = nbformat.v4.new_markdown_cell("On the quick profile DLFD reached 0.873 test accuracy, 12 % above "
                                            "NegGrad; chance is 0.5.")
    planted.id = "planted"
    assert unsourced("03", [planted]) == [("planted", "0.873"), ("planted", "12 %")]
    # the same numbers in a code cell are computed output, not prose
    assert unsourced("03", [nbformat.v4.new_code_cell("print(0.873, '12 %')")]) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_every_number_in_the_markdown_has_a_named_source(path):
    nb = nbformat.read(path, 4)
    bad = unsourced(path.name[:2], nb.cells)
    assert not bad, (f"{path.name}: numbers typed into markdown without a source {bad}. A number about this run "
                     f"belongs in a code cell that renders it from the run (dlfd_lib.narrate.say); a constant "
                     f"from elsewhere goes into ALLOWED with its source (paper, hyperparameter, chance, arithmetic)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_the_allow_list_holds_no_stale_entry(path):
    nb = nbformat.read(path, 4)
    used = {n for c in nb.cells if c.cell_type == "markdown" for n in typed_numbers(c.source)}
    stale = sorted(set(ALLOWED.get(path.name[:2], {})) - used)
    assert not stale, f"{path.name}: ALLOWED lists numbers the notebook no longer has: {stale}"
    assert all(re.match(r"(paper|hyperparameter|chance level|arithmetic|constant): ", s)
               for s in ALLOWED.get(path.name[:2], {}).values())
