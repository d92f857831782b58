# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Every public name of every public module has an entry in the API reference.

A module's public names are its ``__all__`` (the package's own included). A name
counts as documented when an ``automodapi`` directive of a page under docs/ lists it
(not skipped; ``:skip: a, b`` skips both) for any module that holds the very same
object: a re-export documented once, under its package, is enough. Constants and
other objects that are neither classes nor functions count only where the directive
has ``:include-all-objects:``, without which automodapi renders no page for them.
"""
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import astro_mantis

DOCS = Path(__file__).resolve().parents[1] / "docs"
DIRECTIVE = re.compile(r"^\.\. automodapi:: (\S+)\n((?:   :.*\n)*)", re.M)


def public_modules():
    yield astro_mantis  # the package itself: walk_packages yields its submodules only
    for info in pkgutil.walk_packages(astro_mantis.__path__, "astro_mantis."):
        if not any(part.startswith("_") for part in info.name.split(".")[1:]):
            yield importlib.import_module(info.name)


def _rendered(obj, options):
    """Whether automodapi renders a page for ``obj``: classes and functions always,
    other objects (constants, instances) only with ``:include-all-objects:``."""
    import inspect

    return (inspect.isclass(obj) or callable(obj)
            or ":include-all-objects:" in options)


def pages():
    return {rst.name: rst.read_text() for rst in DOCS.glob("*.rst")}


def documented_objects(texts):
    """(name, id of the object) for every name the pages' automodapi directives document."""
    found = set()
    for name, text in texts.items():
        for match in DIRECTIVE.finditer(text):
            module = importlib.import_module(match.group(1))
            options = match.group(2)
            # ":skip: a, b" skips both, as automodsumm reads it
            skips = {n.strip() for line in re.findall(r":skip: (.*)", options)
                     for n in line.split(",") if n.strip()}
            assert hasattr(module, "__all__"), \
                f"{name} documents {match.group(1)}, which has no __all__"
            found |= {(n, id(getattr(module, n))) for n in module.__all__
                      if n not in skips and _rendered(getattr(module, n), options)}
    return found


def test_every_public_name_has_an_api_entry():
    if not DOCS.is_dir():
        pytest.skip("needs the source tree (docs/)")
    documented = documented_objects(pages())
    # dunder names (astro_mantis.__version__) are described in the pages' prose
    missing = [f"{m.__name__}.{n}" for m in public_modules() for n in getattr(m, "__all__", ())
               if not n.startswith("__") and (n, id(getattr(m, n))) not in documented]
    assert not missing, f"public names on no API page: {missing}"


def test_the_check_sees_a_missing_entry():
    """With the directive of astro_mantis.cli.train removed, its name is undocumented."""
    if not DOCS.is_dir():
        pytest.skip("needs the source tree (docs/)")
    from astro_mantis.cli import train

    texts = pages()
    key = ("add_parser", id(train.add_parser))
    assert key in documented_objects(texts)
    directive = ".. automodapi:: astro_mantis.cli.train\n"
    page = next(name for name, text in texts.items() if directive in text)
    texts[page] = texts[page].replace(directive, "")
    assert key not in documented_objects(texts)
