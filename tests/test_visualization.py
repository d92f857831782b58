# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Figures of tables with redshift columns."""
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.table import MaskedColumn, Table
from matplotlib.figure import Figure

from astro_mantis import Mantis, MantisFlag
from astro_mantis.metrics import pit
from astro_mantis.pdf import Z_CENTERS, RedshiftPDF
from astro_mantis.visualization import (plot_photoz_summary, plot_pit, plot_redshift_row,
                                        plot_zphot_zspec, reference_redshifts)


@pytest.fixture
def table():
    """Gaussian PDFs at known means; z_spec drawn from them; one unestimated row."""
    rng = np.random.default_rng(0)
    mu = rng.uniform(0.1, 1.4, 60)
    pdf = RedshiftPDF(np.exp(-0.5 * ((Z_CENTERS[None] - mu[:, None]) / 0.05) ** 2))
    t = Table({"ra": np.linspace(150, 151, 60), "dec": np.full(60, 2.0)})
    for name, col in pdf.to_table_columns(masked=True).items():
        t[name] = col
    t["z_flags"] = np.zeros(60, np.int32)
    t["z_spec"] = MaskedColumn(mu + rng.normal(0, 0.05, 60), mask=np.zeros(60, bool))
    t["z_spec"].mask[3] = True
    for name in t.colnames:  # a row not estimated: every redshift column masked
        if name.startswith("z_") and name not in ("z_flags", "z_spec"):
            t[name].mask[4] = True
    t["z_flags"][4] = int(MantisFlag.NOT_ESTIMATED)
    return t


def test_reference_rows(table):
    rows, zp, zs = reference_redshifts(table)
    assert 3 not in rows and 4 not in rows and len(rows) == 58
    # the default point estimate is the recommended one, the PDF median
    assert np.allclose(zp, table["z_median"][rows]) and np.allclose(zs, table["z_spec"][rows])
    _, zp_mean, _ = reference_redshifts(table, point="mean")
    assert np.allclose(zp_mean, table["z_mean"][rows])
    with pytest.raises(KeyError, match="'zs' not found"):
        reference_redshifts(table, z_spec="zs")


def test_zphot_zspec_and_pit(table):
    fig = Figure()
    ax = plot_zphot_zspec(table, ax=fig.subplots())
    offsets = ax.collections[0].get_offsets()
    assert len(offsets) == 58
    rows, zp, zs = reference_redshifts(table)
    assert np.allclose(np.sort(offsets[:, 0]), np.sort(zs))
    ax2 = plot_pit(table, ax=Figure().subplots(), bins=10)
    # the histogram is one step outline: vertices (0, 0), (0, h1), (0.1, h1), (0.1, h2)...
    outline = ax2.patches[0].get_xy()
    heights = outline[1:20:2, 1]
    expected = pit(RedshiftPDF.from_table(table[rows]), zs)
    hist, _ = np.histogram(expected, bins=10, range=(0, 1), density=True)
    assert np.allclose(heights, hist)
    fig = plot_photoz_summary(table)
    assert len(fig.axes) == 3
    empty = table[:0]
    with pytest.raises(ValueError, match="no row has both"):
        plot_zphot_zspec(empty)


def test_redshift_row_with_and_without_cutouts(table, survey_server):
    fig = plot_redshift_row(table, 0, z_spec="z_spec")
    axes = fig.get_axes()
    assert len(axes) == 10  # nine bands and the PDF
    pdf_ax = axes[-1]
    assert "flags 0" in pdf_ax.get_title()
    # the PDF drawn is the row's, with the reference redshift marked
    assert np.allclose(pdf_ax.patches[0].get_data()[0], table["z_pdf"][0], rtol=1e-6)
    labels = [t.get_text() for t in pdf_ax.get_legend().get_texts()]
    assert any(lab.startswith("true z") for lab in labels)
    # a given cutout is used as is (no request)
    survey_server.reset()
    cut = Mantis.get_cutouts(SkyCoord(150.0, 2.0, unit="deg"), progress=False)
    n = sum(survey_server.counts.values())
    plot_redshift_row(table, 1, cutout=cut)
    assert sum(survey_server.counts.values()) == n
    # an unestimated row says so
    fig = plot_redshift_row(table, 4, cutout=cut)
    assert any("no redshift estimate" in t.get_text() for t in fig.get_axes()[-1].texts)
    with pytest.raises(IndexError, match="row 60 does not exist"):
        plot_redshift_row(table, 60)


