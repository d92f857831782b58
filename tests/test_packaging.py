# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""What an installed (non-editable) package holds: every data file the code reads.

An editable install reads files from the checkout, so a file missing from
``[tool.setuptools.package-data]`` shows only in a wheel: the web page's static files
were left out, and ``astro-mantis serve`` failed to start from ``pip install
".[web]"``.
"""
import fnmatch
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "astro_mantis"
#: Files that are not package data: Python modules, compiled objects and the C
#: sources of the extension ``setup.py`` builds.
NOT_DATA = ("*.py", "*.pyc", "*.so", "*.pyd", "*.c")


def package_data_globs():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return config["tool"]["setuptools"]["package-data"]["astro_mantis"]


def data_files():
    for path in PACKAGE.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts \
                and not any(fnmatch.fnmatch(path.name, p) for p in NOT_DATA):
            yield path.relative_to(PACKAGE).as_posix()


def test_every_data_file_is_installed():
    if not (ROOT / "pyproject.toml").is_file():
        pytest.skip("needs the source tree (pyproject.toml)")
    globs = package_data_globs()
    files = sorted(data_files())
    assert "web/static/index.html" in files and "data/mantis-mini.safetensors" in files
    left_out = [f for f in files if not any(fnmatch.fnmatch(f, g) for g in globs)]
    assert not left_out, f"files a wheel would leave out (add to package-data): {left_out}"
