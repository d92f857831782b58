# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Output tables: every advertised format keeps the data and the provenance metadata."""
import numpy as np
import pytest
from astropy.table import MaskedColumn, Table

from astro_mantis.tableio import OutputError, check_writable, read_table, write_table

META = {"z_model": "mantis-mini", "z_sha256": "ab" * 32, "z_tta": False, "z_nbins": 400,
        "z_srv": "galex=http://127.0.0.1:1/viewer|galex"}


def _table():
    t = Table({"ra": [1.0, 2.0], "dec": [3.0, 4.0]})
    t["z_pdf"] = MaskedColumn(np.ones((2, 400), np.float32), mask=[[False] * 400, [True] * 400])
    t["z_mean"] = MaskedColumn([0.1, 0.0], mask=[False, True])
    t["z_flags"] = np.array([0, 512], np.int32)
    t.meta.update(META)
    return t


@pytest.mark.parametrize("name", ["o.fits", "o.ecsv", "o.csv", "o.vot", "o.xml", "o.h5",
                                  "o.parquet"])
def test_round_trip_keeps_data_and_meta(tmp_path, name):
    if name.endswith((".h5",)):
        pytest.importorskip("h5py")
    if name.endswith(".parquet"):
        pytest.importorskip("pyarrow")
    t = _table()
    write_table(t, tmp_path / name)
    back = read_table(tmp_path / name)
    assert back["z_pdf"].shape == (2, 400)
    assert bool(np.ma.getmaskarray(back["z_mean"])[1])
    meta = {str(k).lower(): v for k, v in back.meta.items()}
    for key, value in META.items():
        assert meta[key] == value, (key, meta.get(key))
    with pytest.raises(FileExistsError):
        write_table(t, tmp_path / name)


def test_check_writable_finds_output_problems_first(tmp_path):
    t = _table()
    cols = {"z_extra": ((400,), np.float32)}
    check_writable(tmp_path / "ok.fits", t, cols, META)
    assert not list(tmp_path.iterdir())  # the probe is removed
    with pytest.raises(OutputError, match="does not exist"):
        check_writable(tmp_path / "missing" / "o.fits", t)
    with pytest.raises(OutputError, match="is a directory"):
        check_writable(tmp_path, t)
    with pytest.raises(OutputError, match="cannot tell the format"):
        check_writable(tmp_path / "o.weird", t)
    (tmp_path / "old.fits").write_bytes(b"x")
    with pytest.raises(OutputError, match="--overwrite"):
        check_writable(tmp_path / "old.fits", t)
    check_writable(tmp_path / "old.fits", t, existing_ok=True)
    # metadata FITS cannot hold is refused before the job, not lost after it
    bad = t.copy()
    bad.meta["nested"] = {"a": {"b": 1}}
    with pytest.raises(OutputError, match="would lose information"):
        check_writable(tmp_path / "n.fits", bad)
    check_writable(tmp_path / "n.ecsv", bad)
    # an astropy format that cannot hold a 400-bin column
    with pytest.raises(OutputError, match="cannot write"):
        check_writable(tmp_path / "o.txt", t, format="ascii.csv")


#: Metadata whose text looks like another type: a VOTable INFO holds only text.
TYPED_META = {"z_model": "0123", "z_sha256": "0.10", "name_nan": "nan", "s_true": "True",
              "s_int": "42", "s_exp": "1e5", "empty": "", "spaced": " a b ",
              "i": 7, "big": 2 ** 70, "neg": -3, "f": 0.1, "f_whole": 1.0,
              "f_nan": float("nan"), "f_inf": float("-inf"), "t": True, "fl": False,
              "np_i": np.int64(3), "np_f": np.float64(2.5), "np_f32": np.float32(0.1),
              "np_b": np.bool_(False), "np_s": np.str_("007")}


def _expected(value):
    """What a value comes back as: its Python type (numpy scalars as Python's)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(str(value))
    return str(value)


@pytest.mark.parametrize("name", ["o.vot", "o.xml"])
def test_votable_meta_comes_back_with_its_type(tmp_path, name):
    """str, int, float and bool metadata come back as written: a numeric-looking model
    name or hash stays a string (a resume compares them as text)."""
    t = _table()
    t.meta.clear()
    t.meta.update(TYPED_META)
    write_table(t, tmp_path / name)
    back = read_table(tmp_path / name).meta
    for key, value in TYPED_META.items():
        want = _expected(value)
        got = back[key]
        assert type(got) is type(want), (key, got)
        if isinstance(want, float) and np.isnan(want):
            assert np.isnan(got), key
        else:
            assert got == want, (key, got)
        assert str(got) == str(value), key


def test_votable_meta_of_the_old_writer_is_still_read(tmp_path):
    """Files written before the types were recorded (INFO without utype), or by other
    writers: the type is guessed from the text, as before."""
    from astropy.io.votable import from_table
    from astropy.io.votable.tree import Info

    vot = from_table(Table({"ra": [1.0]}))
    vtab = vot.get_first_table()
    old = {"z_model": "mantis-mini", "z_tta": "False", "z_nbins": "400", "f": "0.25",
           "looks_numeric": "0123"}
    for key, text in old.items():
        vtab.infos.append(Info(name=key, value=text))
    vtab.infos.append(Info(name="other", value="12", utype="someone:else",
                           config=vot._get_version_checks()))
    vot.to_xml(str(tmp_path / "old.vot"))
    assert 'utype="someone:else"' in (tmp_path / "old.vot").read_text()
    meta = read_table(tmp_path / "old.vot").meta
    assert meta == {"z_model": "mantis-mini", "z_tta": False, "z_nbins": 400, "f": 0.25,
                    "looks_numeric": 123, "other": 12}


def _rich_meta():
    """Metadata beyond scalars: FITS HISTORY/COMMENT lists, nested dictionaries (the
    ``spec_match`` summary of ``astro-mantis match``), text with line breaks, and values
    only astropy's YAML holds."""
    from collections import OrderedDict

    import astropy.units as u
    from astropy.coordinates import SkyCoord

    return {"HISTORY": ["made by pipeline v1", "second step"], "COMMENT": ["a caveat"],
            "nested": {"a": [1, 2], "b": {"c": 3.5, "d": None, "e": True}},
            "spec_match": {"catalog": "sdss", "radius_arcsec": 1.5, "n_matched": 3,
                           "quality": "zWarning == 0"},
            "multiline": "first line\nsecond\tline",
            "pair": (1, 2), "array": np.arange(3), "ordered": OrderedDict(x=1, y=2),
            "nan_list": [1.0, float("nan")], "quantity": 3 * u.mag,
            "where": SkyCoord(10, 20, unit="deg")}


