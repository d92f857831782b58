# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""astro_mantis.plotting: every figure of the package, drawn from arrays."""
import io

import matplotlib
import numpy as np
import pytest
from numpy.testing import assert_allclose

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.colors import same_color  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Polygon, Rectangle, StepPatch  # noqa: E402

from astro_mantis import plotting  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    before = set(plt.get_fignums())
    yield
    for num in set(plt.get_fignums()) - before:
        plt.close(num)


def _legend(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def _step_heights(polygon, edges):
    """Heights of a step-histogram outline over each bin."""
    xy = polygon.get_xy()
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        tops = [a[1] for a, b in zip(xy[:-1], xy[1:])
                if np.isclose(a[0], lo) and np.isclose(b[0], hi) and np.isclose(a[1], b[1])]
        out.append(tops[0])
    return np.array(out)


def _is_pyplot(fig):
    return fig.number in plt.get_fignums() if hasattr(fig, "number") else False


# -- figures -------------------------------------------------------------------------
def test_get_figure_reuses_a_given_one_and_makes_a_bare_or_pyplot_one():
    given = Figure()
    assert plotting.get_figure(given, figsize=(1, 1)) is given
    bare = plotting.get_figure(figsize=(3, 2), layout="constrained")
    assert isinstance(bare, Figure) and not _is_pyplot(bare)
    assert tuple(bare.get_size_inches()) == (3, 2)
    assert bare.get_layout_engine() is not None
    managed = plotting.get_figure(figsize=(4, 1), pyplot=True)
    assert _is_pyplot(managed) and tuple(managed.get_size_inches()) == (4, 1)


def test_get_axes_and_subplots():
    ax = Figure().subplots()
    assert plotting.get_axes(ax) is ax
    new = plotting.get_axes(figsize=(2, 5))
    assert new is not ax and tuple(new.figure.get_size_inches()) == (2, 5)
    assert not _is_pyplot(new.figure)
    fig, axes = plotting.subplots(2, 3, figsize=(6, 4))
    assert axes.shape == (2, 3) and all(a.figure is fig for a in axes.ravel())
    given = Figure()
    fig, axes = plotting.subplots(1, 2, fig=given)
    assert fig is given and len(given.axes) == 2


def test_save_figure_writes_and_closes_pyplot_figures(tmp_path):
    fig = plotting.get_figure(figsize=(2, 2), pyplot=True)
    fig.subplots().plot([0, 1], [1, 0])
    num = fig.number
    assert plotting.save_figure(fig, tmp_path / "a.png", dpi=50) is fig
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert num not in plt.get_fignums()
    buf = io.BytesIO()
    bare = plotting.get_figure(figsize=(2, 2))
    plotting.save_figure(bare, buf, format="png", dpi=50)
    assert buf.getvalue()[:4] == b"\x89PNG"


def test_save_figure_replaces_a_file_whole_or_not_at_all(tmp_path, monkeypatch):
    """A figure written to a path goes through a temporary file: a write that fails
    midway leaves the old figure and no temporary file (savefig once wrote into the
    target itself), and the file names are matplotlib's (a default suffix added)."""
    target = tmp_path / "fig.png"
    plotting.save_figure(plotting.get_figure(figsize=(2, 2)), target, dpi=20)
    old = target.read_bytes()
    real = Figure.savefig

    def torn(self, fname, *args, **kwargs):
        with open(fname, "wb") as fh:
            fh.write(old[:20])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", torn)
    with pytest.raises(OSError, match="No space left"):
        plotting.save_figure(plotting.get_figure(figsize=(3, 3)), target, dpi=20)
    assert target.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["fig.png"]
    monkeypatch.setattr(Figure, "savefig", real)
    for name in ("noext", "dot.", "a.b.pdf"):
        plotting.save_figure(plotting.get_figure(figsize=(2, 2)), str(tmp_path / name))
    plotting.save_figure(plotting.get_figure(figsize=(2, 2)), tmp_path / "svg", format="svg")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.b.pdf", "dot.png", "fig.png", "noext.png", "svg"]
    assert (tmp_path / "a.b.pdf").read_bytes()[:4] == b"%PDF"
    assert b"<svg" in (tmp_path / "svg").read_bytes()[:500]


def test_set_labels_sets_only_what_is_given():
    ax = plotting.get_axes()
    ax.set_xlabel("keep")
    assert plotting.set_labels(ax, ylabel="y", title="t", fontsize=7) is ax
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("keep", "y", "t")
    assert ax.title.get_fontsize() == 7


# -- redshifts -----------------------------------------------------------------------
def test_pdf_histogram_draws_the_values_and_the_statistics():
    edges = np.linspace(0, 2, 11)
    values = np.arange(10.0)
    ax = plotting.pdf_histogram(edges, values, interval=(0.4, 1.2), mean=0.8, median=0.7,
                                mode=1.9, z_true=0.75, color="r")
    assert _is_pyplot(ax.figure) and tuple(ax.figure.get_size_inches()) == (6, 3.5)
    stairs = [p for p in ax.patches if isinstance(p, StepPatch)]
    assert len(stairs) == 1
    assert_allclose(stairs[0].get_data().values, values)
    assert_allclose(stairs[0].get_data().edges, edges)
    assert ax.get_xlim() == (0.0, 2.0)
    assert [ln.get_xdata()[0] for ln in ax.lines] == [0.8, 0.7, 1.9, 0.75]
    assert _legend(ax) == ["PDF", "68% interval [0.400, 1.200]", "mean 0.800",
                           "median 0.700", "mode 1.900", "true z 0.750"]
    assert ax.get_xlabel() == "redshift $z$"


def test_pdf_histogram_without_statistics_into_given_axes():
    ax0 = Figure().subplots()
    ax = plotting.pdf_histogram([0, 1, 2], [0.5, 0.5], ax=ax0, z_true=np.nan, label="obj 3",
                                level=0.95, interval=(0.1, 1.9))
    assert ax is ax0
    assert not ax.lines  # no point estimate, a NaN truth is not drawn
    assert _legend(ax) == ["obj 3", "95% interval [0.100, 1.900]"]


def test_zphot_zspec_points_lines_and_annotation():
    zs = np.array([0.1, 0.5, 0.9])
    zp = np.array([0.12, 0.4, 1.3])
    ax = plotting.zphot_zspec(zp, zs, 1.5, annotation="N = 3", outlier=0.2)
    assert _is_pyplot(ax.figure)
    (points,) = ax.collections
    assert_allclose(points.get_offsets(), np.column_stack([zs, zp]))
    assert len(ax.lines) == 3
    assert_allclose(ax.lines[0].get_ydata(), [0, 1.5])
    assert_allclose(ax.lines[1].get_ydata(), [-0.2, 1.5 - 0.2 * 2.5])
    assert_allclose(ax.lines[2].get_ydata(), [0.2, 1.5 + 0.2 * 2.5])
    assert [t.get_text() for t in ax.texts] == ["N = 3"]
    assert ax.get_xlim() == (0, 1.5) and ax.get_ylim() == (0, 1.5)
    assert _legend(ax) == [r"$\pm 0.2\,(1+z)$"]


def test_zphot_zspec_kind():
    ax0 = Figure().subplots()
    ax = plotting.zphot_zspec(np.full(10, 0.5), np.full(10, 0.5), 1.6, ax=ax0, kind="hexbin")
    assert ax is ax0 and isinstance(ax.collections[0], PolyCollection)
    assert not ax.texts  # no annotation given
    with pytest.raises(ValueError, match="kind must be 'scatter' or 'hexbin'"):
        plotting.zphot_zspec([0.1], [0.1], 1.6, ax=ax0, kind="contour")


def test_pit_histogram_outline_is_the_density_histogram():
    rng = np.random.default_rng(3)
    u = np.append(rng.uniform(size=200), [np.nan, np.nan])
    ax = plotting.pit_histogram(u, bins=8)
    (outline,) = [p for p in ax.patches if isinstance(p, Polygon)]
    heights, edges = np.histogram(u[np.isfinite(u)], bins=8, range=(0, 1), density=True)
    assert_allclose(_step_heights(outline, edges), heights)
    assert not outline.get_fill()
    (band,) = [p for p in ax.patches if isinstance(p, Rectangle)]
    half = 2.0 * np.sqrt((1 / 8) * (7 / 8) / 200) * 8
    assert_allclose([band.get_y(), band.get_y() + band.get_height()], [1 - half, 1 + half])
    assert _legend(ax)[0] == "PIT (N = 200)"
    ax = plotting.pit_histogram(u, bins=8, band_sigma=0, ax=Figure().subplots())
    assert not [p for p in ax.patches if isinstance(p, Rectangle)]


def test_nz_histogram_bars_and_stacked_pdf():
    z = np.array([0.1, 0.15, 0.3, 0.9, np.nan, 1.5])
    stacked = (np.array([0.5, 0.75]), np.array([0.0, 0.8, 1.6]))
    ax = plotting.nz_histogram(z, (0.0, 1.6), bins=4, stacked=stacked)
    bars = [p for p in ax.patches if isinstance(p, Rectangle)]
    heights, _ = np.histogram(z[np.isfinite(z)], bins=4, range=(0, 1.6), density=True)
    assert_allclose([b.get_height() for b in bars], heights)
    (line,) = [p for p in ax.patches if isinstance(p, StepPatch)]
    assert_allclose(line.get_data().values, stacked[0])
    assert ax.get_xlim() == (0.0, 1.6)
    assert _legend(ax) == [r"$z_\mathrm{spec}$ (N = 5)", "stacked PDF"]


# -- images --------------------------------------------------------------------------
def test_image_panels_images_titles_and_messages():
    image = np.arange(16.0).reshape(4, 4)
    panels = [("a\nx", image, "unused"), ("b\ny", None, "out of footprint"),
              ("c\nz", np.full((4, 4), np.nan), "all NaN")]
    fig = plotting.image_panels(panels, title="cutout")
    assert _is_pyplot(fig) and tuple(fig.get_size_inches()) == pytest.approx((1.9 * 3, 2.4))
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["a\nx", "b\ny", "c\nz"]
    assert len(axes[0].images) == 1 and not axes[1].images and not axes[2].images
    assert_allclose(axes[0].images[0].get_array(), image)
    assert [t.get_text() for t in axes[1].texts] == ["out of footprint"]
    assert [t.get_text() for t in axes[2].texts] == ["all NaN"]
    assert fig.get_suptitle() == "cutout"


def test_image_panels_in_a_grid_hide_the_rest():
    fig = Figure()
    out = plotting.image_panels([("p", np.ones((3, 3)), "")] * 4, fig=fig, shape=(2, 3))
    assert out is fig and len(fig.axes) == 6
    assert [ax.axison for ax in fig.axes] == [True] * 4 + [False] * 2
    with pytest.raises(ValueError, match="5 panels do not fit a 2 x 2 grid"):
        plotting.image_panels([("p", None, "")] * 5, fig=Figure(), shape=(2, 2))


def test_redshift_row_calls_the_drawers_or_says_why_not():
    seen = {}

    def cutouts(fig):
        seen["top"] = fig
        fig.subplots(1, 2)

    def pdf(ax):
        seen["ax"] = ax
        ax.plot([0, 1], [0, 1])

    fig = plotting.redshift_row(cutouts, pdf, title="row 3", caption="from the cache")
    assert isinstance(fig, Figure) and not _is_pyplot(fig)
    assert seen["top"] in fig.subfigs and seen["ax"].get_title() == "row 3"
    assert len(seen["ax"].lines) == 1
    assert [t.get_text() for t in fig.texts] == ["from the cache"]
    fig = plotting.redshift_row(fig=Figure(), no_cutouts="bad position", no_pdf="no PDF")
    top, bottom = fig.subfigs
    assert [t.get_text() for t in top.axes[0].texts] == ["bad position"]
    assert [t.get_text() for t in bottom.axes[0].texts] == ["no PDF"]


def test_spectrum_flux_lines_and_panels():
    wave = np.linspace(4000, 8000, 200)
    flux = np.sin(wave / 300)
    lines = [("Ha", 6563.0, "emission"), ("Ca K", 3934.0, "absorption"),
             ("far", 20000.0, "emission")]
    fig = plotting.spectrum(wave, flux, lines=lines, z_spec=0.1, z_phot=0.12,
                            title="SDSS spectrum 1-2-3", flux_label="flux (5-pixel mean)",
                            zrange=(0.0, 1.6))
    assert isinstance(fig, Figure) and tuple(fig.get_size_inches()) == (11, 4.2)
    ax, axp = fig.axes
    assert_allclose(ax.lines[0].get_ydata(), flux)
    # Ha and Ca K fall in the range at both redshifts, "far" at neither
    marks = [ln.get_xdata()[0] for ln in ax.lines[1:]]
    assert_allclose(marks, [6563 * 1.1, 3934 * 1.1, 6563 * 1.12, 3934 * 1.12])
    assert [t.get_text() for t in ax.texts] == ["Ha", "Ca K"]  # labelled at z_spec only
    assert ax.get_title() == "SDSS spectrum 1-2-3" and _legend(ax)[0] == "flux (5-pixel mean)"
    assert axp.get_title() == "photo-z" and axp.get_xlim() == (0.0, 1.6)
    assert [ln.get_xdata()[0] for ln in axp.lines] == [0.12, 0.1]


def test_spectrum_with_a_pdf_panel_or_none():
    wave = np.linspace(4000, 8000, 50)
    drawn = []
    fig = plotting.spectrum(wave, np.ones(50), draw_pdf=lambda ax: drawn.append(ax),
                            z_spec=0.3, pdf_xlim=(0.2, 0.5), pdf_ylim=(0, 4))
    ax, axp = fig.axes
    assert drawn == [axp] and axp.get_title() == "redshift PDF"
    assert axp.get_xlim() == (0.2, 0.5) and axp.get_ylim() == (0, 4)
    assert [ln.get_xdata()[0] for ln in axp.lines] == [0.3]
    fig = plotting.spectrum(wave, np.ones(50))
    assert len(fig.axes) == 1 and tuple(fig.get_size_inches()) == (8.5, 4.2)


# -- explain -------------------------------------------------------------------------
def test_survey_shares_error_bars_per_survey():
    z = np.array([0.2, 0.6, 1.0])
    shares = {"galex": ([0.1, 0.2, 0.3], [0.01, 0.02, 0.03]),
              "panstarrs": ([0.6, 0.5, 0.4], [0.05, 0.05, 0.05]),
              "unwise": ([0.3, 0.3, 0.3], [0.02, 0.02, 0.02])}
    ax = plotting.survey_shares(z, shares, title="mini: ig on mean")
    assert _is_pyplot(ax.figure)
    data = [ln for ln in ax.lines if ln.get_marker() == "o"]
    assert len(data) == 3
    for line, (mean, _), colour in zip(data, shares.values(), plotting.SURVEY_COLOURS):
        assert_allclose(np.asarray(line.get_xdata(), dtype=float), z)
        assert_allclose(np.asarray(line.get_ydata(), dtype=float), mean)
        assert same_color(line.get_color(), colour)
    assert _legend(ax) == list(shares)
    assert ax.get_title() == "mini: ig on mean" and ax.get_ylim() == (0, 1)


def test_layer_probes_one_curve_per_layer():
    curves = {"conv1": ([1, 2, 4], [0.1, 0.3, 0.5]), "fc": ([1, 2, 4], [0.6, 0.7, 0.8])}
    ax0 = Figure().subplots()
    ax = plotting.layer_probes(curves, ax=ax0)
    assert ax is ax0 and [ln.get_label() for ln in ax.lines] == ["conv1", "fc"]
    assert_allclose(ax.lines[1].get_ydata(), [0.6, 0.7, 0.8])
    assert ax.get_xscale() == "log"


def test_weight_spectra_ratios_against_rank():
    curves = [(np.array([3.0, 1.5, 0.5]), "a"), (np.array([2.0, 0.2]), "b")]
    ax = plotting.weight_spectra(curves)
    lines = ax.lines[:2]
    assert_allclose(lines[0].get_xdata(), [1, 2, 3])
    assert_allclose(lines[0].get_ydata(), [3.0, 1.5, 0.5])
    assert_allclose(lines[1].get_ydata(), [2.0, 0.2])
    cycle = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    assert [ln.get_color() for ln in lines] == cycle[:2]
    assert_allclose(ax.lines[2].get_ydata(), [1, 1])  # the MP edge
    assert ax.get_xscale() == ax.get_yscale() == "log"


def test_spectral_history_two_axes():
    ax = plotting.spectral_history([1, 2, 3], [5, 7, 9], [4.0, 3.5, 3.0])
    assert_allclose(ax.lines[0].get_ydata(), [5, 7, 9])
    (twin,) = [a for a in ax.figure.axes if a is not ax]
    assert_allclose(twin.lines[0].get_ydata(), [4.0, 3.5, 3.0])
    assert twin.get_ylabel() == "median tail exponent α"


def test_examples_query_beside_its_rows():
    img = np.zeros((4, 4, 3))
    rows = [[(img, "supp 1"), (img, "supp 2")], [(img, "oppo 1")]]
    fig = plotting.examples(img + 0.5, "query", rows)
    assert _is_pyplot(fig) and tuple(fig.get_size_inches()) == pytest.approx((4.8, 3.6))
    axes = np.array(fig.axes).reshape(2, 3)
    assert axes[0, 0].get_title() == "query"
    assert_allclose(axes[0, 0].images[0].get_array(), img + 0.5)
    assert [a.get_title() for a in axes[0, 1:]] == ["supp 1", "supp 2"]
    assert axes[1, 1].get_title() == "oppo 1"
    assert not axes[1, 0].axison and not axes[1, 2].axison


def test_image_panels_shorten_and_wrap_long_messages():
    """A failed fetch's message holds the URL it asked: hundreds of characters without a
    space, which ran over the neighbouring panels. It is shortened (the URL to its host,
    at most 60 characters) and wrapped to fit the panel."""
    url = ("http://127.0.0.1:41234/cgi-bin/fitscut.cgi?red=/data/ps1/skycell.1234.056.stk."
           "g.unconv.fits&x=1234.5&y=2345.6&size=60&wcs=1&format=fits")
    long_word = "x" * 150
    messages = [f"failed: HTTP 503 from {url} (after 4 attempts)", long_word,
                "out of footprint"]
    panels = [(f"s\nb{i}", None, messages[i % 3]) for i in range(9)]
    fig = Figure(figsize=(14, 2.3), layout="constrained")
    plotting.image_panels(panels, fig=fig)
    fig.draw_without_rendering()
    renderer = fig._get_renderer()
    texts = [ax.texts[0] for ax in fig.axes]
    first = texts[0].get_text()
    assert first == "failed: HTTP 503\nfrom 127.0.0.1:41234\n(after 4 attempts)"
    assert texts[2].get_text() == "out of footprint"
    for ax, text in zip(fig.axes, texts):
        shown = text.get_text()
        assert len(shown.replace("\n", "")) <= 60
        assert max(len(line) for line in shown.split("\n")) <= 20
        # the text stays within its own panel
        box, frame = text.get_window_extent(renderer), ax.get_window_extent(renderer)
        assert frame.x0 - 1 <= box.x0 and box.x1 <= frame.x1 + 1, shown
    assert texts[1].get_text().replace("\n", "").endswith("\u2026")


def test_figure_file_name_is_the_name_save_figure_writes(tmp_path):
    import matplotlib

    from astro_mantis.plotting import figure_file_name, figure_formats, get_figure, save_figure

    assert figure_file_name("a/b.pdf") == "a/b.pdf"
    with matplotlib.rc_context({"savefig.format": "svg"}):
        assert figure_file_name(tmp_path / "fig") == str(tmp_path / "fig.svg")
        assert figure_file_name("fig.") == "fig.svg"
        save_figure(get_figure(), tmp_path / "fig")
    assert (tmp_path / "fig.svg").is_file() and not (tmp_path / "fig").exists()
    assert "png" in figure_formats() and "svg" in figure_formats()
