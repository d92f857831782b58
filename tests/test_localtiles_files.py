"""LocalTiles on hand-made tile files as archives and users hold them: fpack-compressed
integer skycells, SIP-distorted mosaics, file names beyond ASCII, stacks with
``EXPTIME = 0``."""
import warnings

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from astro_mantis import MultiSurveyCutout
from astro_mantis.simulate.service_format import fitscut_corner
from astro_mantis.sources import LocalTiles

N = 300


def ps1_header(band, exptime=1000.0):
    h = fits.Header()
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
    h["CRVAL1"], h["CRVAL2"] = 150.0, 2.0
    h["CRPIX1"], h["CRPIX2"] = 150.5, 150.5
    h["CDELT1"], h["CDELT2"] = -0.25 / 3600, 0.25 / 3600
    h["FILTER"], h["EXPTIME"] = f"{band}.00000", exptime
    return h


def test_fpack_integer_skycells_with_bscale_bzero_blank(tmp_path):
    """RICE-compressed int16 skycells with BSCALE/BZERO/BLANK (what fpack writes of
    integer images): cut, scaled, and NaN where BLANK, as the docs promise."""
    rng = np.random.default_rng(3)
    raw = {}
    for k, band in enumerate("grizy"):
        data = rng.integers(-3000, 3000, (N, N)).astype(np.int16)
        data[140:150, 100:160] = -32768  # blanked: a masked stripe
        raw[band] = data
        hdu = fits.CompImageHDU(data, header=ps1_header(band), compression_type="RICE_1")
        hdu.header["BSCALE"], hdu.header["BZERO"] = 0.5 * (k + 1), 10.0
        hdu.header["BLANK"] = -32768
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp_path / f"sky.stk.{band}.fits.fz")
    with LocalTiles(panstarrs=tmp_path, index_dir=tmp_path / "index") as tiles:
        (grid,) = tiles.indexes["panstarrs"].grids
        assert len(grid.bands) == 5 and tiles.indexes["panstarrs"].problems == {}
        x, y = 140.3, 160.2  # the cutout holds the blank stripe
        coord = grid.wcs.pixel_to_world(x, y)
        cut = tiles.get_cutouts(coord, surveys="panstarrs")
    assert cut.status == {"panstarrs": "ok"}
    image = cut["panstarrs"]
    x0, y0 = fitscut_corner(x, 170), fitscut_corner(y, 170)
    for k, band in enumerate("grizy"):
        block = raw[band][y0:y0 + 170, x0:x0 + 170]
        expected = np.where(block == -32768, np.nan, block * 0.5 * (k + 1) + 10.0)
        np.testing.assert_allclose(image[band], expected.astype(np.float32), rtol=0,
                                   atol=0)
    blank = raw["g"][y0:y0 + 170, x0:x0 + 170] == -32768
    assert blank.any() and np.isnan(image.data[:, blank]).all()
    assert np.isfinite(image.data[:, ~blank]).all()


def test_sip_distorted_foreign_grid_is_resampled_as_the_whole_tile(tmp_path):
    """A 1" GALEX mosaic with SIP distortion (resampled to 1.5"): the cutout equals the
    whole tile reprojected onto the cutout's grid; the SIP reference pixel moves with the
    source box."""
    from reproject import reproject_interp

    n = 400
    h = fits.Header()
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN-SIP", "DEC--TAN-SIP"
    h["CRVAL1"], h["CRVAL2"] = 150.0, 2.0
    h["CRPIX1"], h["CRPIX2"] = 200.5, 200.5
    s = 1.0 / 3600
    h["CD1_1"], h["CD1_2"], h["CD2_1"], h["CD2_2"] = -s, 0.0, 0.0, s
    h["A_ORDER"] = h["B_ORDER"] = 2
    h["A_2_0"], h["B_0_2"], h["A_1_1"] = 2e-4, 2e-4, 1e-4  # tens of pixels at the corners
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        w = WCS(h)
    yy, xx = np.mgrid[0:n, 0:n]
    ra0, dec0 = 150.03, 2.03
    bx, by = w.all_world2pix(ra0, dec0, 0)
    img = (np.exp(-((xx - bx) ** 2 + (yy - by) ** 2) / (2 * 6.0 ** 2)) + 0.01).astype(
        np.float32)
    (tmp_path / "g").mkdir()
    for band in ("NUV", "FUV"):
        hb = h.copy()
        hb["BAND"] = band
        fits.writeto(tmp_path / "g" / f"mosaic-{band.lower()}.fits", img, hb)
    with LocalTiles(galex=tmp_path / "g", index_dir=tmp_path / "index") as tiles:
        cut = tiles.get_cutouts(SkyCoord(ra0, dec0, unit="deg"), surveys="galex")["galex"]
    assert cut.meta["RESAMPLD"]
    ref, _ = reproject_interp((img, w), cut.wcs, shape_out=(32, 32), order="bilinear")
    ref = ref * (1.5 / 1.0) ** 2  # pixels keep their flux
    peak = np.nanmax(ref)
    for k in range(2):
        np.testing.assert_allclose(cut.data[k], ref, rtol=0, atol=1e-5 * peak)
    assert np.unravel_index(np.argmax(cut.data[0]), (32, 32)) in {(15, 15), (15, 16),
                                                                  (16, 15), (16, 16)}


