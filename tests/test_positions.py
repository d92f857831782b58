# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""astro_mantis.positions: the one parser of sky positions."""
import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.table import MaskedColumn, Table

from astro_mantis.positions import (angle_degrees, check_degrees, column_degrees,
                                    coordinate_positions, missing_column_error, resolve_name,
                                    table_positions)


def test_out_of_range_positions_are_flagged_not_wrapped():
    pos = check_degrees([400.0, -10.0, 10.0, 360.0, 0.0, 10.0, np.nan],
                        [0.0, 0.0, 95.0, 1.0, -90.0, 1.0, 1.0])
    assert pos.good.tolist() == [False, False, False, True, True, True, False]
    assert "right ascension 400 outside [0, 360]" in pos.reason[0]
    assert "right ascension -10 outside" in pos.reason[1]
    assert "declination 95 outside [-90, 90]" in pos.reason[2]
    assert pos.reason[6] == "NaN or masked position"
    assert np.isnan(pos.ra[0]) and np.isnan(pos.dec[0])  # never a wrapped 40 deg
    assert pos.coord.ra.deg[5] == pytest.approx(10.0)


def test_sexagesimal_and_decimal_string_columns():
    t = Table({"ra": ["12:20:05.8", "12h20m05.8s", "185.0242", "garbage", ""],
               "dec": ["+47:11:43", "47d11m43s", "47.1953", "+47:11:43", "+47:11:43"]})
    pos = table_positions(t)
    assert pos.good.tolist() == [True, True, True, False, False]
    assert pos.ra[0] == pytest.approx(185.0241667, abs=1e-6)  # hours by default
    assert pos.ra[1] == pytest.approx(pos.ra[0])
    assert pos.ra[2] == pytest.approx(185.0242)  # a plain number is degrees
    assert pos.dec[0] == pytest.approx(47.1952778, abs=1e-6)
    assert "cannot read right ascension 'garbage'" in pos.reason[3]
    # a unit on the column (or stated) wins over the hours default
    t["ra"].unit = u.deg
    assert table_positions(t[:1]).ra[0] == pytest.approx(12 + 20 / 60 + 5.8 / 3600)
    t2 = Table({"ra": ["12:20:05.8"], "dec": ["+47:11:43"]})
    assert table_positions(t2, ra_unit="deg").ra[0] == pytest.approx(12.33494, abs=1e-5)


def test_a_declination_in_hours_is_unreadable_not_thirty_degrees():
    """'2h' as a declination was once read as 30 deg (hours accepted for any angle)."""
    t = Table({"dec": ["2h", "-01h30m00s", "+02d30m00s", "-12:30:00"]})
    deg, reason = column_degrees(t, "dec", what="declination")
    assert np.isnan(deg[:2]).all()
    assert reason[0].startswith("cannot read declination '2h'")
    assert reason[1].startswith("cannot read declination '-01h30m00s'")
    assert "hours are for right ascension" in reason[0]
    np.testing.assert_allclose(deg[2:], [2.5, -12.5])
    ra, _ = column_degrees(Table({"ra": ["2h", "10.5"]}), "ra", what="right ascension")
    np.testing.assert_allclose(ra, [30.0, 10.5])


def test_a_string_column_of_no_angles_is_an_error():
    t = Table({"ra": ["a", "b"], "dec": [1.0, 2.0]})
    with pytest.raises(ValueError, match="none of its values reads as an angle"):
        table_positions(t)


def test_units_masks_and_skycoord():
    t = Table({"ra": MaskedColumn([1.0, 2.0], mask=[False, True], unit=u.rad),
               "dec": [0.1, 0.2] * u.rad})
    pos = table_positions(t)
    assert pos.ra[0] == pytest.approx(np.degrees(1.0)) and not pos.good[1]
    with pytest.raises(ValueError, match="not an angle"):
        column_degrees(Table({"x": [1.0] * u.m}), "x")
    sc = SkyCoord([10, 20] * u.deg, [5, 95 - 90] * u.deg, frame="galactic")
    cp = coordinate_positions(sc)
    assert cp.good.all() and np.allclose(cp.coord.galactic.l.deg, [10, 20])
    with pytest.raises(TypeError, match="SkyCoord"):
        coordinate_positions([1, 2])


def _fits_round_trip(ra, dec, unit):
    """A table as read back from a FITS file whose position columns have TUNIT ``unit``."""
    import io

    from astropy.io import fits

    cols = [fits.Column(name="RA", format="D", unit=unit, array=np.array(ra, float)),
            fits.Column(name="DEC", format="D", unit=unit, array=np.array(dec, float))]
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols)]).writeto(buf)
    buf.seek(0)
    return Table.read(buf, format="fits")


