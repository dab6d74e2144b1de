"""The library's structure: short orchestration functions, no function with too many parameters, and
no import cycle among its modules (imports inside functions count,
since they run too)."""
from __future__ import annotations

from pathlib import Path


def _import_graph(package_dir: Path) -> dict[str, set[str]]:
    """module -> the package's modules it imports anywhere in its file (function bodies too).
    ``from . import x`` with ``x`` a module is an edge to ``x``; to the package itself only when
    a name it imports is not a module."""
    import ast

    def name_of(f: Path) -> str:
        parts = list(f.relative_to(package_dir.parent).with_suffix("").parts)
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    mods = {name_of(f): f for f in package_dir.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for m, f in mods.items():
        pkg = m if f.name == "__init__.py" else m.rsplit(".", 1)[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = pkg.split(".")[: len(pkg.split(".")) - max(node.level - 1, 0)] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                subs = [f"{target}.{a.name}" for a in node.names]
                cands = subs + ([target] if any(s not in mods for s in subs) else [])
            elif isinstance(node, ast.Import):
                cands = [a.name for a in node.names]
            else:
                continue
            deps |= {c for c in cands if c in mods and c != m}
        graph[m] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_library_has_no_import_cycle_lazy_imports_included():
    cycles = _cycles(_import_graph(Path(__file__).resolve().parents[1] / "dlfd_lib"))
    assert not cycles, f"import cycles (imports inside functions count): {cycles}"


def test_the_cycle_check_finds_a_lazy_cycle(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "a.py").write_text("from . import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from .a import g\n")
    (pkg / "c.py").write_text("from .sub import a\n")
    assert _cycles(_import_graph(pkg)) == [["pkg.sub.a", "pkg.sub.b"]]
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..c import x\n")  # a -> b -> c -> a
    assert _cycles(_import_graph(pkg)) == [["pkg.c", "pkg.sub.a", "pkg.sub.b"]]
    (pkg / "sub" / "b.py").write_text("import os\n")
    assert _cycles(_import_graph(pkg)) == []


#: the orchestration code, whose functions stay short (issue 29): the plan, its executors, the
#: protocol, the store, the sweep and the benchmark
SHORT_FUNCTION_FILES = ("plan.py", "executors.py", "protocol.py", "store.py", "sweep.py", "benchmark.py")
MAX_LINES, MAX_PARAMS = 60, 14


def _functions(source: str):
    """``(name, lines, parameters)`` of every function and method in ``source`` (``self`` / ``cls``
    not counted; ``*args`` and ``**kwargs`` count one each)."""
    import ast
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
            n = len(names) - (names[:1] in (["self"], ["cls"])) + (a.vararg is not None) + (a.kwarg is not None)
            yield node.name, node.end_lineno - node.lineno + 1, n


def _violations(package_dir: Path) -> list[str]:
    out = []
    for f in sorted(package_dir.rglob("*.py")):
        for name, lines, params in _functions(f.read_text()):
            if params > MAX_PARAMS:
                out.append(f"{f.name}:{name} takes {params} parameters (at most {MAX_PARAMS}: group them in a "
                           f"config dataclass)")
            if f.name in SHORT_FUNCTION_FILES and lines > MAX_LINES:
                out.append(f"{f.name}:{name} is {lines} lines long (at most {MAX_LINES})")
    return out


def test_orchestration_functions_are_short_and_no_function_takes_too_many_parameters():
    bad = _violations(Path(__file__).resolve().parents[1] / "dlfd_lib")
    assert not bad, "\n".join(bad)


def test_the_limits_check_finds_a_long_function_and_a_long_signature(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "plan.py").write_text("def ok(self, a, *b, **c):\n    return 1\n")
    (pkg / "other.py").write_text("def long():\n" + "    x = 1\n" * 80)  # long, but not orchestration code
    assert _violations(pkg) == []
    (pkg / "plan.py").write_text("def long():\n" + "    x = 1\n" * 60)
    (pkg / "other.py").write_text("def wide(" + ", ".join(f"a{i}" for i in range(15)) + "):\n    pass\n")
    assert sorted(_violations(pkg)) == ["other.py:wide takes 15 parameters (at most 14: group them in a config "
                                        "dataclass)", "plan.py:long is 61 lines long (at most 60)"]
