# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Figures of a table with redshift columns (as written by `~astro_mantis.add_redshift_columns`).

* `plot_redshift_row`: one row's nine cutout panels above its redshift PDF;
* `plot_zphot_zspec`: point estimates against reference (spectroscopic or true)
  redshifts, with the usual metrics;
* `plot_pit`: the PIT histogram of the PDFs at the reference redshifts;
* `plot_photoz_summary`: the last two side by side, with n(z).

They read the table and draw through `astro_mantis.plotting`; they return the figure
or axes, so they work in scripts, notebooks and tests alike (nothing is shown).
"""
import functools
import os

import numpy as np

from .metrics import pit, plot_nz
from .metrics import plot_pit as _plot_pit_values
from .metrics import plot_zphot_zspec as _plot_points
from .pdf import RECOMMENDED_POINT_ESTIMATE, RedshiftPDF

__all__ = ["plot_redshift_row", "plot_zphot_zspec", "plot_pit", "plot_photoz_summary",
           "reference_redshifts"]


def _column(table, name, what):
    if name not in table.colnames:
        raise KeyError(f"{what} column {name!r} not found; the table has columns: "
                       f"{', '.join(table.colnames)}")
    return np.ma.filled(np.ma.asarray(table[name], dtype=float), np.nan)


def reference_redshifts(table, z_spec="z_spec", prefix="z_", point=RECOMMENDED_POINT_ESTIMATE):
    """Rows usable for a comparison, with their point estimates and reference redshifts.

    Parameters
    ----------
    table : `~astropy.table.Table`
        Table with the redshift columns and a reference redshift column.
    z_spec : str
        Column of reference (spectroscopic or true) redshifts; masked or NaN values
        are left out.
    prefix : str
        Prefix of the redshift columns.
    point : str
        Point estimate: ``median`` (the default, the recommended one: see the
        evaluation guide), ``mean`` (the Mantis Shrimp paper's) or ``mode``.

    Returns
    -------
    rows : `numpy.ndarray` of int
        Rows with both an estimate and a reference redshift.
    z_phot, z_ref : `numpy.ndarray`
        Their point estimates and reference redshifts.
    """
    z_ref = _column(table, z_spec, "reference redshift")
    z_phot = _column(table, f"{prefix}{point}", "point estimate")
    rows = np.flatnonzero(np.isfinite(z_ref) & np.isfinite(z_phot))
    return rows, z_phot[rows], z_ref[rows]


def plot_zphot_zspec(table, z_spec="z_spec", prefix="z_", point=RECOMMENDED_POINT_ESTIMATE,
                     ax=None, **kwargs):
    """Point estimates against reference redshifts, with the outlier boundaries.

    The corner gives N, the NMAD and the outlier fraction :math:`f_{0.15}` (the share
    with :math:`|z_\\mathrm{phot} - z| > 0.15 (1 + z)`), as
    `astro_mantis.metrics.plot_zphot_zspec` draws them; no bias is drawn
    (`astro_mantis.metrics.photoz_metrics` gives it and the other metrics).

    Parameters
    ----------
    table : `~astropy.table.Table`
        Table with the redshift columns and ``z_spec``.
    z_spec : str
        Column of reference redshifts (spectroscopic, or the truth of a mock).
    prefix : str
        Prefix of the redshift columns.
    point : str
        ``median`` (the default, recommended), ``mean`` or ``mode``.
    ax : `matplotlib.axes.Axes`, optional
        Axes to draw into.
    **kwargs
        Passed to `astro_mantis.metrics.plot_zphot_zspec`.

    Returns
    -------
    `matplotlib.axes.Axes`
    """
    rows, zp, zs = reference_redshifts(table, z_spec, prefix, point)
    if rows.size == 0:
        raise ValueError("no row has both an estimate and a reference redshift")
    from .plotting import set_labels

    ax = _plot_points(zp, zs, ax=ax, **kwargs)
    return set_labels(ax, xlabel=f"reference redshift ({z_spec})",
                      ylabel=f"photo-z ({prefix}{point})")


def plot_pit(table, z_spec="z_spec", prefix="z_", ax=None, **kwargs):
    """Histogram of the PDFs' PIT values at the reference redshifts.

    Parameters
    ----------
    table : `~astropy.table.Table`
        Table with a ``{prefix}pdf`` column and ``z_spec``.
    z_spec : str
        Column of reference redshifts.
    prefix : str
        Prefix of the redshift columns.
    ax : `matplotlib.axes.Axes`, optional
        Axes to draw into.
    **kwargs
        Passed to `astro_mantis.metrics.plot_pit`.

    Returns
    -------
    `matplotlib.axes.Axes`
    """
    rows, _, zs = reference_redshifts(table, z_spec, prefix, "mean")
    if rows.size == 0:
        raise ValueError("no row has both an estimate and a reference redshift")
    pdf = RedshiftPDF.from_table(table[rows], prefix=prefix)
    return _plot_pit_values(pit(pdf, zs), ax=ax, **kwargs)


def plot_photoz_summary(table, z_spec="z_spec", prefix="z_", fig=None):
    """Three panels: photo-z vs reference, PIT histogram, and n(z).

    Parameters
    ----------
    table : `~astropy.table.Table`
        Table with the redshift columns and ``z_spec``.
    z_spec : str
        Column of reference redshifts.
    prefix : str
        Prefix of the redshift columns.
    fig : `matplotlib.figure.Figure`, optional
        Figure to draw into (a new 13 x 4.2 inch one otherwise).

    Returns
    -------
    `matplotlib.figure.Figure`
    """
    from .plotting import subplots

    fig, (ax1, ax2, ax3) = subplots(1, 3, fig=fig, figsize=(13, 4.2), layout="constrained")
    plot_zphot_zspec(table, z_spec, prefix, ax=ax1)
    plot_pit(table, z_spec, prefix, ax=ax2)
    rows, _, zs = reference_redshifts(table, z_spec, prefix)
    plot_nz(zs, pdf=RedshiftPDF.from_table(table[rows], prefix=prefix), ax=ax3)
    return fig


def plot_redshift_row(table, index, cutout=None, prefix="z_", z_spec=None, coord=None,
                      ra="ra", dec="dec", fig=None):
    """One row: its cutouts in the nine bands above its redshift PDF.

    Parameters
    ----------
    table : `~astropy.table.Table`
        Table with the redshift columns.
    index : int
        Row to show.
    cutout : `~astro_mantis.MultiSurveyCutout` or str or path-like, optional
        The row's cutouts, or a cutout file written by ``astro-mantis cutouts`` /
        `~astro_mantis.MultiSurveyCutout.write`. Otherwise they are fetched with
        `Mantis.get_cutouts <astro_mantis.MantisClass.get_cutouts>` (cache on) from
        the services the table records (``{prefix}srv``, see
        `~astro_mantis.table.recorded_services`), never silently from others; a table
        made from local tiles has them cut from the tile directories it records, its
        surveys without local tiles shown ``not fetched`` as the model saw them; a
        table that records none is drawn from the configured services. The figure
        says where the panels came from. Cutouts that cannot be had (a service no
        longer running, offline) leave their panels with the reason.
    prefix : str
        Prefix of the redshift columns.
    z_spec : str, optional
        Column of a reference redshift to mark on the PDF.
    coord, ra, dec : str
        Position columns, as for `~astro_mantis.add_redshift_columns` (only used to fetch
        the cutouts). By default those the table records (``{prefix}pos``), read in the
        units recorded with them (``ra_unit``, ``dec_unit``).
    fig : `matplotlib.figure.Figure`, optional
        Figure to draw into (a new 14 x 5.5 inch one otherwise).

    Returns
    -------
    `matplotlib.figure.Figure`
    """
    from .flags import MantisFlag

    n = len(table)
    if not -n <= int(index) < n:
        raise IndexError(f"row {index} does not exist in a table of {n} rows")
    index = int(index) % n
    source = "cutouts: given"
    if isinstance(cutout, (str, os.PathLike)):
        from .multicutout import MultiSurveyCutout

        source = f"cutouts: file {os.path.basename(str(cutout))}"
        cutout = MultiSurveyCutout.read(cutout)
    elif cutout is None:
        cutout, source = _fetch_row_cutout(table, index, prefix, coord, ra, dec)
    pdf = RedshiftPDF.from_table(table[index:index + 1], prefix=prefix)
    z_ref = None
    if z_spec is not None:
        z_ref = float(_column(table, z_spec, "reference redshift")[index])
    flags = MantisFlag(int(table[f"{prefix}flags"][index])) if f"{prefix}flags" in \
        table.colnames else MantisFlag.NONE
    from .plotting import redshift_row

    return redshift_row(
        draw_cutouts=cutout.plot if cutout is not None else None,
        draw_pdf=functools.partial(pdf.plot, z_true=z_ref) if pdf.valid[0] else None,
        title=f"row {index}: flags {int(flags)}"
        + (f" ({flags.name})" if flags and flags.name else ""),
        caption=source, fig=fig,
        no_cutouts=source if cutout is None and source.startswith("no cutouts")
        else "no cutouts (invalid position)",
        no_pdf="no redshift estimate for this row")


def _fetch_row_cutout(table, index, prefix, coord, ra, dec):
    """Fetch a row's cutouts from the services its table records: (cutout, source text)."""
    import contextlib

    from .config import conf
    from .cutouts import Mantis
    from .surveys import get_survey
    from .table import recorded_services, run_settings, table_coordinates

    settings = run_settings(table, prefix)
    pos = str(settings.get("pos", ""))
    ra_unit = dec_unit = None
    if coord is None and pos.startswith("coord="):
        coord = pos[len("coord="):]
    elif pos.startswith("ra="):
        # "ra=RA,dec=DEC[,ra_unit=U][,dec_unit=U]": the columns, and the units they were
        # read in when they carry none (a table made with ra_unit="hourangle")
        parts = dict(p.split("=", 1) for p in pos.split(",") if "=" in p)
        if (ra, dec) == ("ra", "dec"):
            ra, dec = parts.get("ra", ra), parts.get("dec", dec)
        if ra == parts.get("ra"):
            ra_unit = parts.get("ra_unit") or None
        if dec == parts.get("dec"):
            dec_unit = parts.get("dec_unit") or None
    coords, good = table_coordinates(table[index:index + 1], coord=coord, ra=ra, dec=dec,
                                     ra_unit=ra_unit, dec_unit=dec_unit)
    if not good[0]:
        return None, "no cutouts (invalid position)"
    services = recorded_services(table, prefix)
    surveys = tuple(services) or None
    tiles = {name: url[len("tiles:"):] for name, (url, _layer) in services.items()
             if url.startswith("tiles:")}
    unused = [name for name, (url, _layer) in services.items() if url == "none"]
    if tiles:
        # a run on local tiles: cut the surveys it had tiles for from them, and ask for
        # the others too, which LocalTiles reports "not fetched" as the run saw them
        from .sources import LocalTiles

        with LocalTiles(**tiles) as local:
            cut = Mantis.get_cutouts(coords[0], surveys=surveys, progress=False, source=local)
        source = "cutouts: cut from the local tiles the table records, " + ", ".join(
            f"{name} {path}" for name, path in tiles.items())
        if unused:
            source += (f"; {', '.join(unused)} not fetched (the run had no local tiles "
                       "for them)")
        return cut, source
    # surveys recorded "none" were not fetched by the run: they are not fetched now either
    fetched = {name: entry for name, entry in services.items() if name not in unused}
    if services and not fetched:
        return None, "no cutouts: the run fetched none (" + ", ".join(unused) + " not fetched)"
    with contextlib.ExitStack() as stack:
        for name, (url, _layer) in fetched.items():
            stack.enter_context(conf.set_temp(get_survey(name).url_config, url))
        hosts = sorted({url for url, _ in fetched.values()})
        source = ("cutouts: fetched from the services the table records, " + ", ".join(hosts)
                  if services else "cutouts: fetched now from the configured services "
                  "(the table records none)")
        if unused:
            source += f"; {', '.join(unused)} not fetched (as in the run)"
        kwargs = {"surveys": tuple(fetched)} if surveys else {}
        cut = Mantis.get_cutouts(coords[0], progress=False, **kwargs)
    return cut, source
