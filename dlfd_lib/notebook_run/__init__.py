"""Running the notebooks headlessly, one concept per file:

* :mod:`.discovery` – which notebooks exist and how a selection such as ``["01", "03"]`` resolves;
* :mod:`.kernel` – a Jupyter kernel that runs this interpreter;
* :mod:`.parameters` – the notebook parameters, checked against the ``parameters`` cells first;
* :mod:`.lock` – one run per runs folder;
* :mod:`.provenance` – what ran, where and with what, and a killed run told from a running one;
* :mod:`.failures` – the errors that name the notebook, the cell and the command to rerun it;
* :mod:`.papermill_run` – :func:`run_notebooks`, which puts them together.

:mod:`dlfd_lib.pipeline` re-exports the public names (``from dlfd_lib.pipeline import
run_notebooks`` keeps working).
"""
