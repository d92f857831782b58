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
