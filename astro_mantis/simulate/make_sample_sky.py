# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Make the bundled sample sky, ``astro_mantis/data/sample_sky.npz``.

Run from anywhere, with the ``sim`` extra installed (GalSim, kcorrect, speclite,
dust_extinction)::

    python -m astro_mantis.simulate.make_sample_sky            # the bundled file
    python -m astro_mantis.simulate.make_sample_sky --n 50 --out my_sample.npz

The result depends only on ``--n``, ``--seed`` and the package version: the same
arguments give a byte-identical file. See `astro_mantis.simulate.sample`.
"""

import argparse
import sys
import time

from .sample import SAMPLE_N, SAMPLE_SEED, SAMPLE_SKY_PATH, _describe, build_sample_sky

__all__ = ["main"]


def main(argv=None):
    """Build a sample sky file.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status.
    """
    parser = argparse.ArgumentParser(
        prog="python -m astro_mantis.simulate.make_sample_sky",
        description="Render mock galaxies with GalSim and store them as a compact sample "
                    "sky that renders without GalSim (astro_mantis.simulate.SampleSky).")
    parser.add_argument("--out", default=str(SAMPLE_SKY_PATH),
                        help="output file (default: the bundled %(default)s)")
    parser.add_argument("--n", type=int, default=SAMPLE_N, help="galaxies (default %(default)s)")
    parser.add_argument("--seed", type=int, default=SAMPLE_SEED,
                        help="mock sky seed (default %(default)s)")
    parser.add_argument("--quantisation", type=int, default=16,
                        help="store images in steps of sigma / Q (default %(default)s)")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    meta = build_sample_sky(args.out, n=args.n, seed=args.seed,
                            quantisation=args.quantisation, progress=True)
    print(_describe(meta))
    print(f"wrote {args.out} ({meta['bytes'] / 1e6:.2f} MB) in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