def test_a_tile_name_beyond_ascii_does_not_stop_writing(tmp_path):
    """The TILE card holds the name with its non-ASCII characters escaped; the cutout
    writes and reads back."""
    (tmp_path / "w").mkdir()
    for band in ("W1", "W2"):
        h = fits.Header()
        h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
        h["CRVAL1"], h["CRVAL2"] = 150.0, 2.0
        h["CRPIX1"], h["CRPIX2"] = 50.5, 50.5
        h["CD1_1"], h["CD2_2"] = -2.75 / 3600, 2.75 / 3600
        h["BAND"] = band
        fits.writeto(tmp_path / "w" / f"mosaïque-北-{band.lower()}.fits",
                     np.ones((100, 100), np.float32), h)
    with LocalTiles(unwise=tmp_path / "w", index_dir=tmp_path / "index") as tiles:
        cut = tiles.get_cutouts(SkyCoord(150.0, 2.0, unit="deg"), surveys="unwise")
    assert cut.status == {"unwise": "ok"}
    tile = cut["unwise"].meta["TILE"]
    assert tile.isascii() and tile == "mosa\\xefque-\\u5317-w1.fits"
    cut.write(tmp_path / "out.fits")
    back = MultiSurveyCutout.read(tmp_path / "out.fits")
    assert back["unwise"].meta["TILE"] == tile
    np.testing.assert_array_equal(back["unwise"].data, cut["unwise"].data)


def test_a_stack_band_with_exptime_zero_is_kept_without_a_zero_point(tmp_path):
    """EXPTIME = 0: the band stays in the index, its pixels are cut, its zero point is NaN
    (as the network path reads such a fitscut answer)."""
    for band in "grizy":
        data = np.full((N, N), 7.0 if band == "y" else 1.0, np.float32)
        fits.writeto(tmp_path / f"sky.stk.{band}.fits", data,
                     ps1_header(band, exptime=0.0 if band == "y" else 1000.0))
    with LocalTiles(panstarrs=tmp_path, index_dir=tmp_path / "index") as tiles:
        assert tiles.indexes["panstarrs"].problems == {}
        (grid,) = tiles.indexes["panstarrs"].grids
        assert sorted(grid.bands) == sorted("grizy")
        cut = tiles.get_cutouts(grid.wcs.pixel_to_world(150, 150), surveys="panstarrs")
    image = cut["panstarrs"]
    assert cut.status == {"panstarrs": "ok"}
    assert (image["y"] == 7.0).all()
    assert np.isnan(image.zeropoints[4])
    np.testing.assert_allclose(image.zeropoints[:4], 25 + 2.5 * 3.0)
    assert image.meta["EXPTIMEY"] == 0.0


def test_compressed_float_tiles_still_read(tmp_path):
    """Lossless float compression (no BSCALE/BZERO/BLANK) reads as before."""
    data = np.arange(N * N, dtype=np.float32).reshape(N, N)
    for band in "grizy":
        hdu = fits.CompImageHDU(data, header=ps1_header(band), compression_type="GZIP_2",
                                quantize_level=0)
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp_path / f"sky.stk.{band}.fits.fz")
    with LocalTiles(panstarrs=tmp_path, index_dir=tmp_path / "index") as tiles:
        (grid,) = tiles.indexes["panstarrs"].grids
        cut = tiles.get_cutouts(grid.wcs.pixel_to_world(150.2, 149.7), surveys="panstarrs")
    x0, y0 = fitscut_corner(150.2, 170), fitscut_corner(149.7, 170)
    np.testing.assert_array_equal(cut["panstarrs"]["r"], data[y0:y0 + 170, x0:x0 + 170])
