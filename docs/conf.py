# Licensed under a 3-clause BSD style license - see LICENSE
"""Sphinx configuration of the astro_mantis documentation.

Build with ``sphinx-build -W -b html . _build/html`` from this directory.
The build never touches the network: there is no intersphinx, and references to
objects of other packages (astropy, numpy, matplotlib, ...) are left unresolved on
purpose and excluded from the nitpicky checks below. References inside
astro_mantis are checked.
"""
import datetime
import importlib
import os
import re
import sys
from importlib.metadata import PackageNotFoundError, version as _version

# Prefer an installed package; fall back to the source tree next to docs/.
try:
    import astro_mantis  # noqa: F401
except ImportError:  # pragma: no cover
    sys.path.insert(0, os.path.abspath(".."))

# Plots made while autodoc imports modules must never open a window.
os.environ.setdefault("MPLBACKEND", "Agg")

# -- Project information -----------------------------------------------------
project = "astro_mantis"
author = "astro_mantis developers"
copyright = f"2025-{datetime.date.today().year}, {author}"
try:
    release = _version("astro-mantis")
except PackageNotFoundError:  # pragma: no cover
    release = "0.0.0.dev0"
version = release.split("+")[0]

# -- General configuration ---------------------------------------------------
needs_sphinx = "7.0"
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_automodapi.automodapi",
    "sphinx_automodapi.smart_resolver",
    # The directives of pytest-doctestplus (testsetup, doctest-skip, ...): Sphinx must
    # know them to build the pages; pytest runs the examples (setup.cfg: --doctest-rst).
    "pytest_doctestplus.sphinx.doctestplus",
    # Formulas render offline: MathJax 3 is copied into the built pages.
    "sphinx-mathjax-offline",
    # The tutorials are scripts executed at build time (offline, loopback servers).
    "sphinx_gallery.gen_gallery",
]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints",
                    "tutorials_src"]

# -- Tutorials (sphinx-gallery) ------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "tutorials_src",
    "gallery_dirs": "tutorials",
    "filename_pattern": r"/plot_",      # execute every tutorial
    # on every build: sphinx-gallery otherwise skips a tutorial whose source is unchanged
    # (its md5 in the gitignored docs/tutorials/), which would publish the outputs of an
    # older package version (the two take well under a minute together)
    "run_stale_examples": True,
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,     # a tutorial that fails breaks the build
    "image_scrapers": ("matplotlib",),
    "matplotlib_animations": False,
    "show_memory": False,
    "line_numbers": False,
    "plot_gallery": "True",
    # its execution-times pages load DataTables from a CDN: the docs stay offline
    "write_computation_times": False,
}
templates_path = ["_templates"]
source_suffix = {".rst": "restructuredtext"}
root_doc = "index"

# Single backticks mean "a Python object", as in astropy's docs.
default_role = "obj"

# -- automodapi / autodoc / numpydoc ------------------------------------------
automodapi_toctreedirnm = "api"
automodsumm_inherited_members = False
autosummary_generate = True
autodoc_member_order = "bysource"
autoclass_content = "class"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# -- Offline build: no intersphinx, external references not checked ------------
intersphinx_mapping = {}
nitpicky = True
# Only genuinely external objects: without intersphinx (which would need the network)
# Sphinx cannot resolve them. Anything under astro_mantis must resolve.
nitpick_ignore_regex = [
    (r"py:.*", r"(astropy|astroquery|numpy|matplotlib|requests|tqdm|torch|scipy|pytest)(\..*)?"),
    (r"py:.*", r"(argparse|enum|concurrent|threading|pathlib|os|http|socketserver|collections"
               r"|typing|dataclasses|io|logging|urllib)(\..*)?"),
    (r"py:.*", r"(str|int|float|bool|bytes|dict|list|tuple|object|None|callable"
               r"|Exception|ValueError|TypeError|KeyError|OSError|RuntimeError"
               r"|path-like|optional|sequence|array-like|iterable)"),
]

# -- HTML output ----------------------------------------------------------------
# pydata-sphinx-theme comes with sphinx-astropy (through its theme); fall back on
# Sphinx's own theme where it is missing, so the build never needs anything more.
try:
    import pydata_sphinx_theme  # noqa: F401
