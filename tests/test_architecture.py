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
          "astro_mantis.retry", "astro_mantis.progress", "astro_mantis.compiling",
          "astro_mantis.plotting")
#: What the ground may never import (the layers above it): every other module or
#: subpackage of the package, found on disk, so a new one is covered at once.
ABOVE_GROUND = tuple(sorted(
    f"astro_mantis.{p.stem}" for p in ROOT.iterdir()
    if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))
    and p.stem != "__init__" and f"astro_mantis.{p.stem}" not in GROUND))
#: The layers of docs/architecture.rst's table, from the ground up.
LAYERS = {
    "ground": GROUND,
    "fetch": ("astro_mantis.fetch", "astro_mantis.multicutout", "astro_mantis.sources"),
    "model": ("astro_mantis.fusion", "astro_mantis.models", "astro_mantis.metrics"),
    "jobs": ("astro_mantis.shards", "astro_mantis.table", "astro_mantis.tableio",
             "astro_mantis.spectro", "astro_mantis.training", "astro_mantis.simulate",
             "astro_mantis.explain", "astro_mantis.scale"),
    "testing": ("astro_mantis.testing",),
    "faces": ("astro_mantis.cutouts", "astro_mantis.cli", "astro_mantis.visualization",
              "astro_mantis.demo", "astro_mantis.web"),
}


def layer_of(module):
    """Index of ``module``'s layer in `LAYERS` (None if the table does not name it)."""
    for i, members in enumerate(LAYERS.values()):
        if any(module == m or module.startswith(m + ".") for m in members):
            return i
    return None


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
            # a module without Python source (a compiled extension) stands for the nearest
            # package above it, which Python runs first
            while t not in mods and "." in t:
                t = t.rpartition(".")[0]
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
    # pdf draws its plot through plotting, imported inside RedshiftPDF.plot
    assert "astro_mantis.plotting" in graph["astro_mantis.pdf"]
    assert graph["astro_mantis.pdf"] <= {"astro_mantis._version", "astro_mantis.plotting"}


def test_a_compiled_module_counts_as_its_package():
    """The graph cannot read an extension module; it counts its nearest package, so an
    extension directly in a package that imports its importer is a cycle."""
    graph = import_graph()
    assert "astro_mantis.fusion._native" in graph  # the kernel's Python face
    assert "astro_mantis.fusion._native" in graph["astro_mantis.fusion.batched"]
    assert "astro_mantis.fusion" not in graph["astro_mantis.fusion.batched"]


def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, f"import cycles: {found}"


def test_the_layers_cover_the_package():
    """The ground and what lies above it name every module, the recent ones included."""
    for name in ("astro_mantis.scale", "astro_mantis.sources", "astro_mantis.metrics",
                 "astro_mantis.multicutout", "astro_mantis.testing", "astro_mantis.fetch"):
        assert name in ABOVE_GROUND
    assert not set(GROUND) & set(ABOVE_GROUND)


def test_every_module_imports_only_its_own_layer_or_below():
    """The layer table of docs/architecture.rst, module by module."""
    graph = import_graph()
    unplaced = sorted(m for m in graph if m != "astro_mantis" and layer_of(m) is None)
    assert not unplaced, f"modules in no layer of docs/architecture.rst: {unplaced}"
    names = list(LAYERS)
    upward = sorted(f"{m} ({names[layer_of(m)]}) imports {t} ({names[layer_of(t)]})"
                    for m, targets in graph.items() if m != "astro_mantis"
                    for t in targets if t != "astro_mantis" and layer_of(t) > layer_of(m))
    assert not upward, f"imports of a higher layer: {upward}"


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


def test_the_shard_format_depends_on_none_of_its_users():
    """simulate, spectro and training share the shard format through astro_mantis.shards,
    which imports only the ground and the simulator's seeding (service_format)."""
    graph = import_graph()
    allowed = {"astro_mantis.simulate", "astro_mantis.simulate.service_format"}
    bad = {t for t in graph["astro_mantis.shards"]
           if t not in allowed and not any(t == g or t.startswith(g + ".") for g in GROUND)}
    assert not bad, f"astro_mantis.shards imports {sorted(bad)}"
    for user in ("astro_mantis.simulate.dataset", "astro_mantis.spectro.training_set",
                 "astro_mantis.training.data"):
        assert "astro_mantis.shards" in graph[user]
    assert "astro_mantis.simulate.dataset" not in graph["astro_mantis.spectro.training_set"]


def _unit(module):
    """What counts as one package: ``astro_mantis.X`` for a subpackage X, else the module."""
    parts = module.split(".")
    if len(parts) >= 2 and (ROOT / parts[1]).is_dir():
        return ".".join(parts[:2])
    return module


