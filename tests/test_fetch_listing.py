"""Pan-STARRS listings that come back damaged or ambiguous: retried, never cached as
"not covered", and matched back to every position that was sent."""
import numpy as np
import pytest
from astropy.coordinates import SkyCoord

from astro_mantis import Mantis, conf
from astro_mantis.cutouts import CutoutCache
from astro_mantis.exceptions import InvalidResponseError
from astro_mantis.fetch import FetchStatus
from astro_mantis.flags import MantisFlag
from astro_mantis.surveys import SURVEYS
from astro_mantis.testing import SurveyServer

PS1 = SURVEYS["panstarrs"]
COORDS = SkyCoord([150.1, 150.2, 150.3], [2.1, 2.2, 2.3], unit="deg")


class ListingServer(SurveyServer):
    """A loopback server whose next listings are damaged by the functions in ``damage``
    (one each, in order), as a proxy or a dropped connection would cut them."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.damage = []

    def _ps1filenames(self, params, positions):
        status, content_type, body = super()._ps1filenames(params, positions)
        if self.damage:
            body = self.damage.pop(0)(body)
        return status, content_type, body


def keep_rows(n):
    """Cut a listing at a row boundary: its header line and its first ``n`` rows."""
    def cut(body):
        return "".join(body.decode().splitlines(keepends=True)[:1 + n]).encode()
    return cut


def mid_row(body):
    """Cut a listing inside its fifth row."""
    lines = body.decode().splitlines(keepends=True)
    return ("".join(lines[:5]) + lines[5][:30]).encode()


@pytest.fixture
def listing_server(tmp_path):
    with ListingServer() as srv, srv.configure(conf), \
            conf.set_temp("cache_dir", str(tmp_path)), conf.set_temp("backoff", 0.01), \
            conf.set_temp("timeout", 5.0):
        yield srv


def kinds(cuts):
    return [c.status["panstarrs"].kind for c in cuts]


# ------------------------------------------------------------ a listing cut at a row boundary
def test_listing_cut_at_a_row_boundary_is_retried(listing_server):
    # the first position complete, the second with 2 of its 5 bands, the third with none
    listing_server.damage = [keep_rows(7)]
    with conf.set_temp("retries", 1):
        cuts = Mantis.get_cutouts(COORDS, surveys=("panstarrs",), progress=False)
    assert kinds(cuts) == [FetchStatus.FETCHED] * 3
    assert listing_server.counts["ps1filenames"] == 2
    assert all(c.flags == MantisFlag.NONE for c in cuts)  # no NaN planes for bands cut off


def test_positions_a_cut_listing_lacks_fail_and_are_not_cached_as_not_covered(listing_server):
    listing_server.damage = [keep_rows(7)]
    with conf.set_temp("retries", 0):
        cuts = Mantis.get_cutouts(COORDS, surveys=("panstarrs",), progress=False)
    assert kinds(cuts) == [FetchStatus.FETCHED, FetchStatus.FAILED, FetchStatus.FAILED]
    for cut in cuts[1:]:
        assert cut.status["panstarrs"].startswith("failed: listing:")
        assert "no row" in cut.status["panstarrs"]
        assert MantisFlag.FETCH_FAILED in cut.flags
        assert MantisFlag.OUT_OF_FOOTPRINT not in cut.flags
    cache = CutoutCache()
    for c in COORDS[1:]:  # nothing was cached for them, least of all "not covered"
        key = PS1.cache_key(c.ra.deg, c.dec.deg)
        assert cache.load("panstarrs", key, PS1.source) is None
    # the rerun lists the two positions again and fetches them
    listing_server.reset()
    again = Mantis.get_cutouts(COORDS, surveys=("panstarrs",), progress=False)
    assert kinds(again) == [FetchStatus.CACHED, FetchStatus.FETCHED, FetchStatus.FETCHED]
    assert [e.npositions for e in listing_server.log if e.endpoint == "ps1filenames"] == [2]


def test_a_cut_listing_retried_in_vain_fails_only_what_it_lacks(listing_server):
    listing_server.damage = [keep_rows(5)] * 3
    with conf.set_temp("retries", 2):
        cuts = Mantis.get_cutouts(COORDS, surveys=("panstarrs",), progress=False)
    assert listing_server.counts["ps1filenames"] == 3
    assert kinds(cuts) == [FetchStatus.FETCHED, FetchStatus.FAILED, FetchStatus.FAILED]
    assert "(after 3 attempts)" in cuts[2].status["panstarrs"]


# ------------------------------------------------------------ a listing cut inside a row
def test_listing_cut_inside_a_row_is_retried(listing_server):
    listing_server.damage = [mid_row]
    with conf.set_temp("retries", 1):
        cuts = Mantis.get_cutouts(COORDS, surveys=("panstarrs",), progress=False)
    assert kinds(cuts) == [FetchStatus.FETCHED] * 3
    assert listing_server.counts["ps1filenames"] == 2
    listing_server.reset()
    listing_server.damage = [mid_row]
    with conf.set_temp("retries", 0):
        cuts = Mantis.get_cutouts(COORDS, surveys=("panstarrs",), cache=False, progress=False)
    assert {c.status["panstarrs"].kind for c in cuts} == {FetchStatus.FAILED}
    assert all("short row" in c.status["panstarrs"] for c in cuts)


def test_get_image_list_retries_a_cut_listing(listing_server):
    listing_server.damage = [keep_rows(3)]
    with conf.set_temp("retries", 1):
        urls = Mantis.get_image_list(COORDS, surveys=("panstarrs",))
    assert len(urls) == 15 and listing_server.counts["ps1filenames"] == 2


# ------------------------------------------------------------ rows echoed with fewer decimals
def test_two_positions_one_listing_row_apart_both_get_their_files(listing_server):
    """Distinct to 7 decimals, the same to the 6 the listing echoes."""
    coords = SkyCoord([150.1400000, 150.1400004], [2.42, 2.42], unit="deg")
    cuts = Mantis.get_cutouts(coords, surveys=("panstarrs",), progress=False)
    assert kinds(cuts) == [FetchStatus.FETCHED] * 2
    assert listing_server.counts["ps1filenames"] == 1
    assert listing_server.counts["fitscut"] == 10
    again = Mantis.get_cutouts(coords, surveys=("panstarrs",), progress=False)
    assert kinds(again) == [FetchStatus.CACHED] * 2


def row(ra, dec, band, name):
    return (f"2381 32 {ra} {dec} {band} 0 stack /rings.v3.skycell/2381/032/{name}.{band}.fits "
            f"{name}.{band}.fits 0\n")


HEADER = "projcell subcell ra dec filter mjd type filename shortname badflag\n"


@pytest.mark.parametrize("fmt", ["{:.7f}", "{:.6f}", "{:.4f}", "{}"])
def test_rows_go_to_every_position_they_match(fmt):
    positions = [(150.14, 2.42), (150.1400004, 2.42), (10.0, 20.0)]
    body = HEADER + "".join(row(fmt.format(r), fmt.format(d), b, f"p{k}")
                            for k, (r, d) in enumerate(positions) for b in "grizy")
    entries = PS1.parse_listing(body.encode(), positions)
    assert all(e is not None and set(e) == set("grizy") for e in entries)
    assert entries[2]["g"].endswith("p2.g.fits")
    # rows in another order than the positions' are matched all the same
    lines = body.splitlines(keepends=True)
    shuffled = PS1.parse_listing((HEADER + "".join(reversed(lines[1:]))).encode(), positions)
    assert all(e is not None and set(e) == set("grizy") for e in shuffled)
    assert shuffled[2] == entries[2]
    if fmt in ("{:.7f}", "{}"):  # an echo that tells the first two apart
        assert shuffled == entries and entries[1]["y"].endswith("p1.y.fits")


def test_the_nearest_row_wins_where_the_echo_tells_positions_apart():
    positions = [(10.0, 20.0), (10.00004, 20.0)]  # 0.14 arcsec apart
    body = HEADER + "".join(row(f"{r:.7f}", f"{d:.7f}", b, f"p{k}")
                            for k, (r, d) in reversed(list(enumerate(positions)))
                            for b in "grizy")
    first, second = PS1.parse_listing(body.encode(), positions)
    assert first["g"].endswith("p0.g.fits") and second["g"].endswith("p1.g.fits")


def test_listing_gaps_name_positions_without_every_band():
    positions = [(150.1, 2.1), (150.2, 2.2), (150.3, 2.3), (150.4, -45.0)]
    body = HEADER + "".join(row(f"{r:.6f}", f"{d:.6f}", b, f"p{k}")
                            for k, (r, d) in enumerate(positions[:2])
                            for b in ("grizy" if k == 0 else "gr"))
    entries = PS1.parse_listing(body.encode(), positions)
    assert PS1.listing_gaps(entries, positions) == [1, 2]  # the southern one is not a gap
    with pytest.raises(InvalidResponseError, match="short row"):
        PS1.parse_listing((body + "2381 32 150.3").encode(), positions)
    assert np.all([e is None for e in entries[2:]])