@pytest.mark.parametrize("unit, factor", [
    ("deg", 1.0), ("degree", 1.0), ("degrees", 1.0), ("DEGREES", 1.0), ("Degrees", 1.0),
    ("decimal degrees", 1.0), ("hours", 15.0), ("h:m:s", 15.0), ("h", 15.0),
    ("radians", np.degrees(1.0)), ("arcsecs", 1 / 3600)])
def test_catalogue_spellings_of_angular_units_are_understood(unit, factor):
    """FITS catalogues write TUNIT 'degree', 'DEGREES', 'hours' ..., which astropy's FITS
    reader leaves unrecognised: before, the column was refused as having 'unit degree,
    which is not an angle'."""
    t = _fits_round_trip([0.5], [0.1], unit)
    pos = table_positions(t, ra="RA", dec="DEC")
    assert pos.ra[0] == pytest.approx(0.5 * factor) and pos.good[0]
    assert column_degrees(t, "DEC", "declination")[0][0] == pytest.approx(0.1 * factor)
    # the same unit set on a column in the session (astropy leaves it unrecognised too)
    mem = Table({"ra": [0.5], "dec": [0.1]})
    mem["ra"].unit = unit
    assert column_degrees(mem, "ra", "right ascension")[0][0] == pytest.approx(0.5 * factor)
    # text in such a unit: sexagesimal 'degrees' text is degrees, 'hours' text hours
    txt = Table({"ra": ["10:30:00"], "dec": ["2"]})
    txt["ra"].unit = unit
    if factor in (1.0, 15.0):
        assert table_positions(txt).ra[0] == pytest.approx(10.5 * factor)


def test_an_unrecognised_unit_is_named_and_ra_unit_replaces_it():
    t = _fits_round_trip([150.1], [2.2], "furlongs")
    with pytest.raises(ValueError) as err:
        table_positions(t, ra="RA", dec="DEC")
    message = str(err.value)
    assert "'RA' has unit 'furlongs', which is not a unit astropy recognises" in message
    assert "ra_unit" in message and "--ra-unit" in message and "not an angle" not in message
    with pytest.raises(ValueError, match="'DEC' has unit 'furlongs'.*dec_unit"):
        column_degrees(t, "DEC", "declination")
    # the unit the caller gives replaces an unrecognised one (not a recognised one)
    pos = table_positions(t, ra="RA", dec="DEC", ra_unit="deg", dec_unit="degrees")
    assert (pos.ra[0], pos.dec[0]) == pytest.approx((150.1, 2.2))
    # units given by the caller are read the same way; an unknown one is named
    text = Table({"ra": ["10:00:24"], "dec": ["+02:12:00"]})
    assert table_positions(text, ra_unit="hours").ra[0] == pytest.approx(150.1)
    assert table_positions(text, ra_unit="Degrees").ra[0] == pytest.approx(10.00667,
                                                                           abs=1e-5)
    with pytest.raises(ValueError, match="unit 'parsecs' given for the right ascension is "
                                         "not a unit astropy recognises"):
        table_positions(text, ra_unit="parsecs")
    # a recognised unit that is not an angle is still refused as such
    metres = _fits_round_trip([1.0], [2.0], "m")
    with pytest.raises(ValueError, match="has unit m, which is not an angle"):
        table_positions(metres, ra="RA", dec="DEC")


def test_missing_column_suggests_the_other_case():
    t = Table({"RA": [1.0], "DEC": [2.0]})
    with pytest.raises(KeyError, match=r"'ra' not found.*RA, DEC\. Did you mean --ra-col RA\?"):
        table_positions(t, options=("--ra-col", "--dec-col"))
    assert "Did you mean 'DEC'?" in str(missing_column_error(t, "dec"))


def test_resolve_name_reads_positions_and_explains_offline_names():
    c = resolve_name("12:20:05.8 +47:11:43")
    assert c.ra.deg == pytest.approx(185.0241667, abs=1e-6)
    assert resolve_name("185.0242, 47.1953").dec.deg == pytest.approx(47.1953)
    with pytest.raises(ValueError, match="(?s)cannot resolve 'M101'.*needs the network"):
        resolve_name("M101")
    with pytest.raises(ValueError, match="empty"):
        resolve_name("  ")


@pytest.mark.parametrize("text, what", [
    ("10 95", "declination 95 outside"), ("10, -91.5", "declination -91.5 outside"),
    ("400 10", "right ascension 400 outside"),
    ("10:00:00 +95:00:00", "declination 95 outside"),
    ("25:00:00 +10:00:00", "'hours'"), ("-10 5", "right ascension -10 outside")])
