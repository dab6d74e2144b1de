"""Docs that stay true: every command the README and the `docs/` pages show is checked, and every
repository file they name exists.

* ``make …`` runs as a dry run (``make -n``): the targets and variables must exist.
* ``dlfd …`` is parsed by the command's own parser; ``dlfd run`` parameters (``-p``) are also
  checked against the notebooks' ``parameters`` cells, and ``--methods`` against the registry.
* ``python benchmarks/….py …`` and ``python scripts/….py …`` run with their real arguments up to
  the point where the script parses them, and no further; every benchmark's ``--help`` runs too.
  All of these run in one subprocess, so the heavy imports are paid once.
* Relative links and images must lead to files; backticked repository paths (``dlfd_lib/…``,
  ``benchmarks/…``, …) must exist unless git ignores them (outputs such as ``runs/quick/``);
  notebook names must be notebooks.

Commands are taken from ``bash`` code blocks and from inline code that starts with ``make``,
``dlfd`` or ``python``; HTML comments and the generated verdict block are left out. A command
with a placeholder (``<out>``, ``…``, ``DIR``) is not run.
"""
from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: files a page asks the reader to write; they are examples, not repository files
EXAMPLES = {"dlfd_lib/unlearn/my_method.py"}
#: the first component of a backticked path that names a repository file or folder
REPO_TOP = {"dlfd_lib", "benchmarks", "scripts", "tests", "notebooks", "book", "docs", "requirements",
            "results", "figures", "checkpoints", ".ci"}
REPO_FILES = {"Makefile", "pyproject.toml", "environment.yml", "README.md"}
#: a command or path that holds one of these is a pattern, not something to run or find
PLACEHOLDER = re.compile(r"[<>…]|\.\.\.|\b(DIR|FILE|SECONDS|PID|NAME|VALUE|KEY|HEAD_HOST|HOST|PORT|SEED|METHOD|N|K)\b")
PATH_PATTERN = re.compile(r"[<>…{}*]|\.\.\.")
DLFD = {"dlfd", ".venv/bin/dlfd"}
PYTHON = {"python", "python3", ".venv/bin/python"}


# --- reading the pages -------------------------------------------------------------------------

def page_text(path: Path) -> str:
    """The page without HTML comments and without the README's generated results block (written
    by benchmarks/protocol_report.py, checked by tests/test_readme_results.py)."""
    text = path.read_text()
    text = re.sub(r"<!-- results:begin.*?<!-- results:end -->", "", text, flags=re.S)
    return re.sub(r"<!--.*?-->", "", text, flags=re.S)


def split_fences(text: str) -> tuple[list[tuple[str, str]], str]:
    """(the fenced code blocks as (language, body), the prose with the blocks removed)."""
    blocks = [(m.group(1).strip(), m.group(2)) for m in re.finditer(r"^```([^\n`]*)\n(.*?)^```", text, re.S | re.M)]
    prose = re.sub(r"^```[^\n`]*\n.*?^```", "", text, flags=re.S | re.M)
    return blocks, prose


def inline_spans(prose: str) -> list[str]:
    return [" ".join(s.split()) for s in re.findall(r"`([^`]+)`", prose)]


def commands(text: str) -> list[list[str]]:
    """Every command a page shows, as argv lists (environment assignments in front dropped)."""
    blocks, prose = split_fences(text)
    lines: list[str] = []
    for lang, body in blocks:
        if lang in ("bash", "sh", "shell", "console"):
            lines += body.replace("\\\n", " ").splitlines()
    lines += [s for s in inline_spans(prose) if re.match(r"(\w+=\S+ )*(make|dlfd|\.venv/bin/dlfd|python3?) ", s + " ")]
    out = []
    for line in lines:
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError:
            tokens = line.split()
        for argv in _chained(tokens):
            while argv and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", argv[0]):
                argv = argv[1:]
            if not argv or argv[0] not in DLFD | PYTHON | {"make"}:
                continue
            if argv[0] != "make" and (len(argv) == 1 or any(PLACEHOLDER.search(a) for a in argv)):
                continue  # a bare name (`dlfd`) or a pattern (`--out DIR`)
            if argv[0] == "make" and any(PATH_PATTERN.search(a) for a in argv):
                continue
            if argv[0] in PYTHON and not argv[1].endswith(".py"):
                continue
            out.append(argv)
    return out


def _chained(tokens: list[str]) -> list[list[str]]:
    """``a && b ; c`` as three commands."""
    parts, current = [], []
    for tok in tokens:
        if tok in ("&&", "||", ";", "|"):
            parts.append(current)
            current = []
        else:
            current.append(tok)
    return parts + [current]


