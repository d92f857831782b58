"""The fetch engine's contracts: statuses that carry their outcome, positions read once."""
import pickle

import numpy as np
import pytest
from astropy.coordinates import SkyCoord

from astro_mantis import Mantis, MultiSurveyCutout, conf
from astro_mantis import fetch as fetch_mod
from astro_mantis.fetch import FetchStatus, StatusText, normalize_coordinates


def test_status_text_is_the_documented_text_and_carries_its_outcome():
    failed = FetchStatus.FAILED.text("HTTP 503 (after 4 attempts)")
    assert failed == "failed: HTTP 503 (after 4 attempts)" and isinstance(failed, str)
    assert failed.kind is FetchStatus.FAILED and failed.detail == "HTTP 503 (after 4 attempts)"
    assert FetchStatus.FETCHED.text() == "ok" and FetchStatus.FETCHED.text().detail is None
    assert StatusText("out of footprint") == "out of footprint"
    assert StatusText("out of footprint").kind is FetchStatus.OUT_OF_FOOTPRINT
    with pytest.raises(ValueError):
        StatusText("no such outcome")
    # pickled (as process pools do) it keeps its outcome and detail
    again = pickle.loads(pickle.dumps(failed))
    assert again == failed and again.kind is FetchStatus.FAILED and again.detail == failed.detail
    assert repr(failed) == repr(str(failed))


def test_of_reads_the_kind_without_parsing_and_plain_texts_by_their_start():
    # a failure whose reason starts like another outcome is still a failure
    odd = FetchStatus.FAILED.text("cached entry unreadable")
    assert odd.startswith("failed") and FetchStatus.of(odd) is FetchStatus.FAILED
    odd = StatusText(FetchStatus.FAILED, "x")
    assert FetchStatus.of(odd) is FetchStatus.FAILED
    # plain strings (from a FITS header or a summary table) are read by their start
    assert FetchStatus.of("fetched") is FetchStatus.FETCHED
    assert FetchStatus.of("ok") is FetchStatus.FETCHED
    assert FetchStatus.of("cached") is FetchStatus.CACHED
    assert FetchStatus.of("not fetched") is FetchStatus.NOT_FETCHED
    assert FetchStatus.of("failed: listing: HTTP 500") is FetchStatus.FAILED


def test_cutout_statuses_carry_outcome_and_detail(server, tmp_path):
    coords = SkyCoord([150.0, 150.0, 12.0, np.nan], [2.0, 2.0, -60.0, 0.0], unit="deg")
    # one connection: the first position's GALEX request takes every forced failure
    server.fail_next(conf.retries + 1, "5xx", endpoint="fits-cutout")
    with conf.set_temp("max_connections_per_host", 1):
        cuts = Mantis.get_cutouts(coords, surveys=("galex", "panstarrs"), progress=False)
    ok, dup, south, bad = cuts
    assert ok.status["panstarrs"].kind is FetchStatus.FETCHED and ok.status["panstarrs"] == "ok"
    galex = ok.status["galex"]
    assert galex.kind is FetchStatus.FAILED and galex.detail.startswith("HTTP 503 (after")
    assert galex == f"failed: {galex.detail}"
    assert dup.status == ok.status  # a repeated position shares its outcome
    assert south.status["galex"].kind is FetchStatus.FETCHED
    assert south.status["panstarrs"].kind is FetchStatus.OUT_OF_FOOTPRINT
    assert south.status["panstarrs"] == "out of footprint"
    assert {s.kind for s in bad.status.values()} == {FetchStatus.BAD_COORDINATE}
    again = Mantis.get_cutouts(coords[0], surveys=("galex", "panstarrs"), progress=False)
    assert again.status["panstarrs"].kind is FetchStatus.CACHED
    assert again.status["galex"].kind is FetchStatus.FETCHED  # failures are not cached
    # written to FITS and read back they are the same texts, in full (plain strings then)
    ok.write(tmp_path / "ok.fits")
    back = MultiSurveyCutout.read(tmp_path / "ok.fits")
    assert back.status == ok.status and len(galex) > 80
    assert all(FetchStatus.of(back.status[k]) is ok.status[k].kind for k in ok.status)


def test_positions_are_read_once_per_call(server, monkeypatch):
    calls = []
    real = fetch_mod.icrs_positions

    def counting(coordinates):
        calls.append(coordinates)
        return real(coordinates)

    monkeypatch.setattr(fetch_mod, "icrs_positions", counting)
    coords = SkyCoord([150.0, 150.01], [2.0, 2.0], unit="deg", frame="icrs").galactic
    cuts = Mantis.get_cutouts(coords, surveys=("galex",), progress=False)
    assert len(calls) == 1
    assert cuts[0].coord.separation(coords[0]).arcsec < 1e-6
    Mantis.plan(coords)
    Mantis.get_cutouts(coords, surveys=("galex",), get_query_payload=True)
    assert len(calls) == 3


def test_normalize_coordinates_uses_the_one_parser():
    icrs, scalar, good = normalize_coordinates(
        SkyCoord([10.0, np.nan, 20.0], [1.0, 2.0, 3.0], unit="deg"))
    assert not scalar and good.tolist() == [True, False, True] and icrs.shape == (3,)
    icrs, scalar, good = normalize_coordinates("12:20:05.8 +47:11:43")
    assert scalar and good.tolist() == [True] and abs(icrs.ra.deg[0] - 185.02417) < 1e-4
    with pytest.raises(ValueError, match=r"invalid coordinate \(ra=nan, dec=0.0\)"):
        normalize_coordinates(SkyCoord(np.nan, 0.0, unit="deg"))
    with pytest.raises(TypeError, match="position string or an object name"):
        normalize_coordinates([1.0, 2.0])


def test_icrs_positions_converts_once_and_first_of_finds_repeats():
    from astro_mantis.positions import icrs_positions

    gal = SkyCoord([10.0, 10.0, 30.0], [20.0, 20.0, 40.0], unit="deg", frame="galactic")
    icrs, pos = icrs_positions(gal)
    assert icrs.frame.name == "icrs" and icrs.shape == (3,)
    np.testing.assert_allclose(pos.ra, icrs.ra.deg)
    assert pos.first_of().tolist() == [0, 0, 2]
    icrs, pos = icrs_positions(SkyCoord(1.0, 2.0, unit="deg"))
    assert icrs.shape == (1,) and pos.good.tolist() == [True]
    with pytest.raises(TypeError, match="SkyCoord"):
        icrs_positions("1 2")


def test_download_check_wants_the_whole_header_and_data_not_the_padding():
    """What docs/cutouts.rst promises of the check of every downloaded FITS body."""
    import io

    from astropy.io import fits

    from astro_mantis.exceptions import InvalidResponseError
    from astro_mantis.fetch import _check_fits_body

    buf = io.BytesIO()
    fits.PrimaryHDU(np.ones((10, 10), np.float32)).writeto(buf)
    body = buf.getvalue()
    needed = 2880 + 10 * 10 * 4
    _check_fits_body(body)
    _check_fits_body(body[:needed])  # the last block's padding holds nothing
    with pytest.raises(InvalidResponseError, match="truncated"):
        _check_fits_body(body[:needed - 1])
    with pytest.raises(InvalidResponseError, match="truncated"):
        _check_fits_body(body[:2000])  # no END card
