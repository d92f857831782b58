"""Tests of astro_mantis.sources: LocalTiles and its footprint index.

Tiles come from the mock sky (`astro_mantis.simulate.tiles.write_tiles`), small; the
network comparisons go through real sockets to `astro_mantis.testing.SurveyServer` on
127.0.0.1 serving `TileSky` (the services' behaviour over the same tiles).
"""
import math
import os

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.nddata import Cutout2D
from astropy.table import Table

pytest.importorskip("galsim")

from astro_mantis import Mantis, MultiSurveyCutout, conf  # noqa: E402
from astro_mantis.cutouts import FetchStatus  # noqa: E402
from astro_mantis.flags import MantisFlag  # noqa: E402
from astro_mantis.logger import log  # noqa: E402
from astro_mantis.simulate import ImagingConfig, MockSky, MockSkyConfig  # noqa: E402
from astro_mantis.simulate.render import BANDS  # noqa: E402
from astro_mantis.simulate.service_format import fitscut_corner  # noqa: E402
from astro_mantis.simulate.tiles import TileSky, write_tiles  # noqa: E402
from astro_mantis.sources import LocalTiles, TileIndex  # noqa: E402
from astro_mantis.surveys import SURVEYS, SurveyImage  # noqa: E402
from astro_mantis.testing import SurveyServer  # noqa: E402

RA, DEC = 185.0, 25.0
PATCH = ((184.97, 185.03), (24.97, 25.03))


def make_sky(ra, dec, n=40, seed=3, **imaging):
    rng = np.random.default_rng(seed)
    cat = Table({"ra": (ra + rng.uniform(-0.03, 0.03, n)) % 360.0,
                 "dec": dec + rng.uniform(-0.03, 0.03, n),
                 "r_half_disk": rng.uniform(0.5, 2.0, n), "r_half_bulge": np.full(n, 0.4),
                 "bulge_frac": np.full(n, 0.3), "q": np.full(n, 0.6), "pa": np.full(n, 50.0)})
    for band in BANDS:
        cat[f"mag_{band}"] = rng.uniform(17.0, 20.0, n)
    settings = dict(star_density=0, neighbour_density=0, galex_hole_fraction=0,
                    ps1_nan_fraction=0)
    settings.update(imaging)
    return MockSky(MockSkyConfig(imaging=ImagingConfig(**settings)), catalog=cat, seed=seed)


def tiles_of(root, index_dir, **kw):
    return LocalTiles(panstarrs=root / "panstarrs", galex=root / "galex",
                      unwise=root / "unwise", index_dir=index_dir, **kw)


@pytest.fixture(scope="module")
def tile_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiles")
    write_tiles(make_sky(RA, DEC), root, *PATCH)
    return root


@pytest.fixture(scope="module")
def local(tile_root, tmp_path_factory):
    with tiles_of(tile_root, tmp_path_factory.mktemp("index")) as tiles:
        yield tiles


def inner_grid(tiles, survey, frac=0.5):
    """A grid and a position well inside it (fraction `frac` of the way to its corner)."""
    grid = tiles.indexes[survey].grids[0]
    ny, nx = grid.shape
    return grid, grid.wcs.pixel_to_world(nx / 2 * frac + 3.3, ny / 2 * frac + 7.6)


# --------------------------------------------------------------- equality with the network
def test_local_equals_loopback_service_pixel_for_pixel_panstarrs(local, tile_root):
    """fitscut cuts the skycell on its own grid: the same pixels, WCS and zero points."""
    rng = np.random.default_rng(0)
    coords = SkyCoord(RA + rng.uniform(-0.02, 0.02, 6), DEC + rng.uniform(-0.02, 0.02, 6),
                      unit="deg")
    mine = local.get_cutouts(coords, surveys=("panstarrs",), progress=False)
    with SurveyServer(sky=TileSky(tile_root)) as srv, srv.configure(conf):
        theirs = Mantis.get_cutouts(coords, surveys=("panstarrs",), cache=False,
                                    progress=False)
    for a, b in zip(mine, theirs):
        assert a.status == b.status == {"panstarrs": "ok"}
        x, y = a["panstarrs"], b["panstarrs"]
        assert x.data.dtype == y.data.dtype == np.float32
        assert np.array_equal(x.data, y.data, equal_nan=True)
        assert x.unit == y.unit and x.bands == y.bands
        np.testing.assert_allclose(x.zeropoints, y.zeropoints, rtol=0, atol=1e-9)
        # the same WCS numbers; the service labels its cutouts RADESYS = 'FK5', a local
        # cut keeps the tile's label (none in these tiles: ICRS to astropy)
        corners = (np.array([0, 169, 0, 169]), np.array([0, 0, 169, 169]))
        sa = SkyCoord(*x.wcs.all_pix2world(*corners, 0), unit="deg")
        sb = SkyCoord(*y.wcs.all_pix2world(*corners, 0), unit="deg")
        assert np.all(sa.separation(sb).to_value("arcsec") < 1e-6)
        assert y.header["RADESYS"] == "FK5" and "RADESYS" not in x.header
        assert x.meta["EXPTIMEG"] == y.meta["EXPTIMEG"]
        assert a.flags == b.flags


