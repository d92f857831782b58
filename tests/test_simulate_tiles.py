"""Tests of astro_mantis.simulate.tiles: survey tiles of the mock sky and TileSky."""
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

pytest.importorskip("galsim")

from astro_mantis.simulate import ImagingConfig, MockSky, MockSkyConfig  # noqa: E402
from astro_mantis.simulate.render import BANDS  # noqa: E402
from astro_mantis.simulate.tiles import TileSky, tile_centers, write_tiles  # noqa: E402
from astro_mantis.surveys import get_survey  # noqa: E402

RA, DEC = 185.0, 25.0


def one_galaxy_sky(**imaging):
    cat = Table({"ra": [RA], "dec": [DEC], "r_half_disk": [1.0], "r_half_bulge": [0.3],
                 "bulge_frac": [0.2], "q": [0.7], "pa": [30.0]})
    for band in BANDS:
        cat[f"mag_{band}"] = [18.0]
    settings = dict(star_density=0, neighbour_density=0, galex_hole_fraction=0,
                    ps1_nan_fraction=0)
    settings.update(imaging)
    return MockSky(MockSkyConfig(imaging=ImagingConfig(**settings)), catalog=cat, seed=2)


def test_tile_centers_cover_the_box_and_wrap():
    centres = tile_centers((10.0, 11.0), (0.0, 1.0), side=0.4, overlap=0.1)
    ra = np.array([c[2] for c in centres])
    dec = np.array([c[3] for c in centres])
    assert ra.min() - 0.2 <= 10.0 + 1e-4 and ra.max() + 0.2 >= 11.0 - 1e-4
    assert dec.min() - 0.2 <= 0.0 and dec.max() + 0.2 >= 1.0
    steps = np.diff(np.unique(np.round(dec, 9)))
    np.testing.assert_allclose(steps, 0.36)  # side x (1 - overlap)
    wrap = tile_centers((359.5, 0.5), (0.0, 0.2), side=0.4, overlap=0.1)
    ras = [c[2] for c in wrap]
    assert all(0 <= r < 360 for r in ras)
    assert any(r > 359 for r in ras) and any(r < 1 for r in ras)
    with pytest.raises(ValueError, match="overlap"):
        tile_centers((0, 1), (0, 1), 0.4, 0.95)
    with pytest.raises(ValueError, match="dec_range"):
        tile_centers((0, 1), (1, 0), 0.4, 0.1)


def test_written_tiles_have_the_archives_headers_and_units(tmp_path):
    sky = one_galaxy_sky()
    table = write_tiles(sky, tmp_path, (RA - 0.001, RA + 0.001), (DEC - 0.001, DEC + 0.001),
                        noise=False)
    assert sorted(set(table["survey"])) == ["galex", "panstarrs", "unwise"]
    ps1 = [fits.getheader(p) for p in table["path"][table["survey"] == "panstarrs"]]
    assert sorted(h["FILTER"] for h in ps1) == [f"{b}.00000" for b in "giryz"]
    assert all(h["EXPTIME"] > 0 and "CDELT1" in h and "BUNIT" not in h for h in ps1)
    galex = {fits.getheader(p)["BAND"]: p for p in table["path"][table["survey"] == "galex"]}
    assert set(galex) == {1, 2} and str(galex[1]).endswith("-nd-int.fits")
    unwise = [fits.getheader(p) for p in table["path"][table["survey"] == "unwise"]]
    assert sorted(h["BAND"] for h in unwise) == [1, 2] and all("CD1_1" in h for h in unwise)
    # the galaxy's flux in each tile is the catalog's magnitude in the archive's unit
    for row in table:
        survey = get_survey(row["survey"])
        with fits.open(row["path"]) as hdul:
            data, header = hdul[0].data.astype(float), hdul[0].header
        zp = survey.zeropoints(header)[survey.bands.index(
            {"nuv": "NUV", "fuv": "FUV", "w1": "W1", "w2": "W2"}.get(row["band"], row["band"]))]
        mag = zp - 2.5 * np.log10(np.nansum(data))
        assert mag == pytest.approx(18.0, abs=0.1), (row["survey"], row["band"])
        x, y = WCS(header).world_to_pixel(SkyCoord(RA, DEC, unit="deg"))
        peak = np.unravel_index(np.nanargmax(data), data.shape)
        assert abs(peak[1] - x) <= 1.5 and abs(peak[0] - y) <= 1.5


def test_tiles_are_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    """Rewriting tiles that fails midway (a full disk) leaves the old tiles as they were
    and no temporary file (the FITS writer once wrote into the tile itself); a TileSky
    skips temporary files (a tile being written, or left by a crash)."""
    from astro_mantis.atomic import TEMP_SUFFIX

    box = ((RA - 0.001, RA + 0.001), (DEC - 0.001, DEC + 0.001))
    table = write_tiles(one_galaxy_sky(), tmp_path, *box, surveys=("unwise",), noise=False)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert sorted(str(p) for p in before) == sorted(table["path"])

    def torn(self, fileobj, *args, **kwargs):
        with open(fileobj, "wb") as fh:
            fh.write(b"SIMPLE  =                    T" + b" " * 50)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fits.PrimaryHDU, "writeto", torn)
    with pytest.raises(OSError, match="No space left"):
        write_tiles(one_galaxy_sky(), tmp_path, *box, surveys=("unwise",), noise=False)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    monkeypatch.undo()
    stale = next(iter(before)).parent / f".stale.abc{TEMP_SUFFIX}.fits"
    stale.write_bytes(b"SIMPLE  =                    T" + b" " * 50)
    assert len(TileSky(tmp_path)._tiles["unwise"]) == 1