def test_an_out_of_range_position_is_reported_as_such_not_sent_to_sesame(text, what,
                                                                          monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("sent to the name resolver")

    monkeypatch.setattr(SkyCoord, "from_name", no_network)
    with pytest.raises(ValueError, match=what) as info:
        resolve_name(text)
    assert "Sesame" not in str(info.value) and "network" not in str(info.value)


@pytest.mark.parametrize("text, what, unit, expected", [
    ("12:20:05.8", "right ascension", None, 185.0241667),
    ("12 20 05.8", "right ascension", None, 185.0241667),
    ("12h20m05.8s", "right ascension", None, 185.0241667),
    ("185d01m27s", "right ascension", None, 185.0241667),  # a unit in the text wins
    ("185.0242", "right ascension", None, 185.0242),  # a plain number is degrees
    ("12.5", "right ascension", "hourangle", 187.5),  # ... or in the unit given
    ("12:30:00", "right ascension", "deg", 12.5),
    ("+47:11:43", "declination", None, 47.1952778),
    ("-30d30m", "declination", None, -30.5),
    ("47\u00b011\u203243\u2033", "declination", None, 47.1952778),
])
def test_angle_degrees_reads_text(text, what, unit, expected):
    assert angle_degrees(text, what, unit) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("text, what, words", [
    ("2h", "declination", "cannot read declination '2h': .*hours are for right ascension"),
    ("garbage", "right ascension", "cannot read right ascension 'garbage': "),
    ("25:00:00", "right ascension", "'hours' .* range"),
    ("  ", "declination", "cannot read declination ''"),
])
def test_angle_degrees_refuses(text, what, words):
    with pytest.raises(ValueError, match=words):
        angle_degrees(text, what)


def test_position_strings_refuse_a_declination_in_hours():
    """resolve_name once read '10:00:00 2h' as Dec +30 deg; columns and the web service
    already refused hours there. All three now read text through angle_degrees."""
    with pytest.raises(ValueError, match="hours are for right ascension"):
        resolve_name("10:00:00 2h")
    c = resolve_name("150d 2d30m")
    assert (c.ra.deg, c.dec.deg) == pytest.approx((150.0, 2.5))


def test_cartesian_skycoords_and_zero_length_vectors():
    """Positions held as vectors are read by their direction (a Cartesian SkyCoord
    raised AttributeError: no attribute 'ra'); a zero-length vector has none and is an
    invalid position, not (0, 0)."""
    from astro_mantis.positions import icrs_positions

    icrs = SkyCoord([150.1, 10.0], [2.2, -45.0], unit="deg")
    cart = SkyCoord(icrs.cartesian, frame="icrs", representation_type="cartesian")
    pos = coordinate_positions(cart)
    assert pos.good.all() and np.allclose(pos.ra, [150.1, 10.0])
    assert np.allclose(pos.dec, [2.2, -45.0])
    galactic = icrs.galactic
    galactic.representation_type = "cartesian"
    assert np.allclose(coordinate_positions(galactic).ra, [150.1, 10.0])
    vectors = SkyCoord(x=[1.0, 0.0, 0.0], y=[0.0, 0.0, 2.0], z=[0.0, 0.0, 0.0], unit="kpc",
                       representation_type="cartesian")
    coords, pos = icrs_positions(vectors)
    assert pos.good.tolist() == [True, False, True]
    assert "zero-length" in pos.reason[1] and np.isnan(pos.ra[1])
    assert np.allclose(coords.ra.deg[[0, 2]], [0.0, 90.0]) and np.isnan(coords.dec.deg[1])
    # a SkyCoord column of vectors in a table
    t = Table({"pos": cart})
    assert table_positions(t, coord="pos").good.all()


def test_a_multidimensional_skycoord_column_is_refused():
    """One position per row, as for ra/dec columns (it gave unrelated shape errors)."""
    sc = SkyCoord([[150.1, 150.2], [10.0, 10.1]], [[2.2, 2.3], [1.0, 1.1]], unit="deg")
    t = Table({"pos": sc})
    with pytest.raises(ValueError, match=r"coordinate column 'pos' has shape \(2, 2\); "
                                         "expected one value per row"):
        table_positions(t, coord="pos")


def test_object_columns_of_text_or_numbers_with_none():
    """A table made from pandas text with None (or VOTable variable-length text) has an
    object column: it is read as text or numbers, None masked, not refused."""
    t = Table({"ra": np.array(["12:20:05.8", None, "185.0242"], dtype=object),
               "dec": np.array([47.1953, None, 47.1953], dtype=object)})
    pos = table_positions(t)
    assert pos.good.tolist() == [True, False, True]
    assert pos.ra[0] == pytest.approx(185.0241667, abs=1e-6)
    assert pos.reason[1] == "NaN or masked position"
    mixed = Table({"ra": np.array(["10", 3.0], dtype=object), "dec": [1.0, 2.0]})
    with pytest.raises(ValueError, match="not numeric"):
        table_positions(mixed)