except ImportError:  # pragma: no cover
    html_theme = "alabaster"
    html_theme_options = {}
else:
    html_theme = "pydata_sphinx_theme"
    html_theme_options = {
        "navigation_with_keys": False,
        "show_toc_level": 2,
        "icon_links": [],
        # the header holds the search and the theme switch, not a flat list of every
        # guide: the navigation is the sidebar's, in its parts
        "navbar_center": [],
        "navbar_end": ["theme-switcher"],
        # the right sidebar shows the page's own sections (none on a short page)
        "secondary_sidebar_items": ["page-toc"],
    }
    # the left sidebar: the whole documentation in its parts (User guide, Concepts,
    # Models, Developer, Reference), the current page's part open
    # (_templates/globalnav.html), not the theme's "Section Navigation", which is empty
    # here because every guide is a top-level page; the index lists the parts itself
    html_sidebars = {"**": ["globalnav.html"], "index": []}
    html_css_files = ["custom.css"]
html_title = f"astro_mantis {version}"
html_static_path = ["_static"]
html_last_updated_fmt = None
html_show_sourcelink = False


# -- Constants: their own documentation, never the docstring of their type ------------
def _attr_comment(name, obj):
    """The ``#:`` comment of the module that defines the constant ``name`` (the same
    object, found by identity): first the package's own submodules, then any module of
    astro_mantis (``astro_mantis.fetch.RETRY_STATUSES`` comes from
    ``astro_mantis.retry``)."""
    import sys

    from sphinx.pycode import ModuleAnalyzer

    package, _, attr = name.rpartition(".")
    modules = sorted((m for m in list(sys.modules) if m == "astro_mantis"
                      or m.startswith("astro_mantis.")),
                     key=lambda m: (not m.startswith(package + "."), m))
    for modname in [package] + modules:
        module = sys.modules.get(modname)
        if module is None or getattr(module, attr, None) is not obj:
            continue
        try:
            docs = ModuleAnalyzer.for_module(modname).find_attr_docs()
        except Exception:
            continue
        found = [line for line in docs.get(("", attr), []) if line.strip()]
        if found:
            return found
    return []


def _constant_docs(app, what, name, obj, options, lines):
    """A constant's own documentation, never the docstring of its type.

    A re-exported constant (``astro_mantis.fusion.CHANNELS``) has no ``#:`` comment
    where it is re-exported, so autodoc shows the docstring of its type (``tuple``,
    ``int``, ``str``) or nothing. Use the ``#:`` comment of the module that defines it
    instead; failing that, for a module-level object of a documented class (``conf``,
    ``log``, a survey), say which class it is; otherwise show nothing.
    """
    if what not in ("data", "attribute"):
        return
    doc = type(obj).__doc__
    builtin = doc.strip().splitlines() if isinstance(doc, str) else []
    first = next((str(line).strip() for line in lines if str(line).strip()), "")
    if first and (not builtin or first != builtin[0].strip()):
        return  # its own documentation
    if not first and what != "data":
        return  # an undocumented class attribute stays undocumented
    found = _attr_comment(name, obj)
    kind = type(obj)
    if (not found and what == "data" and not isinstance(obj, _CONSTANT_TYPES)
            and kind.__module__.split(".")[0] in ("astro_mantis", "astropy", "logging")):
        found = [f"An instance of `{kind.__module__}.{kind.__qualname__}`."]
    lines[:] = found


# -- One page per object -------------------------------------------------------------
# automodapi writes a page for every name of every ``.. automodapi::`` block, so an
# object re-exported by a package (``astro_mantis.match_spectroscopic``, also in
# ``astro_mantis.spectro`` and ``astro_mantis.spectro.matching``) would get a page per
# block. The API pages (api_*.rst) document each object once, at its highest-level
# public location, and ``:skip:`` it in the other blocks. Two hooks keep that true:
# ``_one_page_per_object`` fails the build (-W) when two blocks would document the same
# object, and ``_same_object_reference`` lets a reference written against a location
# that has no page (```~astro_mantis.spectro.matching.match_spectroscopic```, or
# ```match_spectroscopic``` inside that module's docstring) link to the page of the SAME
# Python object (checked by identity), so docstrings need not know where it is documented.
_AUTOMODAPI = re.compile(r"^\.\.\s+automodapi::\s*([A-Za-z0-9_.]+)\s*$"
                         r"((?:\n\s+:[a-zA-Z_\-]+:.*$)*)", re.MULTILINE)
