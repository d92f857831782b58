"""Build of the one compiled module, ``astro_mantis.fusion._native._kernel``.

Everything else is declared in ``pyproject.toml``. The module is optional: where no C
compiler is at hand the install goes on without it and
``astro_mantis.fusion.fuse_arrays_fast`` falls back to its torch recipe.
"""
from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "astro_mantis.fusion._native._kernel", ["astro_mantis/fusion/_native/kernel.c"],
    extra_compile_args=["-O3", "-fno-math-errno", "-std=c99"], optional=True)])
