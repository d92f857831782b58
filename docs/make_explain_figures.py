"""Make the figures of the "Explain and trust" guide (docs/explain.rst).

Runs ``benchmarks/bench_explain.py`` (all sections) on a mock dataset and writes its
PNGs into ``docs/_static``:

* ``explain_survey_shares.png`` — mean survey shares against redshift (exact Shapley);
* ``explain_ood_scores.png`` — OOD score distributions, held-out galaxies and OOD cases;
* ``explain_examples.png`` — a query galaxy and its supporting/opposing training galaxies;
* ``explain_spectra.png`` — singular values of the bundled weights against the MP edge;
* ``explain_probes.png`` — layer-wise PCA probe R².

Usage (from the repository root; about 15 minutes on two CPU cores)::

    python docs/make_explain_figures.py [--data DIR] [bench_explain.py's options]

All data are simulated (the package's mock sky).
"""
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None):
    # The benchmark imports its neighbours (``_machine``) as a script run from
    # benchmarks/ would; put that folder on the path first.
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("bench_explain",
                                                  ROOT / "benchmarks" / "bench_explain.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    argv = list(sys.argv[1:] if argv is None else argv)
    static = ROOT / "docs" / "_static"
    static.mkdir(exist_ok=True)
    bench.main(argv + ["--figures", str(static)])


if __name__ == "__main__":
    main()