_OPTION = re.compile(r":([a-zA-Z_\-]+):(.*)$", re.MULTILINE)
_CONSTANT_TYPES = (int, float, complex, str, bytes, tuple, frozenset, bool, type(None))


def _identity(name, obj):
    """What makes two documented names one object: the object itself, or for constants
    (small ints and strings are shared by unrelated names) the name and the object."""
    return (name, id(obj)) if isinstance(obj, _CONSTANT_TYPES) else id(obj)


def _one_page_per_object(app):
    """Warn (an error under -W) when two automodapi blocks document the same object."""
    from sphinx.util import logging
    from sphinx_automodapi.utils import find_mod_objs

    logger = logging.getLogger(__name__)
    seen = {}
    for docname in sorted(app.env.found_docs):
        path = app.env.doc2path(docname)
        if docname.startswith(app.config.automodapi_toctreedirnm + "/") or not os.path.isfile(path):
            continue
        with open(path, encoding="utf8") as f:
            text = f.read()
        for match in _AUTOMODAPI.finditer(text):
            module, options = match.group(1), _OPTION.findall(match.group(2))
            skip = {n.strip() for o, a in options if o == "skip" for n in a.split(",")}
            include = {n.strip() for o, a in options if o == "include" for n in a.split(",")}
            for name, _, obj in zip(*find_mod_objs(module, onlylocals=True)):
                if name in skip or (include and name not in include):
                    continue
                here = f"{module}.{name}"
                first = seen.setdefault(_identity(name, obj), here)
                if first != here:
                    line = text[:match.start()].count("\n") + 1
                    logger.warning(f"{here} is {first}, which already has a page: add "
                                   f"':skip: {name}' to the automodapi block of the less "
                                   f"public module", location=(docname, line))


def _lookup(dotted):
    """The object a dotted astro_mantis name stands for, or None."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def _same_object_reference(app, env, node, contnode):
    """Resolve a missing astro_mantis reference to the documented name of the same object."""
    if node.get("refdomain") != "py":
        return None
    domain = env.get_domain("py")
    target, module, cls = node["reftarget"], node.get("py:module"), node.get("py:class")
    candidates = [target] + [f"{p}.{target}" for p in (cls, module, f"{module}.{cls}") if p]
    # a name in a docstring means what it means in the module that defines the object
    # (``TrainingConfig`` in ``train``, documented as ``astro_mantis.training.train`` but
    # defined in ``astro_mantis.training.loop``)
    refdoc = node.get("refdoc", env.docname)
    if refdoc.startswith(app.config.automodapi_toctreedirnm + "/"):
        documented = _lookup(refdoc.partition("/")[2])
        defined_in = getattr(documented, "__module__", None)
        if isinstance(defined_in, str) and defined_in.startswith("astro_mantis."):
            candidates.append(f"{defined_in}.{target}")
    by_last = {}
    for name in domain.objects:
        if name.startswith("astro_mantis."):
            by_last.setdefault(name.rpartition(".")[2], []).append(name)
    for candidate in candidates:
        if not candidate.startswith("astro_mantis."):
            continue
        if candidate in domain.objects and candidate != target:
            return domain.resolve_xref(env, node.get("refdoc", env.docname), app.builder,
                                       node["reftype"], candidate, node, contnode)
        parts = candidate.split(".")
        # the longest head of the name that is documented elsewhere as the same object
        for i in range(len(parts), 1, -1):
            head = _lookup(".".join(parts[:i]))
            if head is None:
                continue
            for documented in by_last.get(parts[i - 1], []):
                if documented != ".".join(parts[:i]) and _lookup(documented) is head:
                    new = ".".join([documented] + parts[i:])
                    if new in domain.objects:
                        return domain.resolve_xref(env, node.get("refdoc", env.docname),
                                                   app.builder, node["reftype"], new, node,
                                                   contnode)
    return None


def setup(app):
    # before numpydoc (priority 500), which turns even an empty docstring into lines
    app.connect("autodoc-process-docstring", _constant_docs, priority=400)
    app.connect("builder-inited", _one_page_per_object)
    app.connect("missing-reference", _same_object_reference)
