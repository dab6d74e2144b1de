"""ipywidgets explorers for JupyterLab.

Each explorer returns a widget to display. In a headless papermill run the widget is created
but nothing interacts with it; the notebooks save static figures for that case.

The explorer sets its ``Output`` widget's ``outputs`` state directly (a PNG of the figure)
instead of drawing inside ``with output:``. Drawing inside the context manager makes nbclient,
which plays the front end of an Output widget during papermill runs, send a ``comm_msg`` back on
the kernel's shell socket for every output, while another of its tasks is waiting on that same
socket for the cell's ``execute_reply``; when the reply lands during such a send, the wait can
miss it and the run hangs with both processes idle (the intermittent hang of notebook 04,
nbclient issue #312). Setting the state sends nothing back, and JupyterLab draws it the same.

* :func:`feature_explorer` – notebook 04's UMAP map: pick a model (or compare it with a second
  one side by side), colour by class / split / identity, and filter the splits shown. It reads
  tables the notebook has already computed (no model runs inside its callback), so moving a
  control redraws in well under a second.
* :func:`dlfd_step_explorer` – notebook 03's single DLFD perturbation: sliders for α, K, w_f and
  w_t re-run the K δ-steps on one small batch (K forward/backward passes; the forget features
  are computed once) and redraw the images, the curves and the feature picture; a setting seen
  before is only redrawn.
"""
from __future__ import annotations

import base64
import io
from typing import Sequence

import matplotlib.pyplot as plt
import pandas as pd

__all__ = ["feature_explorer", "dlfd_step_explorer", "figure_output"]


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


#: the step explorer's sliders: their upper ends (``limits=`` replaces any of them)
STEP_LIMITS = {"K": 30, "alpha": 1.0, "w_f": 10.0, "w_t": 3.0}


def dlfd_step_explorer(model, x, y, x_f, mean, std, class_names=None, *, n_show: int = 6,
                       limits: dict | None = None, **start):
    """An explorer of one DLFD perturbation (:func:`dlfd_lib.teach.trace_perturbation`) of the
    retain batch ``(x, y)`` against the forget batch ``x_f``.

    Controls: **α** (step size, normalised pixel units), **K** (δ-steps), **w_f** (OT weight) and
    **w_t** (retain/classification weight); each change re-runs the K steps and redraws
    :func:`dlfd_lib.plots.plot_dlfd_step`. The forget features are computed once; traces are
    cached per setting, so going back to a setting is instant. Sliders update on release. Returns
    an ``ipywidgets.VBox``; ``.controls`` holds the sliders, ``.redraw()`` redraws, ``.trace`` is the
    last trace and ``.summary`` its one-line summary (used by the tests). ``start``: the sliders'
    first setting and the fixed ones (:class:`dlfd_lib.teach.StepSettings` fields by name: ``K``,
    ``alpha``, ``w_f``, ``w_t``, ``feature_layer``, ...; default K = 8, α = 0.1, w_f = 3, w_t = 0.5,
    logits); ``limits``: the sliders' upper ends (:data:`STEP_LIMITS`).
    """
    import dataclasses

    import ipywidgets as W
    import torch

    from . import plots
    from .teach import StepSettings, trace_perturbation
    from .inference import features_of

    st = StepSettings(K=8, alpha=0.1, w_f=3.0, w_t=0.5).updated(start, "dlfd_step_explorer")
    top = {**STEP_LIMITS, **(limits or {})}
    K, alpha, w_f, w_t, feature_layer = st.K, st.alpha, st.w_f, st.w_t, st.feature_layer
    max_K, max_alpha, max_w_f, max_w_t = top["K"], top["alpha"], top["w_f"], top["w_t"]

    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        forget_feats = features_of(model, x_f.to(device), feature_layer)[0].float()
    slider = dict(continuous_update=False, style={"description_width": "initial"},
                  layout=W.Layout(width="320px"))
    c_alpha = W.FloatSlider(value=alpha, min=0.0, max=max_alpha, step=0.01, description="α (step)", **slider)
    c_K = W.IntSlider(value=K, min=0, max=max_K, step=1, description="K (δ-steps)", **slider)
    c_wf = W.FloatSlider(value=w_f, min=0.0, max=max_w_f, step=0.25, description="w_f (OT)", **slider)
    c_wt = W.FloatSlider(value=w_t, min=0.0, max=max_w_t, step=0.05, description="w_t (CE)", **slider)
    status = W.HTML()
    out = W.Output(layout=W.Layout(min_height="420px", margin="10px 0 0 0"))
    cache: dict[tuple, object] = {}
    box = W.VBox([W.HBox([c_alpha, c_K]), W.HBox([c_wf, c_wt]), status, out])

    def redraw(*_):
        key = (round(c_alpha.value, 6), int(c_K.value), round(c_wf.value, 6), round(c_wt.value, 6))
        if key not in cache:
            chosen = dataclasses.replace(st, K=key[1], alpha=key[0], w_f=key[2], w_t=key[3])
            cache[key] = trace_perturbation(model, x, y, settings=chosen, mean=mean, std=std,
                                            forget_feats=forget_feats)
        t = cache[key]
        box.trace = t
        box.summary = (f"distance {t.distance[0]:.4f} → {t.distance[-1]:.4f} · CE {t.ce[0]:.3f} → "
                       f"{t.ce[-1]:.3f} · accuracy {t.acc[0]:.2f} → {t.acc[-1]:.2f}")
        status.value = f"<b>after {key[1]} steps:</b> {box.summary}"
        # the figure goes into the Output widget's state, never drawn inside ``with out:`` (that
        # hangs headless runs now and then: see the module docstring)
        fig = plots.plot_dlfd_step(t, mean, std, class_names, n_show=n_show)
        out.outputs = (figure_output(fig),)
        plt.close(fig)

    for w in (c_alpha, c_K, c_wf, c_wt):
        w.observe(redraw, names="value")
    box.controls = {"alpha": c_alpha, "K": c_K, "w_f": c_wf, "w_t": c_wt}
    box.redraw = redraw
    box.output = out
    box.cache = cache
    redraw()
    return box
