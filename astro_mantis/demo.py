# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The main job on the embedded default: photo-z for the bundled sample sky, no network.

`run_demo` is what ``astro-mantis demo`` runs:

1. loopback copies of the Pan-STARRS and Legacy Surveys viewer services
   (`astro_mantis.testing.SurveyServer`) serve the bundled sample sky
   (`astro_mantis.simulate.SampleSky`: simulated galaxies with known redshifts), and
   ``astro_mantis.conf`` points at them, with a temporary cutout cache;
2. a table of sample galaxies (with two south of dec -30, where Pan-STARRS has no data,
   one in a GALEX coverage hole and one invalid position, to show how such rows are
   flagged) goes through `~astro_mantis.add_redshift_columns` with the bundled
   ``mantis-mini`` model and the catalog's dust values;
3. the table, a metrics summary against the true redshifts and figures are written.

The galaxies are simulated: the metrics show that the whole path works and how the
model does on its own simulator's galaxies, not how it does on the real sky.
"""
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.table import MaskedColumn, Table

from .pdf import RECOMMENDED_POINT_ESTIMATE

__all__ = ["run_demo", "demo_positions", "demo_table", "DemoResult", "TABLE_NAME",
           "METRICS_NAME", "SUMMARY_FIGURE"]

#: File name of the photo-z table `run_demo` writes (FITS).
TABLE_NAME = "photoz.fits"
#: File name of the metrics table `run_demo` writes (ECSV).
METRICS_NAME = "metrics.ecsv"
#: File name of the summary figure `run_demo` writes (PNG).
SUMMARY_FIGURE = "photoz_summary.png"
# The column scored against the true redshifts: the recommended point estimate.
POINT_COLUMN = f"z_{RECOMMENDED_POINT_ESTIMATE}"

_SOUTH = "south of PS1 (dec < -30)"
_HOLE = "GALEX coverage hole"
_BAD = "invalid position (NaN)"


def demo_positions(n=None, sky=None):
    """Deterministic demo positions: galaxies of the bundled sample sky.

    Most positions are sample galaxies that every survey covers; two lie south of
    dec -30 (no Pan-STARRS), one inside a GALEX coverage hole, and one is invalid
    (NaN), so the demo shows how each case is flagged. Row 0 is an ordinary galaxy
    whose cutouts are all complete, row 1 a southern one and row 2 the GALEX hole, so
    the first figures show all three; the second southern galaxy and the invalid
    position come last.

    Parameters
    ----------
    n : int, optional
        Number of positions (default: all that the sample offers, its galaxies plus
        one).
    sky : `~astro_mantis.simulate.SampleSky`, optional
        The sample sky (default: the bundled one).

    Returns
    -------
    ra, dec : `numpy.ndarray`
        Degrees, length ``n``.
    labels : list of str
        What each position is meant to show (``""`` for ordinary ones).
    rows : `numpy.ndarray` of int
        Row of ``sky.catalog`` of each position (-1 for the invalid one).

    Raises
    ------
    ValueError
        If ``n`` exceeds the positions available.
    """
    if sky is None:
        from .simulate import SampleSky

        sky = SampleSky()
    cat = sky.catalog
    ra_all = np.asarray(cat["ra"], dtype=float)
    dec_all = np.asarray(cat["dec"], dtype=float)
    south = dec_all < -30.0
    covered = np.array([sky.galex_covered((r, d)) for r, d in zip(ra_all, dec_all)])
    clean = np.array([not sky.chip_gap_bands((r, d)) for r, d in zip(ra_all, dec_all)])

    def pick(mask, k):
        # complete cutouts first, so that the special rows show only what they are for
        idx = np.flatnonzero(mask)
        return list(idx[np.argsort(~clean[idx], kind="stable")][:k])

    souths = pick(south & covered, 2) or pick(south, 2)
    holes = pick(~south & ~covered, 1)
    used = set(souths) | set(holes)
    ordinary = [i for i in pick(np.ones(len(cat), bool), len(cat)) if i not in used]
    specials = ([(_SOUTH, souths[0])] if souths else []) \
        + ([(_HOLE, holes[0])] if holes else []) \
        + [(_SOUTH, i) for i in souths[1:2]] + [(_BAD, -1)]
    available = len(ordinary) + len(specials)
    if n is None:
        n = available
    if n > available:
        raise ValueError(f"the sample sky offers at most {available} demo positions, not {n}")
    nordinary = max(n - len(specials), 1)
    plain = [("", int(i)) for i in ordinary[:nordinary]]
    rows = (plain[:1] + specials[:2] + plain[1:] + specials[2:])[:n]
    index = np.array([r[1] for r in rows], dtype=np.int64)
    good = index >= 0
    ra = np.where(good, ra_all[np.maximum(index, 0)], np.nan)
    dec = np.where(good, dec_all[np.maximum(index, 0)], np.nan)
    return ra, dec, [r[0] for r in rows], index


def demo_table(n=None, sky=None):
    """The demo's input table: positions, dust, and the truth of the mock galaxies.

    Parameters
    ----------
    n : int, optional
        Number of rows (see `demo_positions`).
    sky : `~astro_mantis.simulate.SampleSky`, optional
        The sample sky.

    Returns
    -------
    `~astropy.table.Table`
        Columns ``ra``, ``dec`` (deg), ``ebv_csfd``, ``ebv_planck`` (mag), ``z_true``,
        ``type``, ``sample_id`` (masked for the invalid row) and ``note``.
    """
    import astropy.units as u

    if sky is None:
        from .simulate import SampleSky

        sky = SampleSky()
    ra, dec, labels, index = demo_positions(n, sky=sky)
    cat = sky.catalog
    good = index >= 0
    pick = np.maximum(index, 0)
    t = Table()
    t["ra"] = ra * u.deg
    t["dec"] = dec * u.deg
    for name in ("ebv_csfd", "ebv_planck"):
        t[name] = MaskedColumn(np.asarray(cat[name], float)[pick], mask=~good, unit=u.mag,
                               description=f"Milky Way E(B-V), {name[4:].upper()}-like "
                                           "(simulated)")
    t["z_true"] = MaskedColumn(np.asarray(cat["z"], float)[pick], mask=~good,
                               description="true redshift of the simulated galaxy")
    t["type"] = MaskedColumn(np.asarray(cat["type"]).astype(str)[pick], mask=~good,
                             description="population component: main, lrg or elg")
    ids = np.asarray(cat["id"], np.int64)[pick] if "id" in cat.colnames else pick
    t["sample_id"] = MaskedColumn(ids, mask=~good,
                                  description="row (id) of the galaxy in the sample sky catalog")
    t["note"] = np.array(labels, dtype=str)
    t["note"].description = "what the demo row is meant to show"
    return t


@dataclass
class DemoResult:
    """What `run_demo` did and wrote.

    Attributes
    ----------
    table : `~astropy.table.Table`
        The demo table with its redshift columns.
    metrics : `~astro_mantis.metrics.PhotozMetrics`
        Metrics of the estimated rows against ``z_true``.
    files : list of `pathlib.Path`
        Files written.
    seconds : float
        Wall time.
    requests : dict
        HTTP requests served by the loopback services, per endpoint.
    out : `pathlib.Path`
        The output directory the files were written into.
    """

    table: Table
    metrics: object
    files: list = field(default_factory=list)
    seconds: float = 0.0
    requests: dict = field(default_factory=dict)
    out: Path = None

    def report(self):
        """The text ``astro-mantis demo`` prints."""
        from collections import Counter

        from .flags import MantisFlag

        t, m = self.table, self.metrics
        flags = np.asarray(t["z_flags"])
        est = (flags & MantisFlag.NOT_ESTIMATED) == 0
        counts = Counter()
        for f in MantisFlag:
            if f and np.any(flags & f):
                counts[f.name] = int(np.sum((flags & f) != 0))
        lines = [
            f"astro-mantis demo: photo-z for {len(t)} rows of the bundled sample sky "
            f"(simulated galaxies) through loopback survey servers, no network, in "
            f"{self.seconds:.1f} s",
            f"  model {t.meta.get('z_model')} (sha256 {str(t.meta.get('z_sha256'))[:12]}...); "
            f"{int(est.sum())} rows estimated, {int((~est).sum())} not (flagged)",
            "  flags: " + (", ".join(f"{k} {v}" for k, v in counts.items()) or "none"),
            f"  {POINT_COLUMN} against the true redshifts of the {int(m.n)} estimated galaxies "
            "(SIMULATED, the model's own simulator; not a result on the real sky):",
            f"    NMAD {m['nmad']:.4f}, median bias {m['bias_median']:+.4f}, outliers "
            f"|dz|/(1+z)>0.15 {m['outlier_0.15']:.3f}, >0.05 {m['outlier_0.05']:.3f} "
            f"(the PDFs expect {m['expected_outlier_0.05']:.3f})",
            f"    CRPS {m['crps']:.4f}, PIT KS {m['pit_ks']:.3f}, 68% coverage "
            f"{m['coverage_68']:.3f}, 95% coverage {m['coverage_95']:.3f}",
            "  requests served: " + ", ".join(f"{k} {v}" for k, v in
                                             sorted(self.requests.items())),
            f"wrote to {self.out}/:",
        ]
        what = {TABLE_NAME: "the table: input columns + z_pdf, z_mean, ..., z_flags",
                METRICS_NAME: "metrics with bootstrap errors",
                SUMMARY_FIGURE: "photo-z vs true z, PIT histogram, n(z)"}
        for p in self.files:
            lines.append(f"  {p.name}" + (f"  ({what[p.name]})" if p.name in what else
                                          "  (one row's cutouts and PDF)"))
        return "\n".join(lines)


def run_demo(out, n=None, progress=None, n_rows_figures=3):
    """Run the photo-z job on the bundled sample sky over loopback services.

    Parameters
    ----------
    out : str or path-like
        Output directory (created if needed; the demo's files in it are replaced).
    n : int, optional
        Rows (default: every sample galaxy plus the special rows; see
        `demo_positions`).
    progress : bool, optional
        Show the progress bar (default: on a terminal).
    n_rows_figures : int
        Rows drawn with their cutouts and PDF (``row_NNN.png``).

    Returns
    -------
    `DemoResult`
    """
    import contextlib
    import tempfile
    import time

    from .atomic import atomic_path
    from .config import conf
    from .cutouts import Mantis
    from .tableio import write_table
    from .metrics import photoz_metrics
    from .pdf import RedshiftPDF
    from .simulate import SampleSky
    from .logger import quiet_cutout_summaries
    from .table import add_redshift_columns, table_coordinates
    from .testing import SurveyServer
    from .plotting import save_figure
    from .visualization import plot_photoz_summary, plot_redshift_row

    out = Path(out)
    sky = SampleSky()
    table = demo_table(n, sky=sky)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    files = []
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(SurveyServer(sky=sky, latency=0.0))
        stack.enter_context(server.configure(conf))
        cache_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="astro_mantis_demo_"))
        stack.enter_context(conf.set_temp("cache_dir", cache_dir))
        stack.enter_context(quiet_cutout_summaries())
        add_redshift_columns(table, ebv=("ebv_csfd", "ebv_planck"), progress=progress)
        requests = dict(server.counts)
        # figures of the first rows, from the cached cutouts
        coords, good = table_coordinates(table)
        for i in range(min(n_rows_figures, len(table))):
            cut = Mantis.get_cutouts(coords[i], progress=False) if good[i] else None
            fig = plot_redshift_row(table, i, cutout=cut, z_spec="z_true")
            note = str(table["note"][i])
            fig.suptitle(f"row {i}" + (f": {note}" if note else "")
                         + (f"  (true z {table['z_true'][i]:.3f}, {table['type'][i]})"
                            if good[i] else ""), fontsize="medium")
            path = out / f"row_{i:03d}.png"
            save_figure(fig, path, dpi=72)
            files.append(path)
    est = ~np.ma.getmaskarray(table["z_mean"])
    ztrue = np.ma.filled(np.ma.asarray(table["z_true"], dtype=float), np.nan)
    pdf = RedshiftPDF.from_table(table[est])
    metrics = photoz_metrics(np.asarray(table[POINT_COLUMN][est]), ztrue[est], pdf=pdf,
                             n_bootstrap=200, seed=0)
    mt = Table({"metric": list(metrics.keys()),
                "value": [float(v) for v in metrics.values()],
                "error": [float(metrics.errors.get(k, np.nan)) for k in metrics.keys()]})
    mt.meta.update({"n": int(metrics.n), "data": "SIMULATED galaxies of the bundled sample "
                    "sky (astro_mantis.simulate), not the real sky",
                    "point_estimate": POINT_COLUMN, "model": table.meta.get("z_model")})
    with atomic_path(out / METRICS_NAME) as tmp:
        mt.write(tmp, format="ascii.ecsv")
    fig = plot_photoz_summary(table[est], z_spec="z_true")
    fig.suptitle("astro-mantis demo: mantis-mini on the bundled sample sky (simulated galaxies)",
                 fontsize="medium")
    save_figure(fig, out / SUMMARY_FIGURE, dpi=72)
    write_table(table, out / TABLE_NAME, overwrite=True)
    files = [out / TABLE_NAME, out / METRICS_NAME, out / SUMMARY_FIGURE] + files
    return DemoResult(table=table, metrics=metrics, files=files,
                      seconds=time.perf_counter() - t0, requests=requests, out=out)
