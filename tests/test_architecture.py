# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The package's import structure: no cycles, and the layering of docs/architecture.rst.

The graph is built from the source with `ast` (no import runs): every ``import`` and
``from ... import`` of an ``astro_mantis`` module, at module level or inside a
function, is an edge. A module's import of a name defined in its package's
``__init__`` counts as an import of that package.
"""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "astro_mantis"

#: Modules of the ground layer: they never import anything above it.
GROUND = ("astro_mantis._version", "astro_mantis.config", "astro_mantis.flags",
          "astro_mantis.exceptions", "astro_mantis.logger", "astro_mantis.atomic",
          "astro_mantis.positions", "astro_mantis.pdf", "astro_mantis.surveys",
          "astro_mantis.retry")
#: What the ground may never import (the layers above it).
ABOVE_GROUND = ("astro_mantis.cutouts", "astro_mantis.fetch", "astro_mantis.table",
                "astro_mantis.tableio", "astro_mantis.spectro", "astro_mantis.simulate",
                "astro_mantis.training", "astro_mantis.cli", "astro_mantis.models",
                "astro_mantis.fusion", "astro_mantis.web", "astro_mantis.explain",
                "astro_mantis.visualization", "astro_mantis.demo", "astro_mantis.testing")


def _modules():
    mods = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = path
    return mods


def import_graph():
    """Module name → set of astro_mantis modules it imports (anywhere in its source)."""
    mods = _modules()
    graph = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[:len(package.split(".")) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                if not module.startswith("astro_mantis"):
                    continue
                if node.level and not node.module:
                    targets.add(module)  # "from . import x" runs the package __init__ too
                for alias in node.names:
                    sub = f"{module}.{alias.name}"
                    targets.add(sub if sub in mods else module)
            elif isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name.startswith("astro_mantis"))
        # importing a module also imports the packages above it (not its own)
        full = set()
        for t in targets:
            if t not in mods or t == name:
                continue
            full.add(t)
            parts = t.split(".")
            for k in range(1, len(parts)):
                parent = ".".join(parts[:k])
                if parent in mods and not name.startswith(parent + ".") and parent != name:
                    full.add(parent)
            if t != name and name.startswith(t + "."):
                full.add(t)  # a module importing its own package's __init__
        graph[name] = full
    return graph


def cycles(graph):
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    # table imports the network's inference only inside a function
    assert "astro_mantis.models" in graph["astro_mantis.table"]
    assert graph["astro_mantis.pdf"] <= {"astro_mantis._version"} | set()


def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, f"import cycles: {found}"


@pytest.mark.parametrize("low", GROUND)
def test_the_ground_imports_nothing_above_it(low):
    graph = import_graph()
    names = [m for m in graph if m == low or m.startswith(low + ".")]
    bad = {(m, t) for m in names for t in graph[m]
           if any(t == a or t.startswith(a + ".") for a in ABOVE_GROUND)}
    assert not bad, f"{low} imports from a higher layer: {sorted(bad)}"


def test_no_module_imports_the_package_init():
    graph = import_graph()
    bad = sorted(m for m, targets in graph.items() if "astro_mantis" in targets)
    assert not bad, f"modules importing the package __init__: {bad}"


def test_importing_pdf_pulls_in_no_service_client():
    code = ("import sys; import astro_mantis.pdf; "
            "print(sorted(m for m in ('astroquery', 'requests', 'torch', 'urllib3') "
            "if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]", res.stdout


#: Survey facts that live in ``surveys/`` only (GALEX and unWISE zero points).
SURVEY_NUMBERS = (20.08, 18.82, 2.699, 3.339)


def test_survey_facts_live_in_the_survey_modules():
    """No module outside ``surveys/`` writes a survey's zero points as numbers."""
    found = []
    for path in ROOT.rglob("*.py"):
        if "surveys" in path.relative_to(ROOT).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, float) and \
                    node.value in SURVEY_NUMBERS:
                found.append(f"{path.relative_to(ROOT.parent)}:{node.lineno} {node.value}")
    assert not found, f"survey facts outside astro_mantis/surveys: {found}"