def named_paths(text: str, page: Path) -> list[str]:
    """Problems with the files a page names: links and images that lead nowhere, backticked
    repository paths that do not exist, notebook names that are not notebooks."""
    blocks, prose = split_fences(text)
    problems = []
    headings = {_slug(h) for h in re.findall(r"^#+ (.+)$", prose, re.M)}
    for target in re.findall(r"\]\(([^)\s]+)\)", prose):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, frag = target.partition("#")
        if not file:
            if frag not in headings:
                problems.append(f"{page.name}: link #{frag} names no heading of the page")
        elif not (page.parent / file).exists():
            problems.append(f"{page.name}: link {target} leads to no file")
    candidates = []
    for span in inline_spans(prose):
        if re.fullmatch(r"\d\d_[a-z_]+", span):
            if not (ROOT / "notebooks" / f"{span}.ipynb").is_file():
                problems.append(f"{page.name}: `{span}` is not a notebook in notebooks/")
            continue
        if " " in span or PATH_PATTERN.search(span) or span in EXAMPLES:
            continue
        first = span.split("/", 1)[0]
        if (first in REPO_TOP and "/" in span) or span in REPO_FILES:
            candidates.append(span)
    ignored = _git_ignored(candidates)
    for span in candidates:
        if span not in ignored and not (ROOT / span).exists():
            problems.append(f"{page.name}: `{span}` does not exist in the repository")
    return problems


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _git_ignored(paths: list[str]) -> set[str]:
    if not paths:
        return set()
    proc = subprocess.run(["git", "check-ignore", "--no-index", "--stdin"], cwd=ROOT, input="\n".join(paths),
                          capture_output=True, text=True)
    assert proc.returncode in (0, 1), f"git check-ignore failed: {proc.stderr}"
    return set(proc.stdout.split())


# --- checking commands -------------------------------------------------------------------------

def check_make(argv: list[str]) -> str | None:
    """None if `make -n` accepts the targets and variables, else make's complaint."""
    proc = subprocess.run(["make", "-n", *argv[1:]], cwd=ROOT, capture_output=True, text=True, timeout=60)
    return None if proc.returncode == 0 else (proc.stderr.strip() or proc.stdout.strip())[-500:]


