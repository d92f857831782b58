# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The compiled fusion kernel (``kernel.c``), built by ``setup.py`` where a C compiler is at hand.

``fuse_rows`` is the one function; `astro_mantis.fusion.batched.fuse_arrays_fast`
calls it (``_native_specs`` builds its per-survey arguments). Where the kernel was not
built, importing it raises ImportError and the torch recipe runs instead
(`~astro_mantis.fusion.has_native_fusion`). The kernel sits in this small package,
not directly in ``astro_mantis.fusion``, so that the module a reader (or an import
checker) finds for it is this file, which imports nothing but the kernel.
"""
from ._kernel import fuse_rows

__all__ = ["fuse_rows"]