def test_galex_circle_holes_and_chip_gaps(tmp_path):
    sky = one_galaxy_sky(galex_hole_fraction=1.0)  # every GALEX cell is a hole
    table = write_tiles(sky, tmp_path / "a", (RA - 0.001, RA + 0.001),
                        (DEC - 0.001, DEC + 0.001), surveys=("galex", "panstarrs"),
                        ps1_nan_fraction=1.0, noise=False)
    assert "galex" not in set(table["survey"])
    assert all(np.isnan(fits.getdata(p)).any() for p in table["path"])
    sky = one_galaxy_sky()
    table = write_tiles(sky, tmp_path / "b", (RA - 0.001, RA + 0.001),
                        (DEC - 0.001, DEC + 0.001), surveys=("galex",), noise=True)
    data = fits.getdata(table["path"][0])
    assert data[0, 0] == 0 and data[-1, -1] == 0 and data[64, 64] != 0


def test_noise_is_deterministic_and_asinh_round_trips(tmp_path):
    box = ((RA - 0.001, RA + 0.001), (DEC - 0.001, DEC + 0.001))
    a = write_tiles(one_galaxy_sky(), tmp_path / "a", *box, surveys=("unwise",))
    b = write_tiles(one_galaxy_sky(), tmp_path / "b", *box, surveys=("unwise",))
    for pa, pb in zip(a["path"], b["path"]):
        assert np.array_equal(fits.getdata(pa), fits.getdata(pb))
    lin = write_tiles(one_galaxy_sky(), tmp_path / "c", *box, surveys=("panstarrs",),
                      noise=False)
    comp = write_tiles(one_galaxy_sky(), tmp_path / "d", *box, surveys=("panstarrs",),
                       noise=False, ps1_asinh=True)
    from astro_mantis.surveys.panstarrs import decompress_asinh

    header = fits.getheader(comp["path"][0])
    back = decompress_asinh(fits.getdata(comp["path"][0]), header["BSOFTEN"],
                            header["BOFFSET"])
    ref = fits.getdata(lin["path"][0])
    np.testing.assert_allclose(back, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_tile_sky_renders_service_answers(tmp_path):
    write_tiles(one_galaxy_sky(), tmp_path, (RA - 0.001, RA + 0.001),
                (DEC - 0.001, DEC + 0.001), noise=False)
    sky = TileSky(tmp_path)
    coord = SkyCoord(RA, DEC, unit="deg")
    ps1 = sky.render("panstarrs", coord, band="r")[0]
    assert ps1.data.shape == (170, 170) and ps1.header["FILTER"] == "r.00000"
    # fitscut's window: the position (the numbers sent, in the cutout's FK5 frame) lies
    # in [size // 2 - 0.5, size // 2 + 0.5)
    assert ps1.header["RADESYS"] == "FK5"
    x, y = WCS(ps1.header).world_to_pixel_values(RA, DEC)
    assert 84.5 - 1e-6 <= x <= 85.5 + 1e-6 and 84.5 - 1e-6 <= y <= 85.5 + 1e-6
    cube = sky.render("unwise", coord)[0]
    assert cube.data.shape == (2, 32, 32) and cube.header["BAND0"] == 1
    np.testing.assert_allclose(WCS(cube.header, naxis=2).wcs.crval, [RA, DEC])
    empty = sky.render("galex", SkyCoord(10, 10, unit="deg"))[0]
    assert not empty.data.any()
    assert np.isnan(sky.render("panstarrs", SkyCoord(10, 10, unit="deg"), band="g")[0]
                    .data).all()
    with pytest.raises(ValueError, match="one band"):
        sky.render("panstarrs", coord)


def test_tiles_of_a_randomised_sky_have_its_field_conditions(tmp_path):
    """A randomised sky's tiles are observed under the field's draw (PSF, zero points,
    noise level), as its cutouts are (they once had the nominal conditions)."""
    from astro_mantis.simulate import Randomisation

    rnd = Randomisation(noise_scale=(1.6, 1.6), zero_point=(0.2, 0.2))
    sky = one_galaxy_sky()
    sky = MockSky(MockSkyConfig(imaging=sky.config.imaging, randomisation=rnd),
                  catalog=sky.catalog, seed=2)
    conditions = sky.field_conditions((RA, DEC))
    assert abs(conditions["zero_point"]["r"]) == pytest.approx(0.2)
    box = ((RA - 0.001, RA + 0.001), (DEC - 0.001, DEC + 0.001))
    write_tiles(sky, tmp_path / "clean", *box, surveys=("panstarrs",), noise=False)
    coord = SkyCoord(RA, DEC, unit="deg")
    tile = TileSky(tmp_path / "clean").render("panstarrs", coord, band="r")[0].data
    cutout = sky.render("panstarrs", coord, band="r", noise=False)[0].data
    core = (slice(70, 100), slice(70, 100))
    np.testing.assert_allclose(tile[core].sum(), cutout[core].sum(), rtol=0.01)
    np.testing.assert_allclose(tile.max(), cutout.max(), rtol=0.01)
    # the noise is the field's: the nominal sky noise times its factor
    noisy = write_tiles(sky, tmp_path / "noisy", *box, surveys=("panstarrs",), noise=True)
    path = [p for p, b in zip(noisy["path"], noisy["band"]) if b == "r"][0]
    clean_path = path.replace(str(tmp_path / "noisy"), str(tmp_path / "clean"))
    residual = fits.getdata(path) - fits.getdata(clean_path)
    exptime = fits.getheader(path)["EXPTIME"]
    sigma = sky.renderer.sky_sigma("r", 0.25, exptime) * 1.6
    assert np.std(residual[:120, :120]) == pytest.approx(sigma, rel=0.05)
