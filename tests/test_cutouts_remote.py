"""The real survey services. Skipped by default; run with ``pytest --remote-data=any``.

These pin the protocol facts the loopback servers imitate: the listing format of
ps1filenames.py, fitscut's header keywords, the viewer's band keywords and units.
"""
import numpy as np
import pytest
from astropy.coordinates import SkyCoord

from astro_mantis import Mantis, conf
from astro_mantis.surveys import SURVEYS

# A well-observed galaxy in the SDSS/GALEX/PS1/unWISE footprints (COSMOS field).
COORD = SkyCoord(150.1, 2.2, unit="deg")


@pytest.fixture
def fresh_cache(tmp_path):
    with conf.set_temp("cache_dir", str(tmp_path)):
        yield


@pytest.mark.remote_data
def test_real_ps1_listing_and_fitscut(fresh_cache):
    ps1 = SURVEYS["panstarrs"]
    urls = Mantis.get_image_list(COORD, surveys=("panstarrs",))
    assert len(urls) == 5 and all("fitscut.cgi?red=" in u for u in urls)
    cut = Mantis.get_cutouts(COORD, surveys=("panstarrs",), cache=False)
    img = cut["panstarrs"]
    assert img.shape == (5, ps1.size, ps1.size)
    assert np.all(np.isfinite(img.zeropoints)) and np.all(img.zeropoints > 25)
    x, y = img.wcs.world_to_pixel(COORD)
    assert abs(x - (ps1.size - 1) / 2) < 1 and abs(y - (ps1.size - 1) / 2) < 1


@pytest.mark.remote_data
def test_real_ps1_outside_footprint(fresh_cache):
    cut = Mantis.get_cutouts(SkyCoord(10.0, -60.0, unit="deg"), surveys=("panstarrs",),
                             cache=False)
    assert cut.missing == ("panstarrs",)


@pytest.mark.remote_data
def test_real_galex_layer_units(fresh_cache):
    """The viewer's galex layer is in counts/s: sky is ~1e-3 cts/s/pixel in NUV, and a
    z~0.1 galaxy peaks well below the x/0.05 normalisation ceiling of the reference."""
    cut = Mantis.get_cutouts(COORD, surveys=("galex",), cache=False)
    img = cut["galex"]
    assert img.shape == (2, 32, 32) and img.bands == ("NUV", "FUV")
    nuv = img["NUV"]
    assert 0 < np.nanmedian(nuv) < 0.05
    assert np.nanmax(nuv) < 5.0


@pytest.mark.remote_data
def test_real_unwise_layer(fresh_cache):
    cut = Mantis.get_cutouts(COORD, surveys=("unwise",), cache=False)
    img = cut["unwise"]
    assert img.shape == (2, 32, 32) and img.bands == ("W1", "W2")
    assert np.isfinite(img.data).all()