def check_python(argvs: list[list[str]]) -> list[str | None]:
    """Check ``dlfd`` and ``python <script>`` command lines in one subprocess (this file run as a
    script); returns one result per command: None when it is accepted, else why not."""
    proc = subprocess.run([sys.executable, __file__], cwd=ROOT, input=json.dumps(argvs), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, f"the command checker failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


class _Parsed(Exception):
    """Raised by the patched parse_args: the arguments parsed, the script goes no further."""


def _check_one(argv: list[str]) -> str | None:
    import contextlib
    import io
    import runpy

    err = io.StringIO()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            if argv[0] in DLFD:
                return _check_dlfd(argv[1:])
            script = ROOT / argv[1]
            if not script.is_file():
                return f"{argv[1]} does not exist"
            if "parse_args(" not in script.read_text():
                return f"{argv[1]} parses no arguments with argparse: not run"
            original = argparse.ArgumentParser.parse_args

            def parse_args(self, args=None, namespace=None):
                raise _Parsed(original(self, args, namespace))

            saved = sys.argv, list(sys.path)
            argparse.ArgumentParser.parse_args = parse_args
            sys.argv = [str(script), *argv[2:]]
            try:
                runpy.run_path(str(script), run_name="__main__")
            except _Parsed as parsed:
                return _check_methods(getattr(parsed.args[0], "methods", None))
            finally:
                argparse.ArgumentParser.parse_args = original
                sys.argv, sys.path[:] = saved
            return f"{argv[1]} finished without parsing its arguments"
    except SystemExit as exit_:
        return None if exit_.code in (0, None) else f"exit status {exit_.code}: {err.getvalue().strip()[-500:]}"
    except Exception as exc:  # noqa: BLE001 - report, do not crash the batch
        return f"{type(exc).__name__}: {exc}"[:800]


def _check_dlfd(args: list[str]) -> str | None:
    from dlfd_lib.cli import build_parser
    from dlfd_lib.pipeline import select_notebooks, validate_parameters

    ns = build_parser().parse_args(args)
    if ns.command == "run":
        validate_parameters(select_notebooks(ns.notebooks, ns.notebooks_dir), dict(ns.params), ns.profile)
    return _check_methods(getattr(ns, "methods", None))


def _check_methods(methods) -> str | None:
    if not methods:
        return None
    from dlfd_lib.unlearn import available_methods
    unknown = sorted(set(methods) - set(available_methods()))
    return f"unknown methods {unknown}" if unknown else None


def _main() -> None:
    argvs = json.loads(sys.stdin.read())
    sys.path.insert(0, str(ROOT))
    results = [_check_one(argv) for argv in argvs]
    print(json.dumps(results))


# --- the tests ---------------------------------------------------------------------------------

def _all_commands() -> list[tuple[str, list[str]]]:
    """(page, argv) for every distinct command of the README and the docs pages."""
    seen: dict[tuple[str, ...], str] = {}
    for page in PAGES:
        for argv in commands(page_text(page)):
            seen.setdefault(tuple(argv), page.relative_to(ROOT).as_posix())
    return [(page, list(argv)) for argv, page in seen.items()]


PLANTED_BAD = [["make", "no-such-target"], ["dlfd", "run", "--profile", "fast"],
               ["dlfd", "run", "-p", "no_such_parameter=1"], ["dlfd", "sweep", "--methods", "no_such_method"],
               ["python", "benchmarks/dlfd_speed.py", "--no-such-flag"],
               ["python", "benchmarks/no_such_benchmark.py", "--help"]]


def test_the_pages_show_the_commands_this_test_checks():
    cmds = [argv for _, argv in _all_commands()]
    readme = commands(page_text(ROOT / "README.md"))
    assert ["make", "demo"] in readme and ["make", "test"] in readme
    assert any(a[0] in DLFD for a in readme) and any(a[0] in PYTHON for a in readme)
    assert any(a[:2] == ["python", "benchmarks/sweep_speed.py"] for a in cmds)


def test_every_command_the_readme_and_docs_show_is_accepted():
    found = _all_commands()
    make = [(page, argv) for page, argv in found if argv[0] == "make"]
    py = [(page, argv) for page, argv in found if argv[0] != "make"]
    helps = [["python", p.relative_to(ROOT).as_posix(), "--help"] for p in sorted((ROOT / "benchmarks").glob("*.py"))]
    subs = sorted({argv[1] for _, argv in py if argv[0] in DLFD and len(argv) > 1 and not argv[1].startswith("-")})
    helps += [["dlfd", "--help"], *(["dlfd", s, "--help"] for s in subs)]
    results = check_python([argv for _, argv in py] + helps + PLANTED_BAD[1:])
    bad = [f"{page}: {shlex.join(argv)}\n    {why}" for (page, argv), why in zip(py, results) if why]
    bad += [f"{shlex.join(argv)}\n    {why}" for argv, why in zip(helps, results[len(py):]) if why]
    bad += [f"{page}: {shlex.join(argv)}\n    {why}" for page, argv in make if (why := check_make(argv))]
    assert not bad, "commands in the README / docs that do not work:\n" + "\n".join(bad)
    # the checker must catch a wrong command: a planted bad one of every kind is refused
    planted = results[len(py) + len(helps):]
    assert all(planted), [shlex.join(a) for a, why in zip(PLANTED_BAD[1:], planted) if not why]
    assert check_make(PLANTED_BAD[0])


def test_every_file_the_readme_and_docs_name_exists():
    problems = [p for page in PAGES for p in named_paths(page_text(page), page)]
    assert not problems, "\n".join(problems)


def test_a_missing_file_or_link_is_caught():
    page = ROOT / "docs" / "planted.md"  # never written: only its folder matters for links
    text = ("See `benchmarks/no_such_benchmark.py`, `01_no_such_notebook`, [a page](no-such-page.md), "
            "[a heading](#no-such-heading) and ![a figure](img/no_such_figure.svg); `runs/quick/` is an "
            "output and `dlfd_lib/unlearn/my_method.py` an example.\n\n# A heading\n")
    problems = named_paths(text, page)
    assert len(problems) == 5, problems
    assert not named_paths("`dlfd_lib/unlearn/loop.py`, [the protocol](protocol.md), [up](#a-heading)\n"
                           "# A heading\n", page)


def test_commands_are_read_from_code_blocks_and_inline_code():
    text = ("Run `make test PYTEST_ARGS=--durations=15` or `dlfd status`; `--out DIR` is a fragment.\n\n"
            "```bash\nDLFD_CPU_BF16=0 python benchmarks/x.py --a 1 \\\n    --b 2   # a comment\n"
            "ray start --head\n.venv/bin/dlfd sweep --address HOST:6379\n```\n"
            "<!-- `make hidden` -->\n")
    assert commands(page_text_from(text)) == [["python", "benchmarks/x.py", "--a", "1", "--b", "2"],
                                              ["make", "test", "PYTEST_ARGS=--durations=15"], ["dlfd", "status"]]


def page_text_from(text: str) -> str:
    return re.sub(r"<!--.*?-->", "", text, flags=re.S)


if __name__ == "__main__":
    _main()
