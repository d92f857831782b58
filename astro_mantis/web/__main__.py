# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""``python -m astro_mantis.web`` runs ``astro-mantis serve``."""
import sys

from ..cli.serve import main

if __name__ == "__main__":
    sys.exit(main())