#: Modules whose private names every module may import: the version.
SHARED_PRIVATE = ("astro_mantis._version",)

#: Private cross-package imports allowed (none: the last six were made public names).
KNOWN_PRIVATE_IMPORTS = set()


def private_cross_package_imports():
    """(importer, imported) for every private name or private module imported across
    packages (``from astro_mantis.x import _y``, ``from ..simulate._z import w``)."""
    mods = _modules()
    found = set()
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if not module.startswith("astro_mantis") or module in SHARED_PRIVATE:
                continue
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                target = sub if sub in mods else module
                private = (alias.name.startswith("_") and sub not in mods) or any(
                    p.startswith("_") and p != "__init__" for p in target.split(".")[1:])
                if private and _unit(target) != _unit(name):
                    found.add((name, sub))
    return found


def test_no_private_names_are_imported_across_packages():
    found = private_cross_package_imports()
    new = sorted(found - KNOWN_PRIVATE_IMPORTS)
    assert not new, f"private names imported from another package: {new}"
    gone = sorted(KNOWN_PRIVATE_IMPORTS - found)
    assert not gone, f"no longer imported, remove from KNOWN_PRIVATE_IMPORTS: {gone}"


def test_the_private_import_check_sees_one(tmp_path, monkeypatch):
    fake = tmp_path / "astro_mantis"
    (fake / "spectro").mkdir(parents=True)
    (fake / "simulate").mkdir()
    for folder in (fake, fake / "spectro", fake / "simulate"):
        (folder / "__init__.py").write_text("")
    (fake / "simulate" / "dataset.py").write_text("_FORMAT = 1\nFORMAT = 1\n")
    (fake / "simulate" / "_npz.py").write_text("def write_npz(): pass\n")
    (fake / "simulate" / "sky.py").write_text("from .dataset import _FORMAT\n")
    (fake / "spectro" / "training_set.py").write_text(
        "from ..simulate.dataset import _FORMAT, FORMAT\nfrom ..simulate._npz import write_npz\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", fake)
    assert private_cross_package_imports() == {
        ("astro_mantis.spectro.training_set", "astro_mantis.simulate.dataset._FORMAT"),
        ("astro_mantis.spectro.training_set", "astro_mantis.simulate._npz.write_npz")}


def test_matplotlib_is_imported_only_where_a_plot_is_drawn():
    """Plots import matplotlib inside the function that draws: importing any module of the
    package never loads it (docs/architecture.rst, "A plot")."""
    bad = []
    for path in ROOT.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in tree.body:
            if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "matplotlib"
                                                    for a in node.names) or \
                    isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] \
                    == "matplotlib":
                bad.append(f"{path.relative_to(ROOT.parent)}:{node.lineno}")
    assert not bad, f"module-level matplotlib imports: {bad}"


#: The one module of the package that imports matplotlib.
PLOTTING = "astro_mantis/plotting.py"


def matplotlib_imports(root=None):
    """``path:line`` of every import of matplotlib, anywhere in a module's source, in every
    module of the package other than ``plotting.py``."""
    root = ROOT if root is None else root
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).as_posix()
        if rel == PLOTTING:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            if any(n.split(".")[0] == "matplotlib" for n in names):
                found.append(f"{rel}:{node.lineno}")
    return found


def test_only_the_plotting_module_imports_matplotlib():
    """Every figure is drawn in astro_mantis.plotting; the public plots beside their objects
    only gather their data and call it (docs/architecture.rst, "A plot")."""
    found = matplotlib_imports()
    assert not found, f"matplotlib imported outside {PLOTTING}: {found}"
    source = (ROOT.parent / PLOTTING).read_text()
    assert "import matplotlib" in source or "from matplotlib" in source


def test_the_matplotlib_check_sees_one_anywhere(tmp_path):
    fake = tmp_path / "astro_mantis"
    (fake / "explain").mkdir(parents=True)
    (fake / "plotting.py").write_text("def f():\n    import matplotlib.pyplot as plt\n")
    (fake / "pdf.py").write_text("import numpy\n\n\nclass P:\n    def plot(self):\n"
                                 "        from matplotlib.figure import Figure\n")
    (fake / "explain" / "probes.py").write_text("import matplotlib as mpl\n")
    (fake / "explain" / "fine.py").write_text("from .matplotlib import x\nimport numpy\n")
    assert matplotlib_imports(fake) == ["astro_mantis/explain/probes.py:1",
                                        "astro_mantis/pdf.py:6"]
