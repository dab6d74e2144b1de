"""ipywidgets explorers for JupyterLab.

Each explorer takes tables the notebook has already computed (no model runs inside a widget
callback, so moving a control redraws in well under a second) and returns a widget to display.
In a headless papermill run the widget is created but nothing interacts with it; the notebooks
save static figures for that case.

The explorer sets its ``Output`` widget's ``outputs`` state directly (a PNG of the figure)
instead of drawing inside ``with output:``. Drawing inside the context manager makes nbclient,
which plays the front end of an Output widget during papermill runs, send a ``comm_msg`` back on
the kernel's shell socket for every output, while another of its tasks is waiting on that same
socket for the cell's ``execute_reply``; when the reply lands during such a send, the wait can
miss it and the run hangs with both processes idle (the intermittent hang of notebook 04,
nbclient issue #312). Setting the state sends nothing back, and JupyterLab draws it the same.

* :func:`feature_explorer` – notebook 04's UMAP map: pick a model (or compare it with a second
  one side by side), colour by class / split / identity, and filter the splits shown.
"""
from __future__ import annotations

import base64
import io
from typing import Sequence

import matplotlib.pyplot as plt
import pandas as pd

__all__ = ["feature_explorer", "figure_output"]


def figure_output(fig) -> dict:
    """A matplotlib figure as one Jupyter ``display_data`` output (a PNG, cropped like the
    inline backend's), for an Output widget's ``outputs`` state."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return {"output_type": "display_data", "metadata": {},
            "data": {"image/png": base64.b64encode(buf.getvalue()).decode("ascii"),
                     "text/plain": repr(fig)}}


def feature_explorer(emb: pd.DataFrame, models: Sequence[str] | None = None, compare_with: str | None = "original",
                     color_by: str = "class", splits: Sequence[str] = ("retain", "test", "forget")):
    """An explorer over the common UMAP table of :func:`dlfd_lib.embedding.fit_umap`.

    Controls: **model** (dropdown), **beside** (a second model drawn next to it, or none),
    **colour by** (class / split / identity) and **splits** (which of retain / test / forget to
    draw). Returns an ``ipywidgets.VBox``; its ``.controls`` dict holds the controls and
    ``.redraw()`` redraws (both used by the tests).
    """
    import ipywidgets as W

    from .plots import plot_embeddings

    models = list(dict.fromkeys(emb["model"])) if models is None else list(models)
    if not models:
        raise ValueError("feature_explorer needs at least one model in the table")
    present = [s for s in ("retain", "test", "forget", "val") if s in set(emb["split"])]
    start = next((m for m in models if m != compare_with), models[0])
    model = W.Dropdown(options=models, value=start, description="model")
    beside = W.Dropdown(options=["(none)"] + models,
                        value=compare_with if compare_with in models else "(none)", description="beside")
    colour = W.ToggleButtons(options=["class", "split", "identity"], value=color_by, description="colour by")
    shown = W.SelectMultiple(options=present, value=tuple(s for s in splits if s in present) or tuple(present),
                             description="splits", rows=len(present))
    out = W.Output(layout=W.Layout(min_height="360px", margin="10px 0 0 0"))

    def redraw(*_):
        chosen = [model.value] + ([beside.value] if beside.value not in ("(none)", model.value) else [])
        if not shown.value:
            out.outputs = ({"output_type": "stream", "name": "stdout",
                            "text": "pick at least one split\n"},)
            return
        fig = plot_embeddings(emb, color_by=colour.value, models=chosen, splits=list(shown.value),
                              ncols=2, title=f"{' vs '.join(chosen)} · coloured by {colour.value}")
        out.outputs = (figure_output(fig),)
        plt.close(fig)

    for w in (model, beside, colour, shown):
        w.observe(redraw, names="value")
    box = W.VBox([W.HBox([model, beside]), colour, shown, out])
    box.controls = {"model": model, "beside": beside, "colour": colour, "splits": shown}
    box.redraw = redraw
    box.output = out
    redraw()
    return box
