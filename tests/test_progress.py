# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""One progress argument everywhere (astro_mantis.progress)."""
import ast
import io
import sys
from pathlib import Path

import pytest
from astropy.utils.exceptions import AstropyDeprecationWarning

from astro_mantis.progress import progress_bar, progress_enabled, renamed_progress

ROOT = Path(__file__).resolve().parents[1] / "astro_mantis"


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_none_shows_a_bar_on_a_terminal_only(monkeypatch):
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert progress_enabled(None) is False
    assert progress_bar(None, total=3).disable
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert progress_enabled(None) is True
    assert progress_enabled(None, large=False) is False  # a handful of items: no bar
    bar = progress_bar(None, total=3)
    assert not bar.disable
    bar.close()
    # given values win, whatever the stream
    assert progress_enabled(False) is False and progress_enabled(True, large=False) is True
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    monkeypatch.setitem(sys.modules, "ipykernel", object())  # a Jupyter kernel shows bars
    assert progress_enabled(None) is True


def test_renamed_progress():
    assert renamed_progress(None, None, "f") is None and renamed_progress(True, None, "f")
    with pytest.warns(AstropyDeprecationWarning, match=r"f\(show_progress=...\) is deprecated"):
        assert renamed_progress(None, False, "f") is False
    with pytest.warns(AstropyDeprecationWarning):
        assert renamed_progress(True, False, "f") is True


def _public_functions():
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent)
        if "cli" in rel.parts or "testing" in rel.parts or path.name.startswith("_"):
            continue
        tree = ast.parse(path.read_text())
        for node in tree.body:
            items = [node] + (node.body if isinstance(node, ast.ClassDef) else [])
            for item in items:
                if isinstance(item, ast.FunctionDef) and not item.name.startswith("_") or \
                        isinstance(item, ast.FunctionDef) and item.name == "__init__":
                    yield rel, item


def test_public_functions_take_progress_defaulting_to_none():
    """No public function names its progress argument otherwise or shows a bar by default."""
    bad = []
    for rel, fn in _public_functions():
        args = fn.args.posonlyargs + fn.args.args
        defaults = dict(zip([a.arg for a in args[len(args) - len(fn.args.defaults):]],
                            fn.args.defaults))
        defaults.update({a.arg: d for a, d in zip(fn.args.kwonlyargs, fn.args.kw_defaults)})
        for name in ("verbose", "show_progress", "progress_bar", "quiet"):
            if name in defaults and not (name == "show_progress" and
                                         isinstance(defaults[name], ast.Constant) and
                                         defaults[name].value is None):
                bad.append(f"{rel}:{fn.lineno} {fn.name}({name}=...)")
        if "progress" in defaults and not (isinstance(defaults["progress"], ast.Constant)
                                           and defaults["progress"].value is None):
            bad.append(f"{rel}:{fn.lineno} {fn.name}(progress={ast.unparse(defaults['progress'])})")
    assert not bad, bad


def test_library_code_never_prints():
    """Only the command-line entry points (cli/, ``main`` of a ``python -m`` module) print."""
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent)
        if "cli" in rel.parts:
            continue
        tree = ast.parse(path.read_text())
        mains = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main"]
        allowed = {id(n) for m in mains for n in ast.walk(m)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                    node.func.id == "print" and id(node) not in allowed:
                bad.append(f"{rel}:{node.lineno}")
    assert not bad, f"print() in library code: {bad}"