def _assert_same_meta(back, meta):
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    for key, value in meta.items():
        got = back[key]
        if isinstance(value, SkyCoord):
            assert isinstance(got, SkyCoord) and got.separation(value).arcsec < 1e-6, key
        elif isinstance(value, (np.ndarray, u.Quantity)):
            assert type(got) is type(value) and np.all(got == value), key
        elif key == "nan_list":
            assert got[0] == 1.0 and np.isnan(got[1])
        elif key == "ordered":  # as ECSV gives it back: a dict, in the same order
            assert isinstance(got, dict) and list(got.items()) == list(value.items())
        else:
            assert type(got) is type(value) and got == value, (key, got)


@pytest.mark.parametrize("name", ["o.vot", "o.xml", "o.ecsv"])
def test_votable_keeps_metadata_beyond_scalars(tmp_path, name):
    """Lists, dictionaries and astropy objects in the meta come back from a VOTable as
    from ECSV (they were dropped without a word), and check_writable passes them."""
    t = _table()
    meta = _rich_meta()
    t.meta.update(meta)
    check_writable(tmp_path / name, t, meta=META)
    write_table(t, tmp_path / name)
    back = read_table(tmp_path / name).meta
    _assert_same_meta(back, meta)
    for key, value in META.items():
        assert back[key] == value


@pytest.mark.parametrize("name", ["o.vot", "o.ecsv", "o.csv", "o.h5", "o.parquet"])
def test_metadata_no_format_can_hold_is_named(tmp_path, name):
    """Metadata YAML cannot represent is refused naming its key (a bare yaml
    RepresenterError once came out of the writer, or the VOTable dropped it)."""
    if name.endswith(".h5"):
        pytest.importorskip("h5py")
    if name.endswith(".parquet"):
        pytest.importorskip("pyarrow")
    t = _table()
    t.meta["handle"] = object()
    with pytest.raises(OutputError, match="metadata 'handle' .*cannot be written"):
        write_table(t, tmp_path / name)
    assert not (tmp_path / name).exists()
    with pytest.raises(OutputError, match="metadata 'handle'"):
        check_writable(tmp_path / name, t, meta=META)


def test_check_writable_compares_all_metadata(tmp_path):
    """Not only the provenance: an entry of the table's own meta that the format drops
    without a warning is refused before the job (only the run's keys were compared)."""
    t = Table({"ra": [1.0, 2.0]}, meta={"note": "keep me"})
    with pytest.raises(OutputError, match=r"would lose information \(metadata note\)"):
        check_writable(tmp_path / "o.txt", t, format="ascii.basic")
    check_writable(tmp_path / "o.vot", t)
    t.meta["nested"] = {"a": 1}
    with pytest.raises(OutputError, match="would lose information"):
        check_writable(tmp_path / "o.fits", t)
    check_writable(tmp_path / "o.vot", t)


@pytest.mark.parametrize("name", ["o.ecsv", "o.csv"])
def test_zero_rows_round_trip_through_ecsv(tmp_path, name):
    """A zero-row table with the 400-bin z_pdf comes back from ECSV and CSV (astropy's
    reader fails on zero rows of a multidimensional column: "shape mismatch between
    value and column specifier")."""
    t = _table()[:0]
    t["z_pdf"].unit = "1"
    t["z_pdf"].description = "probability density"
    write_table(t, tmp_path / name)
    back = read_table(tmp_path / name)
    assert len(back) == 0 and back.colnames == t.colnames
    assert back["z_pdf"].shape == (0, 400) and back["z_pdf"].dtype == np.float32
    assert back["z_flags"].dtype == np.int32
    assert back["z_pdf"].description == "probability density"
    for key, value in META.items():
        assert back.meta[key] == value
    check_writable(tmp_path / name, t, meta=META, overwrite=True)
    # a file with rows that fails for another reason still says why
    (tmp_path / "bad.ecsv").write_text((tmp_path / name).read_text().replace(
        "float32[400]", "float32[3]") + '"[1, 2]" 0 0 0 0\n')
    with pytest.raises(ValueError):
        read_table(tmp_path / "bad.ecsv")
