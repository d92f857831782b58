# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Every matplotlib drawing of the package, at the level of arrays.

The public plots stay where users find them, beside what they draw
(`RedshiftPDF.plot <astro_mantis.RedshiftPDF.plot>`,
`MultiSurveyCutout.plot <astro_mantis.MultiSurveyCutout.plot>`,
`astro_mantis.metrics.plot_pit`, `astro_mantis.visualization.plot_redshift_row`,
`astro_mantis.spectro.plot_spectrum`, the ``plot_*`` functions of
`astro_mantis.explain`, the web service's PNG panels and the ``astro-mantis explain``
figures). Each reads its own objects and calls a function here with numbers, arrays
and strings; this module is the only one of the package that imports matplotlib
(``tests/test_architecture.py`` checks it), and only inside its functions, so that
importing any module never loads matplotlib. It sits in the ground layer and imports
nothing of the package but `astro_mantis.atomic` (`save_figure` writes a file whole or not
at all): constants such as the redshift range come from the callers.

Figures are made one way, by `get_axes`, `get_figure` and `subplots`: an Axes or
Figure that is given is drawn into and returned; otherwise a new
`matplotlib.figure.Figure` is made. The functions that return an Axes made for the
caller (`pdf_histogram`, `zphot_zspec`, `pit_histogram`, `nz_histogram`,
`survey_shares`, `layer_probes`, `weight_spectra`, `spectral_history`) and
`image_panels` and `examples` make theirs with pyplot, as the public plots always
have, so that ``plt.show()`` and notebooks show them; `save_figure` closes such a
figure once it is written.
"""
import os
import re
import textwrap

import numpy as np

__all__ = ["get_axes", "get_figure", "subplots", "save_figure", "figure_file_name",
           "figure_formats", "set_labels",
           "pdf_histogram", "zphot_zspec", "pit_histogram", "nz_histogram", "image_panels",
           "redshift_row", "spectrum", "survey_shares", "layer_probes", "weight_spectra",
           "spectral_history", "examples", "SURVEY_COLOURS"]

#: Colours of the three surveys' curves (GALEX, Pan-STARRS, unWISE) in `survey_shares`.
SURVEY_COLOURS = ("tab:purple", "tab:green", "tab:red")


# -- figures -------------------------------------------------------------------------
def get_figure(fig=None, figsize=None, pyplot=False, **kwargs):
    """The given figure, or a new one.

    Parameters
    ----------
    fig : `matplotlib.figure.Figure` or `matplotlib.figure.SubFigure`, optional
        Returned as it is when given.
    figsize : tuple of float, optional
        Size in inches of a new figure (matplotlib's default otherwise).
    pyplot : bool
        Make the new figure with `matplotlib.pyplot.figure` (registered with pyplot,
        so ``plt.show()`` and notebooks show it) instead of a bare
        `matplotlib.figure.Figure`.
    **kwargs
        Passed to the new figure (e.g. ``layout="constrained"``).

    Returns
    -------
    `matplotlib.figure.Figure`
    """
    if fig is not None:
        return fig
    if pyplot:
        import matplotlib.pyplot as plt

        return plt.figure(figsize=figsize, **kwargs)
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, **kwargs)


def get_axes(ax=None, figsize=None, pyplot=False):
    """The given axes, or the axes of a new figure (see `get_figure`).

    Parameters
    ----------
    ax : `matplotlib.axes.Axes`, optional
        Returned as it is when given.
    figsize : tuple of float, optional
        Size in inches of a new figure.
    pyplot : bool
        Make the new figure with pyplot (see `get_figure`).

    Returns
    -------
    `matplotlib.axes.Axes`
    """
    if ax is not None:
        return ax
    return get_figure(figsize=figsize, pyplot=pyplot).subplots()


def subplots(nrows=1, ncols=1, fig=None, figsize=None, pyplot=False, **kwargs):
    """A grid of axes in the given figure, or in a new one (see `get_figure`).

    Parameters
    ----------
    nrows, ncols : int
        Shape of the grid.
    fig : `matplotlib.figure.Figure`, optional
        Figure to lay the axes out in.
    figsize : tuple of float, optional
        Size in inches of a new figure.
    pyplot : bool
        Make the new figure with pyplot.
    **kwargs
        Passed to a new figure (e.g. ``layout="constrained"``).

    Returns
    -------
    fig : `matplotlib.figure.Figure`
    axes : `matplotlib.axes.Axes` or `numpy.ndarray` of them
        As `matplotlib.figure.Figure.subplots` returns them (one Axes for a 1 x 1 grid).
    """
    fig = get_figure(fig, figsize=figsize, pyplot=pyplot, **kwargs)
    return fig, fig.subplots(nrows, ncols)


def save_figure(fig, target, **kwargs):
    """Write a figure, and close it if pyplot holds it (so that a job leaks no figure).

    Parameters
    ----------
    fig : `matplotlib.figure.Figure`
    target : str or path-like or file-like
        Where to write (as for `matplotlib.figure.Figure.savefig`: a name without a
        suffix and no ``format`` gets the default format's suffix). A file is written
        atomically (`astro_mantis.atomic`): an existing one is replaced whole or not
        at all.
    **kwargs
        Passed to `matplotlib.figure.Figure.savefig` (``dpi``, ``format``,
        ``bbox_inches``, ...).

    Returns
    -------
    `matplotlib.figure.Figure`
        The figure.
    """
    if isinstance(target, (str, os.PathLike)):
        from .atomic import atomic_path

        name = os.fsdecode(target)
        if kwargs.get("format") is None and not os.path.splitext(name)[1][1:]:
            # the name matplotlib gives the file (the temporary file has another suffix)
            name = figure_file_name(name)
            kwargs["format"] = os.path.splitext(name)[1][1:]
        with atomic_path(name) as tmp:
            fig.savefig(tmp, **kwargs)
    else:
        fig.savefig(target, **kwargs)
    if getattr(fig.canvas, "manager", None) is not None:  # a pyplot figure
        import matplotlib.pyplot as plt

        plt.close(fig)
    return fig


def figure_file_name(name):
    """The name `save_figure` writes a figure under: ``name``, or with the default
    format's suffix (``savefig.format``, e.g. ``.png``) where it has none.

    Parameters
    ----------
    name : str or path-like

    Returns
    -------
    str
    """
    from matplotlib import rcParams

    name = os.fsdecode(name)
    if os.path.splitext(name)[1][1:]:
        return name
    return name.rstrip(".") + "." + rcParams["savefig.format"]


def figure_formats():
    """The figure file formats matplotlib writes, by file name suffix.

    Lets a command check its output's name before any work (`save_figure` picks the
    format from the name).

    Returns
    -------
    dict
        Suffix without the dot (``"png"``, ``"pdf"``, ``"svg"`` ...) → description.
    """
    from matplotlib.backend_bases import FigureCanvasBase

    return dict(FigureCanvasBase.get_supported_filetypes())


def set_labels(ax, xlabel=None, ylabel=None, title=None, **kwargs):
    """Set the axis labels and the title that are given, leave the others.

    Parameters
    ----------
    ax : `matplotlib.axes.Axes`
    xlabel, ylabel, title : str, optional
    **kwargs
        Text properties of the title (e.g. ``fontsize``).

    Returns
    -------
    `matplotlib.axes.Axes`
    """
    if xlabel is not None:
        ax.set_xlabel(xlabel)
    if ylabel is not None:
        ax.set_ylabel(ylabel)
    if title is not None:
        ax.set_title(title, **kwargs)
    return ax


def _finite(values):
    values = np.asarray(values, dtype=np.float64).ravel()
    return values[np.isfinite(values)]


# -- redshifts -----------------------------------------------------------------------
def pdf_histogram(edges, values, ax=None, interval=None, level=0.68, mean=None, median=None,
                  mode=None, z_true=None, label=None, **kwargs):
    """One redshift PDF as a histogram, with its summary statistics.

    Parameters
    ----------
    edges : array-like
        Bin edges, shape ``(M + 1,)``; they also set the x range.
    values : array-like
        Density in each bin, shape ``(M,)``.
    ax : `matplotlib.axes.Axes`, optional
        Axes to draw into; new ones (pyplot, 6 x 3.5 inches) are made otherwise.
    interval : (float, float), optional
        A central credible interval to shade.
    level : float
        Its probability, for the legend.
    mean, median, mode : float, optional
        Point estimates to mark (solid, dashed and dotted lines).
    z_true : float, optional
        A true (e.g. spectroscopic) redshift to mark; NaN marks nothing.
    label : str, optional
        Legend label of the PDF line (default ``"PDF"``).
    **kwargs
        Passed to `matplotlib.axes.Axes.stairs` for the PDF line.

    Returns
    -------
    `matplotlib.axes.Axes`
    """
    ax = get_axes(ax, (6, 3.5), pyplot=True)
    edges = np.asarray(edges, dtype=np.float64)
    kwargs.setdefault("color", "k")
    kwargs.setdefault("linewidth", 1.2)
    ax.stairs(np.asarray(values, dtype=np.float64), edges, label=label or "PDF", **kwargs)
    if interval is not None:
        lo, hi = interval
        ax.axvspan(lo, hi, color="C0", alpha=0.2, linewidth=0,
                   label=f"{level:.0%} interval [{lo:.3f}, {hi:.3f}]")
    for val, name, style, color in ((mean, "mean", "-", "C1"), (median, "median", "--", "C2"),
                                    (mode, "mode", ":", "C4")):
        if val is not None:
            ax.axvline(val, linestyle=style, color=color, label=f"{name} {val:.3f}")
    if z_true is not None and np.isfinite(z_true):
        ax.axvline(z_true, color="C3", linewidth=2, label=f"true z {z_true:.3f}")
    ax.set_xlim(edges[0], edges[-1])
    ax.set_ylim(bottom=0)
    ax.set_xlabel("redshift $z$")
    ax.set_ylabel("probability density $p(z)$")
    ax.legend(fontsize="small", frameon=False)
    return ax


def zphot_zspec(z_phot, z_spec, zmax, ax=None, kind=None, annotation=None, outlier=0.15,
                **kwargs):
    """Point estimates against true redshifts, with the one-to-one and outlier lines.

    Parameters
    ----------
    z_phot, z_spec : array-like
        Point estimates and true redshifts, shape ``(N,)``, all finite.
    zmax : float
        Upper limit of both axes.
    ax : `matplotlib.axes.Axes`, optional
        Axes to draw into; new ones (pyplot, 4.5 x 4.5 inches) are made otherwise.
    kind : {"scatter", "hexbin"}, optional
        Default: points up to 5000 objects, a logarithmic hexbin density above.
    annotation : str, optional
        Text for the upper left corner (e.g. N and NMAD).
    outlier : float
        The outlier lines are :math:`z_\\mathrm{phot} = z_\\mathrm{spec} \\pm
        \\mathrm{outlier}\\,(1 + z_\\mathrm{spec})`.
    **kwargs
        Passed to `matplotlib.axes.Axes.scatter` or `matplotlib.axes.Axes.hexbin`.

    Returns
    -------
    `matplotlib.axes.Axes`

    Raises
    ------
    ValueError
        If ``kind`` is neither ``"scatter"`` nor ``"hexbin"``.
    """
    zp = np.asarray(z_phot, dtype=np.float64)
    zs = np.asarray(z_spec, dtype=np.float64)
    if kind is None:
        kind = "scatter" if len(zp) <= 5000 else "hexbin"
    if kind not in ("scatter", "hexbin"):
        raise ValueError(f"kind must be 'scatter' or 'hexbin', got {kind!r}")
    ax = get_axes(ax, (4.5, 4.5), pyplot=True)
    if kind == "scatter":
        kwargs.setdefault("s", 4)
        kwargs.setdefault("alpha", 0.5)
        kwargs.setdefault("color", "C0")
        kwargs.setdefault("linewidths", 0)
        ax.scatter(zs, zp, **kwargs)
    else:
        kwargs.setdefault("gridsize", 80)
        kwargs.setdefault("bins", "log")
        kwargs.setdefault("cmap", "Blues")
        kwargs.setdefault("mincnt", 1)
        ax.hexbin(zs, zp, extent=(0, zmax, 0, zmax), **kwargs)
    x = np.array([0.0, zmax])
    ax.plot(x, x, color="k", linewidth=1)
    for sign in (-1, 1):
        ax.plot(x, x + sign * outlier * (1 + x), color="C3", linestyle="--", linewidth=1,
                label=rf"$\pm {outlier:g}\,(1+z)$" if sign > 0 else None)
    if annotation:
        ax.text(0.04, 0.96, annotation, transform=ax.transAxes, va="top", ha="left",
                fontsize="small")
    ax.set_xlim(0, zmax)
    ax.set_ylim(0, zmax)
    ax.set_aspect("equal")
    ax.set_xlabel(r"$z_\mathrm{spec}$")
    ax.set_ylabel(r"$z_\mathrm{phot}$")
    ax.legend(loc="lower right", fontsize="small", frameon=False)
    return ax


def pit_histogram(pit, ax=None, bins=20, band_sigma=2.0, **kwargs):
    """Outline histogram of PIT values, with the uniform level and its scatter band.

    Parameters
    ----------
    pit : array-like
        PIT values in [0, 1]; NaN are skipped.
    ax : `matplotlib.axes.Axes`, optional
        Axes to draw into; new ones (pyplot, 5 x 3.5 inches) are made otherwise.
    bins : int
        Number of histogram bins on [0, 1].
    band_sigma : float
        Half-width of the shaded band around 1 in binomial standard deviations of a
        calibrated histogram's bars (0: no band).
    **kwargs
        Passed to `matplotlib.axes.Axes.hist`.

    Returns
    -------
    `matplotlib.axes.Axes`
    """
    ax = get_axes(ax, (5, 3.5), pyplot=True)
    u = _finite(pit)
    n = len(u)
    # an outline, not filled bars: over the grey band, filled translucent bars show in
    # two tones that read as two things
    kwargs.setdefault("color", "C0")
    kwargs.setdefault("histtype", "step")
    kwargs.setdefault("linewidth", 1.8)
    kwargs.setdefault("label", f"PIT (N = {n})")
    kwargs.setdefault("zorder", 2)
    ax.hist(u, bins=bins, range=(0, 1), density=True, **kwargs)
    if band_sigma and n:
        # the expected scatter of a calibrated histogram: a light band behind the
        # outline of the bars, so neither hides the other
        p = 1.0 / bins
        half = band_sigma * np.sqrt(p * (1 - p) / n) / p
        ax.axhspan(1 - half, 1 + half, color="0.85", linewidth=0, zorder=1,
                   label=rf"uniform $\pm{band_sigma:g}\sigma$")
    ax.axhline(1.0, color="0.3", linewidth=1, linestyle="--", zorder=2)
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("PIT")
    ax.set_ylabel("density")
    ax.legend(fontsize="small", frameon=False)
    return ax


def nz_histogram(z, zrange, ax=None, bins=40, stacked=None, **kwargs):
    """Histogram of true redshifts, with a stacked PDF on top.

    Parameters
    ----------
    z : array-like
        True redshifts; NaN are skipped.
    zrange : (float, float)
        Range of the histogram and of the x axis.
    ax : `matplotlib.axes.Axes`, optional
        Axes to draw into; new ones (pyplot, 5 x 3.5 inches) are made otherwise.
    bins : int or array-like
        Histogram bins.
    stacked : (array-like, array-like), optional
        Density per bin and bin edges of the average PDF.
    **kwargs
        Passed to `matplotlib.axes.Axes.hist`.

    Returns
    -------
    `matplotlib.axes.Axes`
    """
    ax = get_axes(ax, (5, 3.5), pyplot=True)
    zs = _finite(z)
    kwargs.setdefault("color", "0.6")
    kwargs.setdefault("label", rf"$z_\mathrm{{spec}}$ (N = {len(zs)})")
    ax.hist(zs, bins=bins, range=zrange, density=True, **kwargs)
    if stacked is not None:
        values, edges = stacked
        ax.stairs(values, edges, color="C0", linewidth=1.5, label="stacked PDF")
    ax.set_xlim(*zrange)
    ax.set_xlabel("redshift $z$")
    ax.set_ylabel("$n(z)$ (normalised)")
    ax.legend(fontsize="small", frameon=False)
    return ax


# -- images --------------------------------------------------------------------------
def image_panels(panels, fig=None, shape=None, title=None, stretch="asinh", percent=99.5):
    """Images side by side in grey, each titled; a panel without data shows its message.

    Parameters
    ----------
    panels : sequence of (str, array-like or None, str)
        Per panel: its title, its 2-D image (None, or no finite pixel: no image) and
        the message shown when there is no image (shortened to fit the panel: a URL
        becomes its host, the text at most 60 characters, in lines of 20).
    fig : `matplotlib.figure.Figure` or `matplotlib.figure.SubFigure`, optional
        Figure to draw into; a new one (pyplot, 1.9 x 2.4 inches per panel) is made
        otherwise.
    shape : (int, int), optional
        Rows and columns of panels (default: one row); left-over axes are hidden.
    title : str, optional
        Title above the panels.
    stretch : str
        Stretch passed to `astropy.visualization.simple_norm`.
    percent : float
        Percentile clipping passed to `astropy.visualization.simple_norm`.

    Returns
    -------
    `matplotlib.figure.Figure`
    """
    from astropy.visualization import simple_norm

    panels = list(panels)
    nrows, ncols = shape if shape is not None else (1, max(len(panels), 1))
    if nrows * ncols < len(panels):
        raise ValueError(f"{len(panels)} panels do not fit a {nrows} x {ncols} grid")
    fig = get_figure(fig, figsize=(1.9 * ncols, 2.4 * nrows), pyplot=True)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (label, data, message) in zip(axes, panels):
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(label, fontsize=9)
        data = None if data is None else np.asarray(data)
        if data is None or not np.isfinite(data).any():
            ax.text(0.5, 0.5, _panel_message(message), ha="center", va="center", fontsize=7,
                    transform=ax.transAxes)
            continue
        finite = np.isfinite(data)
        norm = simple_norm(data[finite], stretch, percent=percent) if finite.sum() > 1 else None
        ax.imshow(np.where(finite, data, np.nan), origin="lower", cmap="gray", norm=norm)
    for ax in axes[len(panels):]:
        ax.set_axis_off()
    if title is not None:
        fig.suptitle(title, fontsize=9)
    return fig


_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://([^/\s?#]+)\S*", flags=re.IGNORECASE)


def _panel_message(text, limit=60, width=20):
    """A message short enough for an image panel.

    A failed fetch says why with the URL it asked (hundreds of characters without a
    space), which would run over the neighbouring panels: each URL becomes its host,
    the text is cut to ``limit`` characters (ending with an ellipsis) and wrapped to
    lines of ``width``, long words broken.
    """
    text = _URL.sub(lambda m: m.group(1), " ".join(str(text).split()))
    if len(text) > limit:
        text = text[:limit - 1].rstrip() + "\u2026"
    return textwrap.fill(text, width=width, break_on_hyphens=False) or text


def redshift_row(draw_cutouts=None, draw_pdf=None, title="", caption="", fig=None,
                 no_cutouts="no cutouts (invalid position)",
                 no_pdf="no redshift estimate for this row"):
    """A figure of one object: its cutouts above its redshift PDF.

    Parameters
    ----------
    draw_cutouts : callable, optional
        Draws the cutouts when called as ``draw_cutouts(fig=subfigure)`` with the upper
        subfigure (e.g. `MultiSurveyCutout.plot <astro_mantis.MultiSurveyCutout.plot>`);
        without it the upper part says ``no_cutouts``.
    draw_pdf : callable, optional
        Draws the PDF when called as ``draw_pdf(ax=axes)`` with the lower axes (e.g.
        `RedshiftPDF.plot <astro_mantis.RedshiftPDF.plot>`); without it they say
        ``no_pdf``.
    title : str
        Title of the PDF's axes.
    caption : str
        Small grey text in the lower right corner (e.g. where the cutouts came from).
    fig : `matplotlib.figure.Figure`, optional
        Figure to draw into (a new 14 x 5.5 inch one otherwise).
    no_cutouts, no_pdf : str
        The messages shown in place of the cutouts and of the PDF.

    Returns
    -------
    `matplotlib.figure.Figure`
    """
    fig = get_figure(fig, figsize=(14, 5.5), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.0, 1.5])
    if draw_cutouts is not None:
        draw_cutouts(fig=top)
    else:
        ax = top.subplots()
        ax.set_axis_off()
        ax.text(0.5, 0.5, no_cutouts, ha="center", va="center")
    ax = bottom.subplots()
    if draw_pdf is not None:
        draw_pdf(ax=ax)
    else:
        ax.text(0.5, 0.5, no_pdf, ha="center", va="center", transform=ax.transAxes)
    ax.set_title(title, fontsize="medium")
    fig.text(0.995, 0.005, caption, ha="right", va="bottom", fontsize="x-small", color="0.3")
    return fig


def spectrum(wave, flux, fig=None, lines=(), z_spec=None, z_phot=None, title="",
             flux_label="flux", draw_pdf=None, pdf_xlim=None, pdf_ylim=None, zrange=None):
    """A spectrum with its lines at z_spec and at a photo-z, beside a redshift panel.

    Parameters
    ----------
    wave : array-like
        Observed wavelength in Angstrom, shape ``(N,)``.
    flux : array-like
        Flux to draw (NaN leaves gaps), shape ``(N,)``, in 1e-17 erg/s/cm2/Angstrom.
    fig : `matplotlib.figure.Figure`, optional
        Figure to draw into; a new one is made otherwise (11 x 4.2 inches with the
        redshift panel, 8.5 x 4.2 without).
    lines : sequence of (str, float, str)
        ``(label, rest wavelength in Angstrom, kind)``; ``kind`` ``"emission"`` lines
        are red, the others blue.
    z_spec : float, optional
        Redshift at which the lines are drawn solid and labelled.
    z_phot : float, optional
        Photometric redshift at which they are drawn dashed (labelled when there is no
        ``z_spec``).
    title : str
        Title of the spectrum's axes.
    flux_label : str
        Legend label of the flux.
    draw_pdf : callable, optional
        Draws the redshift PDF in the right panel, called as ``draw_pdf(ax=axes)``;
        ``z_spec`` is marked on top.
    pdf_xlim, pdf_ylim : (float, float), optional
        Limits of the PDF panel.
    zrange : (float, float), optional
        x range of the redshift panel when there is no PDF (only ``z_phot``).

    Returns
    -------
    `matplotlib.figure.Figure`
    """
    wave = np.asarray(wave, dtype=np.float64)
    shown = np.asarray(flux, dtype=np.float64)
    side = draw_pdf is not None or z_phot is not None
    fig = get_figure(fig, figsize=(11 if side else 8.5, 4.2))
    if side:
        grid = fig.add_gridspec(1, 2, width_ratios=(3.2, 1.0), wspace=0.22)
        ax, axp = fig.add_subplot(grid[0]), fig.add_subplot(grid[1])
    else:
        ax, axp = fig.add_subplot(1, 1, 1), None

    ax.plot(wave, shown, color="0.15", linewidth=0.7, label=flux_label)
    finite = shown[np.isfinite(shown)]
    lo, hi = (np.percentile(finite, [0.5, 100.0]) if finite.size else (0.0, 1.0))
    pad = 0.06 * (hi - lo if hi > lo else 1.0)
    ax.set_ylim(lo - pad, hi + 4 * pad)  # room for the line labels above the spectrum
    ax.set_xlim(wave.min(), wave.max())
    top = hi + 3.8 * pad

    def mark(z, style, alpha, label_lines, legend):
        first = True
        for name, rest, kind in lines:
            w = rest * (1.0 + z)
            if not wave.min() <= w <= wave.max():
                continue
            color = "C3" if kind == "emission" else "C0"
            ax.axvline(w, color=color, linestyle=style, linewidth=0.9, alpha=alpha,
                       label=legend if first else None)
            first = False
            if label_lines:
                ax.text(w, top, name, rotation=90, fontsize=7, ha="center", va="top",
                        color=color)

    if z_spec is not None:
        mark(z_spec, "-", 0.8, True, f"lines at z_spec = {z_spec:.4f}")
    if z_phot is not None:
        mark(z_phot, "--", 0.45, z_spec is None, f"lines at photo-z = {z_phot:.3f}")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("observed vacuum wavelength [Å]")
    ax.set_ylabel(r"flux [$10^{-17}$ erg s$^{-1}$ cm$^{-2}$ Å$^{-1}$]")
    ax.legend(fontsize="small", frameon=True, framealpha=0.85, loc="lower right")

    if axp is not None:
        if draw_pdf is not None:
            draw_pdf(ax=axp)
            if z_spec is not None:
                axp.axvline(z_spec, color="C3", linewidth=2, label=f"z_spec {z_spec:.3f}")
            if pdf_xlim is not None:
                axp.set_xlim(*pdf_xlim)
            if pdf_ylim is not None:
                axp.set_ylim(*pdf_ylim)
            axp.legend(fontsize="x-small", frameon=True, framealpha=0.9, loc="upper right")
        else:
            axp.axvline(z_phot, color="C1", label=f"photo-z {z_phot:.3f}")
            if z_spec is not None:
                axp.axvline(z_spec, color="C3", linewidth=2, label=f"z_spec {z_spec:.3f}")
            if zrange is not None:
                axp.set_xlim(*zrange)
            axp.set_yticks([])
            axp.set_xlabel("redshift $z$")
            axp.legend(fontsize="small", frameon=False)
        axp.set_title("redshift PDF" if draw_pdf is not None else "photo-z", fontsize=10)
    return fig


# -- explain -------------------------------------------------------------------------
def survey_shares(z, shares, title="", ax=None):
    """Mean survey shares of the attribution against redshift, with error bars.

    Parameters
    ----------
    z : array-like
        Redshift of each point (e.g. bin centres), shape ``(B,)``.
    shares : mapping of str to (array-like, array-like)
        Per survey, in the order of `SURVEY_COLOURS`: its mean share and standard
        error in each bin.
    title : str
        Title of the axes.
    ax : `matplotlib.axes.Axes`, optional
        Axes to draw into; new ones (pyplot, 5 x 3.2 inches) are made otherwise.

    Returns
    -------
    `matplotlib.axes.Axes`
    """
    ax = get_axes(ax, (5, 3.2), pyplot=True)
    for (name, (mean, err)), colour in zip(shares.items(), SURVEY_COLOURS):
        ax.errorbar(z, mean, yerr=err, marker="o", ms=3, capsize=2, color=colour, label=name)
    ax.set_xlabel("redshift")
    ax.set_ylabel("mean share of |φ|")
    ax.set_ylim(0, 1)
    ax.legend(fontsize="small")
    ax.set_title(title, fontsize="small")
    return ax


def layer_probes(curves, ax=None):
    """Probe R² of each layer against the number of components (log2 x axis).

    Parameters
    ----------
    curves : mapping of str to (array-like, array-like)
        Per layer: the numbers of leading components and the probe R² with each.
    ax : `matplotlib.axes.Axes`, optional
        Axes to draw into; new ones (pyplot, 5 x 3.2 inches) are made otherwise.

    Returns
    -------
    `matplotlib.axes.Axes`
    """
    ax = get_axes(ax, (5, 3.2), pyplot=True)
    for layer, (n_components, r2) in curves.items():
        ax.plot(n_components, r2, marker="o", ms=3, label=layer)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("leading principal components")
    ax.set_ylabel("k-NN probe R² of z")
    ax.legend(fontsize="x-small")
    return ax


def weight_spectra(curves, ax=None):
    """Singular values over their Marchenko–Pastur edge against rank (log-log).

    Parameters
    ----------
    curves : sequence of (array-like, str)
        Per layer: its singular values divided by the edge, in rank order, and its
        legend label. The layers take the colours of matplotlib's colour cycle.
    ax : `matplotlib.axes.Axes`, optional
        Axes to draw into; new ones (pyplot, 5.5 x 3.4 inches) are made otherwise.

    Returns
    -------
    `matplotlib.axes.Axes`
    """
    import matplotlib

    ax = get_axes(ax, (5.5, 3.4), pyplot=True)
    for colour, (ratio, label) in zip(matplotlib.rcParams["axes.prop_cycle"].by_key()["color"],
                                      curves):
        ratio = np.asarray(ratio, dtype=np.float64)
        ax.plot(np.arange(1, len(ratio) + 1), ratio, color=colour, label=label)
    ax.axhline(1.0, color="k", ls="--", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("rank")
    ax.set_ylabel("singular value / MP edge")
    ax.legend(fontsize="xx-small")
    return ax


def spectral_history(epochs, outliers, alpha_median, ax=None):
    """Outlier count (left axis) and median tail exponent (right axis) against epoch.

    Parameters
    ----------
    epochs, outliers, alpha_median : array-like
        Per epoch: its number, the singular values above the MP edge over all layers,
        and the median tail exponent α.
    ax : `matplotlib.axes.Axes`, optional
        Axes to draw into; new ones (pyplot, 5 x 3.2 inches) are made otherwise.

    Returns
    -------
    `matplotlib.axes.Axes`
        The left axes (the right one is its twin).
    """
    ax = get_axes(ax, (5, 3.2), pyplot=True)
    ax.plot(epochs, outliers, marker="o", ms=3, color="tab:blue")
    ax.set_xlabel("epoch")
    ax.set_ylabel("singular values above the MP edge", color="tab:blue")
    twin = ax.twinx()
    twin.plot(epochs, alpha_median, marker="s", ms=3, color="tab:red")
    twin.set_ylabel("median tail exponent α", color="tab:red")
    return ax


def examples(query, query_title, rows, fig=None):
    """A query image in the first column, rows of other images beside it.

    Parameters
    ----------
    query : array-like, shape (H, W, 3)
        The query's colour image.
    query_title : str
    rows : sequence of sequence of (array-like, str)
        Per row (e.g. supporting, opposing), its images (H, W, 3) and their titles;
        shorter rows leave their last panels empty.
    fig : `matplotlib.figure.Figure`, optional
        Figure to draw into; a new one (pyplot, 1.6 inches per column, 3.6 high) is
        made otherwise.

    Returns
    -------
    `matplotlib.figure.Figure`
    """
    rows = [list(r) for r in rows]
    k = max((len(r) for r in rows), default=0)
    fig = get_figure(fig, figsize=(1.6 * (k + 1), 3.6), pyplot=True)
    axes = fig.subplots(max(len(rows), 1), k + 1, squeeze=False)
    axes[0, 0].imshow(query, origin="lower")
    axes[0, 0].set_title(query_title, fontsize="small")
    for ax in axes[1:, 0]:
        ax.axis("off")
    for i, row in enumerate(rows):
        for j in range(k):
            ax = axes[i, j + 1]
            if j >= len(row):
                ax.axis("off")
                continue
            image, label = row[j]
            ax.imshow(image, origin="lower")
            ax.set_title(label, fontsize="x-small")
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    return fig
