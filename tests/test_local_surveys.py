"""LocalTiles: the surveys asked for, by name, as the network path takes them."""
import pytest
from astropy.coordinates import SkyCoord

from astro_mantis import Mantis
from astro_mantis.flags import MantisFlag
from astro_mantis.sources import LocalTiles

COORD = SkyCoord(150.1, 2.2, unit="deg")


@pytest.fixture
def tiles(tmp_path):
    (tmp_path / "galex").mkdir()  # a tile directory without tiles: nothing covered
    with LocalTiles(galex=tmp_path / "galex", index_dir=tmp_path / "index") as t:
        yield t


def test_one_survey_may_be_named_as_a_string(tiles):
    cut = tiles.get_cutouts(COORD, surveys="galex")
    assert list(cut.status) == ["galex"] and cut.missing == ("galex",)
    cut = Mantis.get_cutouts(COORD, surveys="unwise", source=tiles)
    assert list(cut.status) == ["unwise"]


def test_a_survey_without_a_directory_is_not_fetched_not_failed(tiles):
    cut = tiles.get_cutouts(COORD, surveys=["unwise"])
    assert cut.status["unwise"] == "not fetched: no local unwise tiles"
    assert cut.flags == MantisFlag.UNWISE_MISSING  # no FETCH_FAILED: nothing was tried


def test_tiles_at_without_a_directory_says_so(tiles):
    """The same ValueError as survey_image, not a bare KeyError."""
    with pytest.raises(ValueError, match="LocalTiles has no unwise directory"):
        tiles.survey_image("unwise", COORD)
    with pytest.raises(ValueError, match="LocalTiles has no unwise directory"):
        tiles.tiles_at("unwise", COORD)
    assert tiles.tiles_at("galex", COORD) == []


def _skycell(directory, legacy):
    """Five band files of one 300 px PS1-like skycell (CRPIX off the skycell, as the
    projection cell's centre is): RA's sign in CDELT1 (``legacy=False``), or, as the real
    stacks write it, a positive CDELT1 and ``PC001001 = -1`` (``legacy=True``)."""
    import numpy as np
    from astropy.io import fits

    s = 0.25 / 3600
    directory.mkdir(parents=True)
    for k, band in enumerate("grizy"):
        h = fits.Header()
        h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
        h["CRVAL1"], h["CRVAL2"] = 150.0, 2.0
        h["CRPIX1"], h["CRPIX2"] = -2000.0, -1500.0
        if legacy:
            h["CDELT1"], h["CDELT2"] = s, s
            h["PC001001"], h["PC001002"], h["PC002001"], h["PC002002"] = -1.0, 0.0, 0.0, 1.0
        else:
            h["CDELT1"], h["CDELT2"] = -s, s
        h["FILTER"], h["EXPTIME"] = f"{band}.00000", 1000.0
        h["MJD-OBS"] = 55000.0 + k  # the band stacks' epochs differ, their grid does not
        data = np.arange(300 * 300, dtype=np.float32).reshape(300, 300) + 1000 * k
        fits.PrimaryHDU(data, h).writeto(directory / f"sky.stk.{band}.unconv.fits")
    return directory


def test_skycells_with_the_legacy_pc_matrix_are_cut_as_astropy_reads_them(tmp_path):
    import json
    import warnings

    import numpy as np
    from astropy.io import fits
    from astropy.wcs import WCS, FITSFixedWarning

    modern = _skycell(tmp_path / "modern", legacy=False)
    real = _skycell(tmp_path / "real", legacy=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        full = WCS(fits.getheader(real / "sky.stk.g.unconv.fits"))
    ra, dec = (float(v) for v in full.all_pix2world(150.0, 140.0, 0))
    coord = SkyCoord(ra, dec, unit="deg")
    cuts = {}
    for name, directory in (("modern", modern), ("real", real)):
        with LocalTiles(panstarrs=directory, index_dir=tmp_path / "index") as t:
            (grid,) = t.indexes["panstarrs"].grids
            assert len(grid.bands) == 5 and grid.wcs.wcs.get_pc()[0, 0] in (1.0, -1.0)
            np.testing.assert_allclose(grid.wcs.pixel_scale_matrix * 3600,
                                       [[-0.25, 0], [0, 0.25]], atol=1e-9)
            cuts[name] = t.get_cutouts(coord, surveys="panstarrs")
            assert cuts[name].status["panstarrs"] == "ok"
    a, b = cuts["modern"]["panstarrs"], cuts["real"]["panstarrs"]
    np.testing.assert_array_equal(a.data, b.data)
    xs, ys = np.array([0, 169, 0, 169]), np.array([0, 0, 169, 169])
    np.testing.assert_allclose(np.array(b.wcs.all_pix2world(xs, ys, 0)),
                               np.array(a.wcs.all_pix2world(xs, ys, 0)), rtol=0, atol=1e-10)
    # an index written before the legacy cards were kept is rebuilt, not trusted
    with LocalTiles(panstarrs=real, index_dir=tmp_path / "index") as t:
        path = t.indexes["panstarrs"].path
    doc = json.loads(path.read_text())
    doc["version"] = 1
    for rec in doc["files"].values():
        for entry in rec["entries"]:
            entry["grid"] = "".join(entry["grid"][i:i + 80]
                                    for i in range(0, len(entry["grid"]), 80)
                                    if not entry["grid"][i:i + 80].startswith("PC"))
    path.write_text(json.dumps(doc))
    with LocalTiles(panstarrs=real, index_dir=tmp_path / "index") as t:
        assert t.indexes["panstarrs"].stats["read"] == 5
        again = t.get_cutouts(coord, surveys="panstarrs")["panstarrs"]
    np.testing.assert_array_equal(again.data, b.data)
