# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""benchmarks/bench_point_estimates.py's ``max_odds``: the estimate with the highest odds."""
import importlib.util
from pathlib import Path

import numpy as np

from astro_mantis.pdf import Z_CENTERS, RedshiftPDF

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_point_estimates.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_point_estimates", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_max_odds_is_the_centre_with_the_highest_odds():
    """A narrow peak holding 40 % beside a broad bump holding 60 %: the median lies
    in the bump, max_odds within 0.05 (1 + z) of the peak; no bin centre has higher
    odds; invalid rows give NaN."""
    peak = np.exp(-0.5 * ((Z_CENTERS - 0.3) / 0.01) ** 2)
    bump = np.exp(-0.5 * ((Z_CENTERS - 1.0) / 0.25) ** 2)
    two = 0.4 * peak / peak.sum() + 0.6 * bump / bump.sum()
    one = np.exp(-0.5 * ((Z_CENTERS - 0.8) / 0.05) ** 2)
    pdf = RedshiftPDF(np.stack([two, one, np.full_like(one, np.nan)]), allow_invalid=True)
    best = _bench().max_odds(pdf)
    # the peak inside the estimate's window, where the median is outside it
    assert (best[0] - 0.05) / 1.05 <= 0.3 <= (best[0] + 0.05) / 0.95
    assert abs(pdf.median()[0] - 0.3) > 0.2
    assert abs(best[1] - 0.8) < 0.02 and np.isnan(best[2])
    for row in range(2):
        sub = pdf[row:row + 1]
        at_best = sub.odds(best[row:row + 1])[0]
        assert at_best >= sub.odds(np.full(1, Z_CENTERS[0]))[0]
        everywhere = np.array([sub.odds(np.full(1, z))[0] for z in Z_CENTERS])
        assert at_best == everywhere.max()