def test_redshift_row_fetches_at_the_position_in_the_recorded_units(survey_server,
                                                                     monkeypatch):
    """A table made with ra_unit='hourangle' records it in z_pos; the figure fetches its
    cutouts there (before, the unit was dropped and the hours were read as degrees)."""
    from astro_mantis import add_redshift_columns

    t = Table({"ra_h": [150.3 / 15.0], "dec": [2.1]})  # hours, no unit on the column
    add_redshift_columns(t, ra="ra_h", ra_unit="hourangle", progress=False, ebv=np.zeros(1))
    assert "ra_unit=hourangle" in t.meta["z_pos"]
    asked = []
    real = Mantis.get_cutouts

    def spy(coords, *args, **kwargs):
        asked.append(coords)
        return real(coords, *args, **kwargs)

    monkeypatch.setattr(Mantis, "get_cutouts", spy)
    plot_redshift_row(t, 0)
    assert len(asked) == 1
    assert asked[0].ra.deg == pytest.approx(150.3) and asked[0].dec.deg == pytest.approx(2.1)
    # a unit recorded for the declination too, with the columns named by the caller
    t.meta["z_pos"] = "ra=ra_h,dec=dec_h,ra_unit=hourangle,dec_unit=hourangle"
    t["dec_h"] = t["dec"] / 15.0
    plot_redshift_row(t, 0, ra="ra_h", dec="dec_h")
    assert asked[-1].dec.deg == pytest.approx(2.1)


def test_a_table_made_from_some_local_tiles_is_drawn_from_them_alone(tmp_path):
    """A table made from local Pan-STARRS tiles alone: its figure cuts the Pan-STARRS
    panels from those tiles and shows GALEX and unWISE 'not fetched', as the model saw
    them. (The table once recorded the services for GALEX and unWISE, and the figure
    then fetched those from the services and asked the PS1 service at 'tiles:DIR',
    failing every Pan-STARRS panel.) A table recorded that old way is drawn the same."""
    from astro_mantis import add_redshift_columns, conf
    from astro_mantis.simulate import ImagingConfig, MockSky, MockSkyConfig
    from astro_mantis.simulate.render import BANDS
    from astro_mantis.simulate.tiles import TileSky, write_tiles
    from astro_mantis.sources import LocalTiles
    from astro_mantis.table import recorded_services
    from astro_mantis.testing import SurveyServer

    cat = Table({"ra": [185.0], "dec": [25.0], "r_half_disk": [1.0], "r_half_bulge": [0.4],
                 "bulge_frac": [0.3], "q": [0.6], "pa": [50.0]})
    for band in BANDS:
        cat[f"mag_{band}"] = [18.0]
    sky = MockSky(MockSkyConfig(imaging=ImagingConfig(
        star_density=0, neighbour_density=0, galex_hole_fraction=0, ps1_nan_fraction=0)),
        catalog=cat, seed=1)
    root = tmp_path / "tiles"
    write_tiles(sky, root, (184.98, 185.02), (24.98, 25.02))
    t = Table({"ra": [185.0], "dec": [25.0]})
    with SurveyServer(sky=TileSky(root)) as srv, srv.configure(conf), \
            conf.set_temp("cache_dir", str(tmp_path / "cache")):
        with LocalTiles(panstarrs=root / "panstarrs", index_dir=tmp_path / "index") as tiles:
            add_redshift_columns(t, ebv=0.02, progress=False, source=tiles,
                                 precision="float32")
        flags = MantisFlag(int(t["z_flags"][0]))
        assert MantisFlag.GALEX_MISSING in flags and MantisFlag.UNWISE_MISSING in flags
        assert MantisFlag.PANSTARRS_MISSING not in flags
        ps1 = f"tiles:{root / 'panstarrs'}"
        assert recorded_services(t) == {"galex": ("none", ""), "panstarrs": (ps1, "local"),
                                        "unwise": ("none", "")}
        assert "galex=none" in t.meta["z_srv"] and "unwise=none" in t.meta["z_srv"]
        old = t.copy()  # as recorded before: the services next to the tiles
        old.meta["z_srv"] = (f"galex={srv.legacysurvey_url}|galex; panstarrs={ps1}|local; "
                             f"unwise={srv.legacysurvey_url}|unwise-neo7")
        assert recorded_services(old) == recorded_services(t)
        for table in (t, old):
            srv.reset()
            fig = plot_redshift_row(table, 0)
            assert sum(srv.counts.values()) == 0  # nothing asked of any service
            panels = fig.get_axes()[:-1]
            assert len(panels) == 9
            for ax in panels:
                said = [x.get_text() for x in ax.texts]
                if ax.get_title().startswith("panstarrs"):  # an image, no message
                    assert len(ax.images) == 1 and said == [], said
                else:
                    assert not ax.images and any("not fetched" in s for s in said), said
            assert sum(ax.get_title().startswith("panstarrs") for ax in panels) == 5
            caption = " ".join(x.get_text() for x in fig.texts)
            assert "local tiles" in caption and str(root / "panstarrs") in caption
            assert "galex, unwise not fetched" in caption and "http" not in caption
