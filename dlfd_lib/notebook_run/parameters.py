"""Notebook parameters: parsed from ``-p key=value``, and checked against the notebooks'
``parameters`` cells before anything runs (:class:`ParameterError` lists every problem)."""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any, Sequence

#: the parameters every notebook gets from run_notebooks' own arguments
_RESERVED = ("profile", "seed", "device")


class ParameterError(ValueError):
    """Notebook parameters that do not fit the notebooks; the message lists every bad value
    and the forms it accepts."""


def notebook_parameters(notebook: str | Path) -> dict[str, Any]:
    """``{name: default}`` of the cell tagged ``parameters`` in ``notebook`` (a default that is
    not a Python literal is given as the :data:`ANY` marker)."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    cell = next((c for c in nb.cells
                 if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])), None)
    if cell is None:
        return {}
    out: dict[str, Any] = {}
    for node in ast.parse(cell.source).body:
        targets = (node.targets if isinstance(node, ast.Assign) else
                   [node.target] if isinstance(node, ast.AnnAssign) and node.value else [])
        for target in targets:
            if isinstance(target, ast.Name):
                try:
                    out[target.id] = ast.literal_eval(node.value)
                except (ValueError, SyntaxError, TypeError):
                    out[target.id] = ANY
    return out


class _Any:
    def __repr__(self) -> str:
        return "ANY"


#: a parameter whose default says nothing about its type (accepts any value)
ANY = _Any()


def _example(name: str, text: str) -> str:
    """How to pass ``name=text`` on the command line (quoted when the shell would change it)."""
    return f"-p '{name}={text}'" if re.search(r"[\s\"'{}\[\]*?$]", text) else f"-p {name}={text}"


def _form_problem(name: str, value: Any, default: Any) -> str | None:
    """Why ``value`` does not fit a parameter whose default is ``default`` (None if it fits)."""
    if default is ANY or default is None:
        return None
    if isinstance(default, bool):
        if isinstance(value, bool):
            return None
        return f"must be True or False ({_example(name, 'True')} or {_example(name, 'false')})"
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return None
        return f"must be a whole number ({_example(name, str(default))})"
    if isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return None
        return f"must be a number ({_example(name, repr(default))})"
    if isinstance(default, str):
        return None if isinstance(value, str) else f"must be a string ({_example(name, default)})"
    if isinstance(default, (list, tuple)):
        if isinstance(value, (list, tuple)):
            return None
        return f"must be a list, written as JSON ({_example(name, json.dumps(list(default)) or '[]')})"
    if isinstance(default, dict):
        if isinstance(value, dict):
            return None
        return f"must be a JSON object ({_example(name, json.dumps(default) if default else '{}')})"
    return None


def _json_hint(value: Any) -> str:
    """For text passed to a list/dict parameter: why it is not JSON."""
    if not isinstance(value, str):
        return ""
    try:
        json.loads(value)
    except ValueError as err:
        return f"; the text {value!r} is not valid JSON ({err}): quote keys and strings with \"\""
    return ""


def _hparam_problems(where: str, values: Any, defaults: dict[str, Any]) -> list[str]:
    """Problems of a dict of keyword arguments against ``defaults`` (name -> default)."""
    if not isinstance(values, dict):
        return []
    problems = []
    for key, v in values.items():
        if key not in defaults:
            problems.append(f"{where}: unknown key {key!r}; accepted keys: "
                            f"{', '.join(sorted(defaults))}")
            continue
        why = _form_problem(f"{key}", v, defaults[key])
        if why:
            problems.append(f"{where}[{key!r}]={v!r} {why.split(' (')[0]}")
    return problems


def _data_option_defaults(dataset: Any) -> dict[str, Any] | None:
    """Keyword arguments ``load_splits`` accepts for ``dataset`` (name -> default)."""
    import inspect

    if dataset == "synthetic":
        from ..data.synthetic import DEFAULT_KNOBS, make_synthetic_splits as fn
        skip = {"task", "seed", "cache_dir", "knobs"}
        out = {k: p.default for k, p in inspect.signature(fn).parameters.items() if k not in skip}
        return {**out, **DEFAULT_KNOBS, "drop_leaks": False, "hygiene_threshold": 6}
    if dataset == "mufac":
        from ..data.mufac import load_mufac as fn
    elif dataset == "rafdb":
        from ..data.rafdb import load_rafdb as fn
    elif dataset == "folder":
        from ..data.folder import load_folder as fn
    else:
        return None
    from ..data.load import loader_option_defaults
    return {**loader_option_defaults(fn), "split_seed": 42, "drop_leaks": False, "hygiene_threshold": 6}


def _choice(name: str, value: Any, choices: Sequence[str]) -> str | None:
    if value in choices:
        return None
    return f"must be one of {', '.join(map(repr, choices))}"


def validate_parameters(notebooks: Sequence[Path], parameters: dict[str, Any],
                        profile: str) -> None:
    """Check ``parameters`` against the ``parameters`` cells of ``notebooks`` before anything
    runs: each value must have the type of the cell's default (True/False for a boolean, a whole
    number for an int, JSON lists and objects for lists and dicts), the kit's own parameters
    are checked more closely (datasets, methods, feature layers, the keys and value types of
    ``data_options`` and of the method overrides), and every name must be a parameter of at
    least one notebook. Raises :class:`ParameterError` listing every problem at once."""
    from ..model import FEATURE_LAYERS
    from ..unlearn import available_methods, method_defaults

    declared: dict[str, Any] = {}
    for nb in notebooks:
        for name, default in notebook_parameters(nb).items():
            declared.setdefault(name, default)
    problems: list[str] = []
    methods = available_methods()
    dataset = parameters.get("dataset", declared.get("dataset", "synthetic"))
    for name, value in parameters.items():
        if name in _RESERVED:
            continue
        if name not in declared:
            problems.append(f"{name}={value!r}: no selected notebook has a parameter {name!r}; "
                            f"their parameters are {', '.join(sorted(declared))}")
            continue
        default = declared[name]
        why: str | None = None
        if name == "dataset":
            from ..data.load import DATASETS
            why = _choice(name, value, DATASETS)
        elif name == "layer":
            why = _choice(name, value, FEATURE_LAYERS)
        elif name in ("data_root", "fit_on"):
            why = None if value is None or isinstance(value, str) else \
                f"must be a string or None ({_example(name, 'path/to/data')})"
        elif name in ("methods", "curve_methods"):
            ok = (value is None and default is None) or (
                isinstance(value, (list, tuple)) and all(m in methods for m in value))
            why = None if ok else (f"must be a JSON list of registered methods ({methods}), e.g. "
                                   f"{_example(name, json.dumps(methods[:2]))}"
                                   + ("" if default is not None else ", or None"))
        elif name == "seeds":
            ok = value is None or (isinstance(value, (list, tuple)) and value and all(
                isinstance(s, int) and not isinstance(s, bool) for s in value))
            why = None if ok else f"must be a JSON list of whole numbers, e.g. {_example(name, '[0,1,2]')}, or None"
        elif name == "umap_sizes":
            ok = value is None or (isinstance(value, dict) and all(
                v is None or (isinstance(v, int) and not isinstance(v, bool) and v > 0)
                for v in value.values()))
            why = None if ok else ("must be a JSON object of images per split (a whole number "
                                   "or null), e.g. " + _example(name, '{"retain":800,"forget":null}')
                                   + ", or None")
        elif name == "ablations":
            from ..unlearn.dlfd import ABLATIONS
            ok = value is None or (isinstance(value, (list, tuple)) and all(a in ABLATIONS for a in value))
            why = None if ok else f"must be a JSON list of labels of ABLATIONS ({list(ABLATIONS)}), or None"
        elif name == "ulira_k":
            why = _form_problem(name, value, default)
            if why is None and value < 0:
                why = "must be 0 (off) or a positive number of reference models"
        else:
            why = _form_problem(name, value, default)
        if why:
            hint = _json_hint(value) if isinstance(default, (list, dict)) or default is None else ""
            problems.append(f"{name}={value!r} {why}{hint}")
            continue
        # the keys and values inside the dict parameters
        if name == "data_options":
            accepted = _data_option_defaults(dataset)
            if accepted is not None:
                problems += _hparam_problems(f"data_options (dataset {dataset!r})", value, accepted)
        elif name == "dlfd_overrides":
            problems += _hparam_problems("dlfd_overrides", value, method_defaults("dlfd", profile))
        elif name == "curve_overrides" and isinstance(value, dict):
            for m, hp in value.items():
                if m not in methods:
                    problems.append(f"curve_overrides: unknown method {m!r}; registered: {methods}")
                elif not isinstance(hp, dict):
                    problems.append(f"curve_overrides[{m!r}]={hp!r} must be a JSON object of "
                                    f"hyperparameters, e.g. {{\"epochs\": 5}}")
                else:
                    problems += _hparam_problems(f"curve_overrides[{m!r}]", hp,
                                                 method_defaults(m, profile))
    if problems:
        raise ParameterError(
            f"{len(problems)} notebook parameter(s) cannot be used (nothing was run):\n  - "
            + "\n  - ".join(problems)
            + "\n  Values given with -p parse as JSON (true, 3, 0.5, \"text\", [1, 2], "
              "{\"key\": 1}) or Python literals (True, None); anything else stays a string.")


def check_device(device: Any) -> None:
    """``device`` must be "auto", "cpu", "cuda" or "cuda:N", and CUDA must exist if asked for."""
    if not isinstance(device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise ParameterError(f"device={device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if device.startswith("cuda"):
        from ..utils import resolve_device
        try:
            resolve_device(device)
        except RuntimeError as err:
            raise ParameterError(str(err) + " (CLI: --device cpu or --device auto)") from None


def parse_value(text: str) -> Any:
    """The value of ``-p key=<text>`` (``dlfd run``): ``3`` -> 3, ``0.5`` -> 0.5, ``true``/``True`` -> True, ``[1,2]`` -> [1, 2], else text."""
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    return text


def _cli_value(value: Any) -> str:
    """``value`` as the text of ``-p key=<text>`` that parses back to it (:func:`parse_value`)."""
    if isinstance(value, str) and parse_value(value) == value:
        return value
    try:
        return json.dumps(value)
    except TypeError:
        return repr(value)
