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


LOCK = ROOT / "requirements" / "constraints.txt"
LOCK_OPTION = "--constraint requirements/constraints.txt"


def test_environment_lists_the_same_requirements(pyproject, environment):
    project = pyproject["project"]
    # what `make install` installs: the dependencies and the dev and ray extras (the tests run sweeps on Ray)
    expected = (project["dependencies"] + project["optional-dependencies"]["dev"]
                + project["optional-dependencies"]["ray"])
    _, pip = environment
    assert pip.count(LOCK_OPTION) == 1, (
        f"environment.yml's pip list should install through the lock: add '- {LOCK_OPTION}'")
    pip = [p for p in pip if p != LOCK_OPTION]
    assert len(set(pip)) == len(pip), f"duplicates in environment.yml: {Counter(pip)}"
    missing = sorted(set(expected) - set(pip))
    extra = sorted(set(pip) - set(expected))
    assert not missing and not extra, (
        f"environment.yml's pip list differs from pyproject.toml (dependencies + dev + ray): "
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


def _lock_pins(python: str = "3.11", full: str | None = None) -> dict[str, str]:
    """{name: version} of the lock's lines that apply on Linux with the given Python (``full``:
    its micro version too, e.g. "3.11.7"; the lock's markers may fork on it)."""
    from packaging.markers import Marker, default_environment
    from packaging.utils import canonicalize_name

    env = {**default_environment(), "python_version": python, "python_full_version": full or f"{python}.0",
           "sys_platform": "linux", "platform_system": "Linux", "implementation_name": "cpython",
           "platform_python_implementation": "CPython"}
    pins: dict[str, str] = {}
    for n, raw in enumerate(LOCK.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        req, _, marker = line.partition(";")
        name, sep, version = req.strip().partition("==")
        assert sep and version, f"{LOCK}:{n}: {raw!r} is not an exact pin 'name==version'"
        if marker.strip() and not Marker(marker.strip()).evaluate(env):
            continue
        key = canonicalize_name(name)
        assert key not in pins, f"{LOCK}:{n}: {name} pinned twice for Python {python}"
        pins[key] = version.strip()
    return pins


@pytest.mark.parametrize("python", ["3.10", "3.11", "3.12"])
def test_lock_pins_every_requirement_within_pyproject(pyproject, python):
    """The lock holds one exact version of every dependency and extra (torch/torchvision excepted:
    the user's build stays theirs) for each supported Python, inside pyproject's ranges."""
    if Requirement is None:
        pytest.skip("needs `packaging`")
    from packaging.utils import canonicalize_name

    pins = _lock_pins(python)
    project = pyproject["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    for raw in reqs:
        req = Requirement(raw)
        name = canonicalize_name(req.name)
        if name in ("torch", "torchvision"):
            assert name not in pins, f"the lock must leave {name} to the user's build"
            continue
        assert not [p for p in pins if p.startswith("nvidia-") or p == "triton"], (
            "the lock pins torch's CUDA wheels: keep requirements/lock-overrides.txt in `make lock`")
        assert name in pins, f"{LOCK} has no pin for {req.name} on Python {python}: run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{LOCK} pins {req.name}=={pins[name]}, outside pyproject's {req.specifier}: run `make lock`")


def test_make_install_uses_the_lock():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^LOCK\s*\?=\s*requirements/constraints\.txt$", makefile, re.M)
    installs = re.findall(r"\$\(PIP_INSTALL\) (.*)$", makefile, re.M)
    kit = [i for i in installs if "-e " in i or "TORCH_SPEC" in i]
    assert len(kit) >= 2 and all("$(PIP_LOCK)" in i for i in kit), kit
    assert not re.findall(r"pip install .*-e ", makefile), "install the kit through $(PIP_INSTALL)"
    # the default installer is uv, pinned; pip stays selectable
    assert re.search(r"^INSTALLER\s*\?=\s*uv$", makefile, re.M)
    assert re.search(r"^UV_VERSION\s*:=\s*\d+\.\d+\.\d+$", makefile, re.M)
    assert "$(UV) pip install --python $(VPY)" in makefile and "$(VPY) -m pip install" in makefile
    assert re.search(r"^\$\(STAMP\):.*\$\(LOCK\)", makefile, re.M), "a new lock must reinstall"


def test_installed_versions_are_the_locked_ones():
    """`make install` gave this environment the lock's versions (skipped outside a locked venv)."""
    import sys
    from packaging.utils import canonicalize_name

    if Requirement is None:
        pytest.skip("needs `packaging`")
    if not (Path(sys.prefix) / ".installed").exists():
        pytest.skip("not the kit's `make install` venv")
    import platform
    pins = _lock_pins(f"{sys.version_info.major}.{sys.version_info.minor}", platform.python_version())
    wrong = {}
    for dist in metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        if name in pins and dist.version != pins[name]:
            wrong[name] = (dist.version, pins[name])
    assert not wrong, f"installed != locked (installed, locked): {wrong}; rerun `make install`"


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
