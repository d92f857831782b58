"""Make the figures of docs/photoz.rst with the demo (loopback services, bundled sample sky).

Run from the repository root: ``python docs/make_photoz_figures.py``.
"""
import shutil
import tempfile
from pathlib import Path

from astro_mantis.demo import run_demo

STATIC = Path(__file__).parent / "_static"


def main():
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "demo"
        result = run_demo(out, progress=False)
        shutil.copy(out / "photoz_summary.png", STATIC / "photoz_summary.png")
        shutil.copy(out / "row_002.png", STATIC / "photoz_row.png")  # the GALEX-hole galaxy
        print(result.report())


if __name__ == "__main__":
    main()
