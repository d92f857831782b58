# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""``python -m astro_mantis.cli``: the ``astro-mantis`` command."""
import sys

from .main import main

sys.exit(main())
