"""pyproject.toml, environment.yml and the Makefile agree; the package is what pyproject says."""
from __future__ import annotations

import importlib
import re
from collections import Counter
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

try:
    import tomllib  # Python >= 3.11
except ModuleNotFoundError:  # Python 3.10
    try:
        import tomli as tomllib
    except ModuleNotFoundError:
        tomllib = None

try:
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet
except ModuleNotFoundError:  # packaging ships with pip's tooling almost everywhere
    Requirement = SpecifierSet = None


@pytest.fixture(scope="module")
def pyproject() -> dict:
    if tomllib is None:
        pytest.skip("needs tomllib (Python >= 3.11) or tomli to read pyproject.toml")
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)


def parse_environment_yml(text: str) -> tuple[list[str], list[str]]:
    """(conda dependencies, pip requirements) of a simple environment.yml, without PyYAML."""
    conda, pip = [], []
    section, pip_indent = None, None
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        item = line.strip()
        if indent == 0:
            section, pip_indent = item.rstrip(":"), None
            continue
        if section != "dependencies" or not item.startswith("- "):
            continue
        value = item[2:].strip()
        if pip_indent is not None and indent > pip_indent:
            pip.append(value)
        elif value == "pip:":
            pip_indent = indent
        else:
            pip_indent = None
            conda.append(value)
    return conda, pip


@pytest.fixture(scope="module")
def environment() -> tuple[list[str], list[str]]:
    text = (ROOT / "environment.yml").read_text()
    conda, pip = parse_environment_yml(text)
    try:
        import yaml
    except ModuleNotFoundError:
        return conda, pip
    doc = yaml.safe_load(text)
    assert doc["name"] == "dlfd-kit" and doc["channels"] == ["conda-forge"]
    yaml_conda = [d for d in doc["dependencies"] if isinstance(d, str)]
    yaml_pip = next(d["pip"] for d in doc["dependencies"] if isinstance(d, dict))
    assert (yaml_conda, yaml_pip) == (conda, pip), "the hand parser disagrees with PyYAML"
    return conda, pip


def test_environment_lists_the_same_requirements(pyproject, environment):
    project = pyproject["project"]
    expected = project["dependencies"] + project["optional-dependencies"]["dev"]
    _, pip = environment
    assert len(set(pip)) == len(pip), f"duplicates in environment.yml: {Counter(pip)}"
    missing = sorted(set(expected) - set(pip))
    extra = sorted(set(pip) - set(expected))
    assert not missing and not extra, (
        f"environment.yml's pip list differs from pyproject.toml (dependencies + dev): "
        f"missing {missing}, extra {extra}")


def test_environment_python_satisfies_requires_python(pyproject, environment):
    conda, _ = environment
    pythons = [d for d in conda if re.match(r"^python\s*[=<>]", d)]
    assert len(pythons) == 1, f"environment.yml should pin python once, found {pythons}"
    assert "pip" in conda
    version = re.sub(r"^python\s*=+\s*", "", pythons[0]).rstrip(".*")
    assert re.fullmatch(r"\d+\.\d+(\.\d+)?", version), f"unexpected pin {pythons[0]!r}"
    requires = pyproject["project"]["requires-python"]
    if SpecifierSet is not None:
        assert SpecifierSet(requires).contains(version), (version, requires)
    else:
        low = re.fullmatch(r">=\s*(\d+)\.(\d+)", requires)
        assert low, f"cannot check requires-python {requires!r} without `packaging`"
        assert tuple(map(int, version.split(".")[:2])) >= tuple(map(int, low.groups()))


def test_console_script_target_is_callable(pyproject):
    target = pyproject["project"]["scripts"]["dlfd"]
    module_name, _, attr = target.partition(":")
    func = getattr(importlib.import_module(module_name), attr)
    assert callable(func)
    installed = [ep for ep in metadata.entry_points(group="console_scripts")
                 if ep.name == "dlfd"]
    if installed:  # the kit is installed: the entry point must be the same
        assert installed[0].value == target


def test_version_matches(pyproject):
    import dlfd_lib

    version = pyproject["project"]["version"]
    assert dlfd_lib.__version__ == version
    try:
        installed = metadata.version(pyproject["project"]["name"])
    except metadata.PackageNotFoundError:
        return
    assert installed == version, ("the installed metadata is stale; reinstall with "
                                  "`make install` (or pip install -e '.[dev]')")


def test_makefile_torch_pins_fit_pyproject(pyproject):
    if Requirement is None:
        pytest.skip("needs `packaging`")
    makefile = (ROOT / "Makefile").read_text()
    spec = re.search(r"^TORCH_SPEC\s*\?=\s*(.+)$", makefile, re.M)
    assert spec, "Makefile should define TORCH_SPEC ?= ..."
    reqs = {Requirement(r).name: Requirement(r) for r in pyproject["project"]["dependencies"]}
    for pin in spec.group(1).split():
        name, _, version = pin.partition("==")
        assert name in reqs and reqs[name].specifier.contains(version), (
            f"Makefile pins {pin} outside pyproject's {reqs.get(name)}")


def test_hand_parser_on_a_sample():
    sample = """name: x
channels:
  - conda-forge
dependencies:
  - python=3.11  # comment
  - pip
  - pip:
      # a comment line
      - a>=1
      - b<2
  - numpy
"""
    assert parse_environment_yml(sample) == (["python=3.11", "pip", "numpy"], ["a>=1", "b<2"])