def test_local_reads_positions_to_7_decimals_as_the_service(local, tile_root):
    """A position within 1e-3 pixel of where fitscut's window moves by one pixel: the
    service reads it to 7 decimals, as the request sends it; so does the local cut, and
    the two stay pixel-identical."""
    centre = SkyCoord(RA, DEC, unit="deg")
    grid = local.tiles_at("panstarrs", centre)[0]
    w, found = grid.wcs, None
    x_c, y_c = (float(v) for v in w.all_world2pix(RA, DEC, 0))
    for k in range(400):  # fitscut's window moves where x - 84.5 is an integer
        x = math.floor(x_c) + (k % 20) + 0.5 + 2e-4
        y = y_c + (k // 20) * 0.37
        ra, dec = (float(v) for v in w.all_pix2world(x, y, 0))
        xr, _ = w.all_world2pix(float(f"{ra:.7f}"), float(f"{dec:.7f}"), 0)
        coord = SkyCoord(ra, dec, unit="deg")
        if math.floor(x - 84.5) != math.floor(float(xr) - 84.5) \
                and local.tiles_at("panstarrs", coord)[0] is grid:
            found = coord
            break
    assert found is not None
    mine = local.get_cutouts(found, surveys=("panstarrs",))["panstarrs"]
    with SurveyServer(sky=TileSky(tile_root)) as srv, srv.configure(conf):
        theirs = Mantis.get_cutouts(found, surveys=("panstarrs",), cache=False,
                                    progress=False)["panstarrs"]
    assert np.array_equal(mine.data, theirs.data, equal_nan=True)
    assert mine.header["CRPIX1"] == theirs.header["CRPIX1"]
    assert mine.header["CRPIX2"] == theirs.header["CRPIX2"]


@pytest.mark.parametrize("survey", ["galex", "unwise"])
def test_local_matches_viewer_where_grids_coincide(local, tile_root, survey):
    """A request on a tile pixel corner: the viewer's grid is the tile's; same pixels."""
    grid, _ = inner_grid(local, survey)
    ny, nx = grid.shape
    coord = grid.wcs.pixel_to_world(nx // 2 - 0.5, ny // 2 - 0.5)
    mine = local.get_cutouts(coord, surveys=(survey,))
    with SurveyServer(sky=TileSky(tile_root)) as srv, srv.configure(conf):
        theirs = Mantis.get_cutouts(coord, surveys=(survey,), cache=False, progress=False)
    a, b = mine[survey].data, theirs[survey].data
    # the request travels as RA, Dec with 7 decimals: up to 2.4e-4 of a GALEX pixel off
    # the tile's grid, which bilinear resampling turns into 1e-3 of the image's range
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-3 * np.ptp(b))
    assert not np.allclose(a, np.roll(b, 1, axis=-1), rtol=0, atol=1e-3 * np.ptp(b))
    np.testing.assert_allclose(mine[survey].zeropoints, theirs[survey].zeropoints)


@pytest.mark.parametrize("survey", ["galex", "unwise"])
def test_local_matches_viewer_resampling_within_tolerance(local, tile_root, survey):
    """Anywhere else the viewer resamples; the local cut resampled the same way agrees."""
    from reproject import reproject_interp

    grid, coord = inner_grid(local, survey)
    mine = local.get_cutouts(coord, surveys=(survey,))[survey]
    with SurveyServer(sky=TileSky(tile_root)) as srv, srv.configure(conf):
        theirs = Mantis.get_cutouts(coord, surveys=(survey,), cache=False,
                                    progress=False)[survey]
    # the local cut is on the tile's grid: the position lies within half a pixel of centre
    x, y = mine.wcs.world_to_pixel(coord)
    assert abs(x - 15.5) <= 0.5 and abs(y - 15.5) <= 0.5
    # the raw arrays differ by the sub-pixel shift ...
    assert not np.allclose(mine.data, theirs.data, rtol=1e-3)
    # ... and agree once the local cut is resampled onto the viewer's grid (interior)
    for k in range(len(mine.bands)):
        again, _ = reproject_interp((mine.data[k], mine.wcs), theirs.wcs, shape_out=(32, 32),
                                    order="bilinear")
        inner = (slice(2, -2), slice(2, -2))
        peak = np.abs(theirs.data[k]).max()
        np.testing.assert_allclose(again[inner], theirs.data[k][inner], rtol=0,
                                   atol=1e-4 * peak)
    # and the flux agrees to the few per cent a half-pixel shift of the window allows
    assert np.sum(mine.data) == pytest.approx(np.sum(theirs.data), rel=0.1)


@pytest.mark.parametrize("survey", ["panstarrs", "unwise"])
def test_cut_equals_cutout2d_or_fitscut(local, survey):
    """The fast cut: same pixels and WCS as Cutout2D's window (GALEX, unWISE) or as the
    window fitscut starts at (Pan-STARRS; the loopback's own statement of its rule),
    inside and across the tile edge."""
    s = SURVEYS[survey]
    size, band = s.size, s.bands[0]
    grid = local.indexes[survey].grids[0]
    path, entry = grid.bands[band]
    data = fits.getdata(path)
    ny, nx = grid.shape
    differs = False
    for px, py in [(nx / 2 + 0.3, ny / 2 - 0.2), (10.2, 20.7), (nx - 3.4, ny - 60.1),
                   (nx / 2 + 0.7, ny / 2 + 0.6)]:
        coord = grid.wcs.pixel_to_world(px, py)
        cutout2d = Cutout2D(data, (px, py), size, wcs=grid.wcs, mode="partial",
                            fill_value=np.nan)
        ref = cutout2d
        if survey == "panstarrs":
            x0, y0 = fitscut_corner(px, size), fitscut_corner(py, size)
            ref = Cutout2D(data, (x0 + size / 2, y0 + size / 2), size, wcs=grid.wcs,
                           mode="partial", fill_value=np.nan)
            differs |= (x0, y0) != (np.ceil(px - size / 2), np.ceil(py - size / 2))
        got = local._cut(s, local.indexes[survey], 0, px, py, coord.ra.deg, coord.dec.deg)
        assert np.array_equal(got[band], ref.data.astype(np.float32), equal_nan=True)
        np.testing.assert_allclose(got.wcs.wcs.crpix, ref.wcs.wcs.crpix, rtol=0, atol=1e-9)
        np.testing.assert_allclose(got.wcs.wcs.crval, ref.wcs.wcs.crval, rtol=0, atol=1e-12)
    assert differs == (survey == "panstarrs")  # the two rules part where frac(x) < 0.5


# --------------------------------------------------------------- the result contract
def test_result_contract_matches_network_path(local):
    coords = SkyCoord([RA, RA, np.nan, RA + 0.01], [DEC, DEC, DEC, DEC], unit="deg")
    cuts = local.get_cutouts(coords, progress=False)
    assert isinstance(cuts, list) and len(cuts) == 4
    assert all(isinstance(c, MultiSurveyCutout) for c in cuts)
    assert list(cuts[0].surveys) == ["galex", "panstarrs", "unwise"]
    assert cuts[0]["panstarrs"] is cuts[1]["panstarrs"]  # a repeat is cut once
    img = cuts[0]["galex"]
    assert isinstance(img, SurveyImage)
    assert img.shape == (2, 32, 32) and img.bands == ("NUV", "FUV")
    assert cuts[0]["unwise"].shape == (2, 32, 32)
    assert cuts[0]["panstarrs"].shape == (5, 170, 170)
    assert cuts[0]["unwise"].unit == SURVEYS["unwise"].unit
    np.testing.assert_allclose(cuts[0]["unwise"].zeropoints, [25.199, 25.839])
    np.testing.assert_allclose(img.zeropoints, [20.08, 18.82])
    assert cuts[2].flags == MantisFlag.BAD_COORDINATE
    assert cuts[2].missing == ("galex", "panstarrs", "unwise")
    assert all(FetchStatus.of(s) is FetchStatus.BAD_COORDINATE for s in cuts[2].status.values())
    assert all(FetchStatus.of(s) is FetchStatus.FETCHED for s in cuts[0].status.values())
    single = local.get_cutouts(SkyCoord(RA, DEC, unit="deg"))
    assert isinstance(single, MultiSurveyCutout)
    assert np.array_equal(single["panstarrs"].data, cuts[0]["panstarrs"].data, equal_nan=True)
    assert local.last_request_count == 0
    # the cutouts write and read back like the network's
    again = MultiSurveyCutout.from_hdulist(cuts[0].to_hdulist())
    assert np.array_equal(again["panstarrs"].data, cuts[0]["panstarrs"].data, equal_nan=True)


def test_errors_name_the_problem(local, tmp_path):
    with pytest.raises(ValueError, match="invalid coordinate"):
        local.get_cutouts(SkyCoord(RA, np.nan, unit="deg"))
    with pytest.raises(TypeError, match="SkyCoord"):
        local.get_cutouts([1.0, 2.0])
    with pytest.raises(ValueError, match="unknown survey"):
        local.get_cutouts(SkyCoord(RA, DEC, unit="deg"), surveys=("sdss",))
    with pytest.raises(ValueError, match="at least one tile directory"):
        LocalTiles()
    with pytest.raises(FileNotFoundError, match="galex tile directory"):
        LocalTiles(galex=tmp_path / "nowhere", index_dir=tmp_path)


def test_string_position_and_iterator(local):
    one = local.get_cutouts(f"{RA} {DEC}", surveys=("unwise",))
    assert isinstance(one, MultiSurveyCutout) and "unwise" in one
    coords = SkyCoord(np.full(7, RA), np.linspace(DEC - 0.01, DEC + 0.01, 7), unit="deg")
    done = []
    it = local.iter_cutouts(coords, surveys=("galex",), batch_size=3, progress=done.append)
    cuts = list(it)
    assert [round(c.coord.dec.deg, 6) for c in cuts] == [round(d, 6) for d in coords.dec.deg]
    assert done == [3, 3, 1]


def test_batches_and_open_file_limit_do_not_change_the_cutouts(tile_root, tmp_path):
    """Batches sweep their tiles forwards and backwards in turn and at most
    max_open_files stay open; neither changes a pixel, and the default follows the
    process's file limit."""
    from astro_mantis.sources.localtiles import _default_max_open_files

    rng = np.random.default_rng(5)
    coords = SkyCoord(rng.uniform(*PATCH[0], 23), rng.uniform(*PATCH[1], 23), unit="deg")
    with tiles_of(tile_root, tmp_path / "a") as wide:
        whole = list(wide.iter_cutouts(coords, batch_size=64, progress=False))
        assert wide._files.max_open == _default_max_open_files()
    assert 16 <= _default_max_open_files() <= 512
    with tiles_of(tile_root, tmp_path / "b", max_open_files=1) as narrow:
        parts = list(narrow.iter_cutouts(coords, batch_size=4, progress=False))
        assert len(narrow._files._open) == 1
    assert len(parts) == len(whole) == 23
    for a, b in zip(whole, parts):
        assert a.status == b.status and set(a.surveys) == set(b.surveys)
        for name in a.surveys:
            np.testing.assert_array_equal(a[name].data, b[name].data)


# --------------------------------------------------------------- coverage and flags
def test_no_coverage_is_out_of_footprint(local):
    cut = local.get_cutouts(SkyCoord(10.0, -5.0, unit="deg"))
    assert cut.missing == ("galex", "panstarrs", "unwise")
    assert not cut.surveys
    assert cut.flags == (MantisFlag.OUT_OF_FOOTPRINT | MantisFlag.GALEX_MISSING
                         | MantisFlag.PANSTARRS_MISSING | MantisFlag.UNWISE_MISSING)
    assert all(FetchStatus.of(s) is FetchStatus.OUT_OF_FOOTPRINT for s in cut.status.values())


def test_edge_of_the_tiles_gives_nan_pixels(local):
    """Just inside the outermost tile's edge: a partial cut, NaN-filled and flagged."""
    grids = local.indexes["panstarrs"].grids
    west = max(grids, key=lambda g: g.center[0])  # the easternmost RA column's tile
    ny, nx = west.shape
    coord = west.wcs.pixel_to_world(2.0, ny / 2)  # 2 px inside the east edge
    cut = local.get_cutouts(coord, surveys=("panstarrs",))
    img = cut["panstarrs"]
    assert cut.status == {"panstarrs": "ok"}
    assert img.flags & MantisFlag.NAN_PIXELS and cut.flags & MantisFlag.NAN_PIXELS
    nan_cols = np.all(img.mask[0], axis=0)
    assert 75 <= nan_cols.sum() <= 90  # about half the cutout lies beyond the edge
    assert not img.mask[0][:, ~nan_cols].any()


def test_overlap_picks_the_most_complete_tile(local):
    """In the overlap of two skycells, the one holding more of the cutout wins."""
    index = local.indexes["panstarrs"]
    a, b = sorted(index.grids, key=lambda g: (g.center[1], g.center[0]))[:2]
    ga, gb = index.grids.index(a), index.grids.index(b)
    ny, nx = a.shape
    coord = a.wcs.pixel_to_world(15.0, ny / 2)  # 15 px inside a's eastern edge
    xb, yb = b.wcs.world_to_pixel(coord)
    assert 15.0 < xb < nx - 0.5, "the test tiles must overlap"
    order = local.tiles_at("panstarrs", coord)
    assert order[:2] == [b, a]
    cut = local.get_cutouts(coord, surveys=("panstarrs",))["panstarrs"]
    assert cut.meta["TILE"] == b.name
    survey = SURVEYS["panstarrs"]
    ra, dec = coord.ra.deg, coord.dec.deg
    in_a = local._cut(survey, index, ga, 15.0, ny / 2, ra, dec)
    in_b = local._cut(survey, index, gb, float(xb), float(yb), ra, dec)
    assert np.array_equal(cut.data, in_b.data, equal_nan=True)
    assert in_b.mask.sum() < in_a.mask.sum()
    # where both cuts lie inside the two tiles they are the same sky (noise aside)
    both = ~in_a.mask[2] & ~in_b.mask[2]
    assert both.sum() > 1000


def test_ra_wrap(tmp_path):
    """Tiles and positions on both sides of RA = 0."""
    sky = make_sky(0.0, 10.0, n=20, seed=5)
    write_tiles(sky, tmp_path / "t", (359.97, 0.03), (9.99, 10.01),
                surveys=("panstarrs", "unwise"), noise=False, overlap={"panstarrs": 0.5})
    tiles = LocalTiles(panstarrs=tmp_path / "t" / "panstarrs",
                       unwise=tmp_path / "t" / "unwise", index_dir=tmp_path / "i")
    ras = {g.center[0] for g in tiles.indexes["panstarrs"].grids}
    assert any(r > 359 for r in ras) and any(r < 1 for r in ras)
    coords = SkyCoord([359.9995, 0.0, 0.0005, 359.99], [10.0, 10.0, 10.002, 9.999], unit="deg")
    cuts = tiles.get_cutouts(coords, surveys=("panstarrs", "unwise"), progress=False)
    for cut, coord in zip(cuts, coords):
        assert cut.status == {"panstarrs": "ok", "unwise": "ok"}, cut.status
        x, y = cut["panstarrs"].wcs.world_to_pixel(coord)
        assert 84.5 - 1e-3 <= x <= 85.5 + 1e-3 and 84.5 - 1e-3 <= y <= 85.5 + 1e-3  # fitscut
        assert np.isfinite(cut["panstarrs"].data).all()


def test_chip_gaps_are_nan_pixels(tmp_path):
    sky = make_sky(RA, DEC, n=10)
    write_tiles(sky, tmp_path / "t", (RA - 0.005, RA + 0.005), (DEC - 0.005, DEC + 0.005),
                surveys=("panstarrs",), ps1_nan_fraction=1.0, noise=False)
    tiles = LocalTiles(panstarrs=tmp_path / "t" / "panstarrs", index_dir=tmp_path / "i")
    grid = tiles.indexes["panstarrs"].grids[0]
    stripes = {b: np.isnan(fits.getdata(grid.bands[b][0])) for b in "grizy"}
    assert all(s.any() for s in stripes.values())
    hit = None
    for b, s in stripes.items():  # a position whose cutout crosses the stripe
        ys, xs = np.nonzero(s)
        hit = grid.wcs.pixel_to_world(xs[len(xs) // 2], ys[len(ys) // 2])
        break
    cut = tiles.get_cutouts(hit, surveys=("panstarrs",))
    assert cut.status == {"panstarrs": "ok"}
    assert cut.flags & MantisFlag.NAN_PIXELS
    assert cut["panstarrs"].mask.any() and not cut["panstarrs"].mask.all()


def test_galex_outside_the_field_circle(tmp_path):
    """GALEX intensity maps are zero outside their circle: there the survey is missing."""
    sky = make_sky(RA, DEC, n=10)
    write_tiles(sky, tmp_path / "t", (RA - 0.001, RA + 0.001), (DEC - 0.001, DEC + 0.001),
                surveys=("galex",), noise=False)
    tiles = LocalTiles(galex=tmp_path / "t" / "galex", index_dir=tmp_path / "i")
    grid = tiles.indexes["galex"].grids[0]
    corner = grid.wcs.pixel_to_world(1.0, 1.0)  # inside the square, outside the circle
    cut = tiles.get_cutouts(corner, surveys=("galex",))
    assert cut.missing == ("galex",)
    assert cut.flags & MantisFlag.OUT_OF_FOOTPRINT
    centre = tiles.get_cutouts(grid.wcs.pixel_to_world(64, 64), surveys=("galex",))
    assert centre.status == {"galex": "ok"}


def test_survey_without_directory_is_not_fetched(tile_root, tmp_path):
    tiles = LocalTiles(unwise=tile_root / "unwise", index_dir=tmp_path)
    cut = tiles.get_cutouts(SkyCoord(RA, DEC, unit="deg"))
    assert list(cut.surveys) == ["unwise"]
    assert cut.missing == ("galex", "panstarrs")
    assert FetchStatus.of(cut.status["galex"]) is FetchStatus.NOT_FETCHED
    assert cut.flags == MantisFlag.GALEX_MISSING | MantisFlag.PANSTARRS_MISSING
    with pytest.raises(ValueError, match="no panstarrs directory"):
        tiles.survey_image("panstarrs", SkyCoord(RA, DEC, unit="deg"))


def test_unreadable_tile_fails_that_survey_only(tmp_path):
    sky = make_sky(RA, DEC, n=10)
    write_tiles(sky, tmp_path / "t", (RA - 0.001, RA + 0.001), (DEC - 0.001, DEC + 0.001),
                surveys=("panstarrs", "unwise"), noise=False)
    tiles = LocalTiles(panstarrs=tmp_path / "t" / "panstarrs",
                       unwise=tmp_path / "t" / "unwise", index_dir=tmp_path / "i")
    for path in (tmp_path / "t" / "unwise").rglob("*.fits"):
        path.write_bytes(b"SIMPLE  =                    T")  # damaged after indexing
    cut = tiles.get_cutouts(SkyCoord(RA, DEC, unit="deg"), surveys=("panstarrs", "unwise"))
    assert cut.status["panstarrs"] == "ok"
    assert FetchStatus.of(cut.status["unwise"]) is FetchStatus.FAILED
    assert cut.flags == MantisFlag.FETCH_FAILED | MantisFlag.UNWISE_MISSING
    stats = tiles.refresh()  # the damaged files are now skipped, with their reason
    assert stats["unwise"]["read"] == 2
    assert len(tiles.indexes["unwise"].problems) == 2
    again = tiles.get_cutouts(SkyCoord(RA, DEC, unit="deg"), surveys=("unwise",))
    assert again.flags & MantisFlag.OUT_OF_FOOTPRINT


# --------------------------------------------------------------- the index
def test_index_is_built_once_and_reused(tile_root, tmp_path):
    first = tiles_of(tile_root, tmp_path)
    nfiles = {s: len(list((tile_root / s).rglob("*.fits"))) for s in first.indexes}
    for s, index in first.indexes.items():
        assert index.stats == {"reused": 0, "read": nfiles[s], "removed": 0, "written": True}
        assert index.path.exists() and index.path.parent == tmp_path
    second = tiles_of(tile_root, tmp_path)
    for s, index in second.indexes.items():
        assert index.stats == {"reused": nfiles[s], "read": 0, "removed": 0, "written": False}
        assert len(index.grids) == len(first.indexes[s].grids)
    assert {len(g.bands) for g in second.indexes["panstarrs"].grids} == {5}


def test_index_rebuilt_when_files_change(tmp_path):
    sky = make_sky(RA, DEC, n=10)
    root = tmp_path / "t"
    write_tiles(sky, root, (RA - 0.001, RA + 0.001), (DEC - 0.001, DEC + 0.001),
                surveys=("unwise",), noise=False)
    files = sorted((root / "unwise").rglob("*.fits"))
    coord = SkyCoord(RA, DEC, unit="deg")
    tiles = LocalTiles(unwise=root / "unwise", index_dir=tmp_path / "i")
    before = tiles.get_cutouts(coord, surveys=("unwise",))["unwise"].data.copy()
    # change one file's pixels (a new mtime and content)
    with fits.open(files[0]) as hdul:
        hdul[0].data = hdul[0].data * 2.0
        hdul.writeto(files[0], overwrite=True)
    st = files[0].stat()
    os.utime(files[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    tiles = LocalTiles(unwise=root / "unwise", index_dir=tmp_path / "i")
    assert tiles.indexes["unwise"].stats == {"reused": 1, "read": 1, "removed": 0,
                                             "written": True}
    after = tiles.get_cutouts(coord, surveys=("unwise",))["unwise"].data
    np.testing.assert_allclose(after[0], 2 * before[0], rtol=1e-6)
    np.testing.assert_array_equal(after[1], before[1])
    # remove the other band: the grid keeps W1 only, W2 becomes NaN
    files[1].unlink()
    stats = tiles.refresh()
    assert stats["unwise"] == {"reused": 1, "read": 0, "removed": 1, "written": True}
    cut = tiles.get_cutouts(coord, surveys=("unwise",))
    assert np.isnan(cut["unwise"].data[1]).all() and cut.flags & MantisFlag.NAN_PIXELS
    # a new directory content in the same index file: an unreadable index is rebuilt
    tiles.indexes["unwise"].path.write_text("{not json")
    index = TileIndex(root / "unwise", "unwise", index_dir=tmp_path / "i")
    assert index.stats["read"] == 1


# --------------------------------------------------------------- a user's own mosaics
def _mosaic(path, data, pixscale, ra=RA, dec=DEC, **cards):
    header = fits.Header()
    ny, nx = data.shape[-2:]
    header.update({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": ra, "CRVAL2": dec,
                   "CRPIX1": (nx + 1) / 2, "CRPIX2": (ny + 1) / 2,
                   "CD1_1": -pixscale / 3600, "CD1_2": 0.0, "CD2_1": 0.0,
                   "CD2_2": pixscale / 3600})
    header.update(cards)
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.PrimaryHDU(data.astype(np.float32), header=header).writeto(path, overwrite=True)


def test_own_mosaic_cube_bunit_and_resampling(tmp_path):
    """A GALEX cube (FUV, NUV planes) at 0.75" in counts/ms: converted, resampled to 1.5"."""
    ny = nx = 128
    yy, xx = np.mgrid[0:ny, 0:nx]
    blob = np.exp(-((xx - 63.5) ** 2 + (yy - 63.5) ** 2) / (2 * 3.0 ** 2))
    cube = np.stack([blob, 2 * blob])  # FUV, then NUV twice as bright
    _mosaic(tmp_path / "m" / "mine.fits", cube, 0.75, BAND0="FUV", BAND1="NUV", BUNIT="ct/ms")
    _mosaic(tmp_path / "m" / "janskys.fits", cube, 0.75, BUNIT="Jy")
    with log.log_to_list() as records:
        tiles = LocalTiles(galex=tmp_path / "m", index_dir=tmp_path / "i")
    assert any("janskys.fits" in r.getMessage() and "BUNIT 'Jy'" in r.getMessage()
               for r in records)
    assert "janskys.fits" in tiles.indexes["galex"].problems
    cut = tiles.get_cutouts(SkyCoord(RA, DEC, unit="deg"), surveys=("galex",))
    img = cut["galex"]
    assert img.shape == (2, 32, 32) and img.meta["RESAMPLD"]
    np.testing.assert_allclose(img.wcs.wcs.crval, [RA, DEC])
    np.testing.assert_allclose(np.abs(img.wcs.pixel_scale_matrix.diagonal()) * 3600, 1.5)
    total = 1000 * blob.sum()  # counts/s of the FUV plane; pixels keep their flux
    assert img.data[0].sum() == pytest.approx(2 * total, rel=0.02)  # NUV first
    assert img.data[1].sum() == pytest.approx(total, rel=0.02)
    peak = np.unravel_index(np.nanargmax(img.data[0]), (32, 32))
    assert peak in {(15, 15), (15, 16), (16, 15), (16, 16)}


def test_band_must_be_named(tmp_path):
    _mosaic(tmp_path / "m" / "anon.fits", np.ones((40, 40)), 0.25)
    _mosaic(tmp_path / "m" / "deep_i.fits", np.ones((40, 40)), 0.25)
    _mosaic(tmp_path / "m" / "other.fits", np.ones((40, 40)), 0.25, FILTER="z.00000",
            CRVAL1=RA + 0.01)
    tiles = LocalTiles(panstarrs=tmp_path / "m", index_dir=tmp_path / "i")
    problems = tiles.indexes["panstarrs"].problems
    assert list(problems) == ["anon.fits"]
    assert "BAND = 'g'" in problems["anon.fits"]
    bands = sorted(b for g in tiles.indexes["panstarrs"].grids for b in g.bands)
    assert bands == ["i", "z"]


def test_compressed_and_asinh_tiles(tmp_path):
    """fpack-style compressed HDUs and the stacks' asinh pixels read as linear counts."""
    sky = make_sky(RA, DEC, n=10)
    box = ((RA - 0.001, RA + 0.001), (DEC - 0.001, DEC + 0.001))
    write_tiles(sky, tmp_path / "lin", *box, surveys=("panstarrs",), noise=False)
    write_tiles(sky, tmp_path / "asinh", *box, surveys=("panstarrs",), noise=False,
                ps1_asinh=True)
    (tmp_path / "comp").mkdir()
    for path in (tmp_path / "lin" / "panstarrs").rglob("*.fits"):
        with fits.open(path) as hdul:
            comp = fits.CompImageHDU(hdul[0].data, header=hdul[0].header,
                                     compression_type="GZIP_2", quantize_level=0)
            fits.HDUList([fits.PrimaryHDU(), comp]).writeto(tmp_path / "comp" / path.name)
    coord = SkyCoord(RA + 0.0003, DEC - 0.0002, unit="deg")
    got = {}
    for name in ("lin", "asinh", "comp"):
        folder = tmp_path / name / "panstarrs" if name != "comp" else tmp_path / "comp"
        tiles = LocalTiles(panstarrs=folder, index_dir=tmp_path / f"i{name}")
        got[name] = tiles.get_cutouts(coord, surveys=("panstarrs",))["panstarrs"].data
    assert np.array_equal(got["comp"], got["lin"])  # lossless compression
    peak = np.abs(got["lin"]).max()
    np.testing.assert_allclose(got["asinh"], got["lin"], rtol=1e-4, atol=1e-4 * peak)


# --------------------------------------------------------------- the command-line form
def test_from_cli(tile_root, tmp_path):
    tiles = LocalTiles.from_cli(f"ps1={tile_root / 'panstarrs'}; unwise={tile_root / 'unwise'}",
                                index_dir=tmp_path)
    assert list(tiles.indexes) == ["panstarrs", "unwise"]
    assert tiles.directories["unwise"] == tile_root / "unwise"
    for bad, match in [("panstarrs", "not SURVEY=DIR"), ("sdss=/x", "unknown survey"),
                       (f"galex={tile_root}/galex,galex={tile_root}/galex", "twice"),
                       ("", "empty")]:
        with pytest.raises(ValueError, match=match):
            LocalTiles.from_cli(bad, index_dir=tmp_path)
