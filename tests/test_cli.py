"""End-to-end tests of the ``astro-mantis`` command, through real loopback HTTP servers."""
import numpy as np
import pytest
from astropy import units as u
from astropy.table import Table

from astro_mantis import MantisFlag, MultiSurveyCutout, conf
from astro_mantis.cli import EXIT_BAD_INPUT, EXIT_OK, main
from astro_mantis.demo import demo_positions
from astro_mantis.testing.fixtures import survey_server  # noqa: F401  (pytest fixture)

SURVEYS = ("galex", "panstarrs", "unwise")


def _table(path, ra, dec, **cols):
    t = Table({"ra": np.asarray(ra, float), "dec": np.asarray(dec, float), **cols})
    t.write(path, format="ascii.ecsv", overwrite=True)
    return path


def test_cutouts_table_end_to_end(survey_server, tmp_path, capsys):  # noqa: F811
    # rows: ordinary, NaN (bad), south of -30 (no PS1), ordinary, dec out of range (bad)
    ra = [150.1, np.nan, 40.0, 210.5, 10.0]
    dec = [2.2, 5.0, -45.0, 54.3, 95.0]
    src = _table(tmp_path / "targets.ecsv", ra, dec, name=["a", "b", "c", "d", "e"])
    out = tmp_path / "out"

    assert main(["cutouts", str(src), "--out", str(out), "--no-progress"]) == EXIT_OK

    summary = Table.read(out / "summary.ecsv")
    assert len(summary) == 5
    assert list(summary["row"]) == [0, 1, 2, 3, 4]
    assert summary["ra"].unit == u.deg
    np.testing.assert_allclose(summary["ra"][[0, 2, 3]], [150.1, 40.0, 210.5])
    assert np.isnan(summary["ra"][1])
    for s in SURVEYS:
        assert f"status_{s}" in summary.colnames

    flags = [MantisFlag(int(f)) for f in summary["flags"]]
    # good rows: everything fetched, one file each, readable
    for i in (0, 3):
        assert flags[i] & (MantisFlag.BAD_COORDINATE | MantisFlag.FETCH_FAILED
                           | MantisFlag.OUT_OF_FOOTPRINT) == 0
        assert [summary[f"status_{s}"][i] for s in SURVEYS] == ["fetched"] * 3
        assert summary["file"][i] == f"cutout_{i:06d}.fits"
        cut = MultiSurveyCutout.read(out / summary["file"][i])
        assert list(cut.surveys) == list(SURVEYS)
        assert cut.surveys["panstarrs"].data.shape == (5, 170, 170)
        assert cut.coord.ra.deg == pytest.approx(ra[i])
        assert cut.coord.dec.deg == pytest.approx(dec[i])
    # south of -30: PS1 out of footprint, the rest fetched, a file without PS1
    assert flags[2] == MantisFlag.PANSTARRS_MISSING | MantisFlag.OUT_OF_FOOTPRINT
    assert summary["status_panstarrs"][2] == "out of footprint"
    cut = MultiSurveyCutout.read(out / "cutout_000002.fits")
    assert "panstarrs" in cut.missing and set(cut.surveys) == {"galex", "unwise"}
    # bad coordinates: flagged, no file, row kept
    for i in (1, 4):
        assert flags[i] & MantisFlag.BAD_COORDINATE
        assert summary["file"].mask[i]
        assert [summary[f"status_{s}"][i] for s in SURVEYS] == ["bad coordinate"] * 3
        assert not (out / f"cutout_{i:06d}.fits").exists()
    assert sorted(p.name for p in out.glob("*.fits")) == [
        "cutout_000000.fits", "cutout_000002.fits", "cutout_000003.fits"]

    # PS1 listings are batched: one POST for the three positions it covers
    assert survey_server.counts["ps1filenames"] == 1
    assert survey_server.counts["fitscut"] == 10
    assert survey_server.counts["fits-cutout"] == 6
    text = capsys.readouterr().out
    assert "5 row(s): 3 cutout file(s) written, 2 row(s) with a bad coordinate" in text
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("panstarrs"))
    assert line.split()[1:] == ["2", "0", "1", "0"]  # fetched, cached, not covered, failed

    assert (tmp_path / "panstarrs").is_dir()  # the cache went to conf.cache_dir
    # a rerun is served from the cache: no request at all, same row-aligned summary
    survey_server.reset()
    assert main(["cutouts", str(src), "--out", str(out), "--no-progress"]) == EXIT_OK
    assert sum(survey_server.counts.values()) == 0
    again = Table.read(out / "summary.ecsv")
    assert list(again["status_galex"][[0, 2, 3]]) == ["cached"] * 3
    assert list(again["status_panstarrs"]) == ["cached", "bad coordinate", "out of footprint",
                                               "cached", "bad coordinate"]
    assert list(again["flags"]) == list(summary["flags"])


def test_cutouts_columns_with_units_and_options(survey_server, tmp_path):  # noqa: F811
    t = Table()
    t["RAJ2000"] = [10.0, 20.0] * u.hourangle  # 150 and 300 degrees
    t["DEJ2000"] = [2.2, 30.0] * u.deg
    src = tmp_path / "t.ecsv"
    t.write(src)
    out = tmp_path / "o"
    assert main(["cutouts", str(src), "--out", str(out), "--ra-col", "RAJ2000",
                 "--dec-col", "DEJ2000", "--surveys", "unwise", "--no-cache",
                 "--no-progress"]) == EXIT_OK
    summary = Table.read(out / "summary.ecsv")
    np.testing.assert_allclose(summary["ra"], [150.0, 300.0])
    assert list(summary["status_unwise"]) == ["fetched", "fetched"]
    assert "status_galex" not in summary.colnames
    assert dict(survey_server.counts) == {"fits-cutout": 2}
    cut = MultiSurveyCutout.read(out / "cutout_000001.fits")
    assert cut.coord.ra.deg == pytest.approx(300.0)
    assert list(cut.surveys) == ["unwise"]
    # --no-cache: nothing written to the cache directory (the fixture's tmp_path)
    assert not (tmp_path / "unwise").exists()


def test_cutouts_missing_column(tmp_path, capsys):
    src = _table(tmp_path / "t.ecsv", [1.0], [2.0], name=["x"])
    out = tmp_path / "out"
    assert main(["cutouts", str(src), "--out", str(out), "--ra-col", "RA"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "column 'RA' not found" in err
    assert "ra, dec, name" in err
    assert not out.exists()


@pytest.mark.parametrize("argv, message", [
    (["--surveys", "galex,sdss"], "unknown survey 'sdss'"),
    (["--format", "votable"], "cannot read table"),
])
def test_cutouts_bad_options(tmp_path, capsys, argv, message):
    src = _table(tmp_path / "t.ecsv", [1.0], [2.0])
    assert main(["cutouts", str(src), "--out", str(tmp_path / "o"), *argv]) == EXIT_BAD_INPUT
    assert message in capsys.readouterr().err


def test_cutouts_unreadable_inputs(tmp_path, capsys):
    assert main(["cutouts", str(tmp_path / "nope.ecsv"), "--out", str(tmp_path)]) \
        == EXIT_BAD_INPUT
    assert "does not exist" in capsys.readouterr().err
    t = Table({"ra": ["a", "b"], "dec": [1.0, 2.0]})
    t.write(tmp_path / "s.ecsv")
    assert main(["cutouts", str(tmp_path / "s.ecsv"), "--out", str(tmp_path)]) == EXIT_BAD_INPUT
    assert "column 'ra' is not numeric" in capsys.readouterr().err
    assert main(["cutouts", str(tmp_path / "s.ecsv")]) == EXIT_BAD_INPUT  # --out is required
    assert "--out" in capsys.readouterr().err


@pytest.mark.parametrize("argv, expected", [
    ([], ["predict", "cutouts", "demo", "train", "Exit status"]),
    (["cutouts"], ["TABLE", "--out", "--ra-col", "--dec-col", "--surveys", "--no-cache",
                   "--format", "summary.ecsv", "cutout_NNNNNN.fits"]),
    (["demo"], ["--out", "--n", "./astro_mantis_demo", "photoz.fits", "metrics.ecsv",
                "photoz_summary.png", "no network", "simulated"]),
    (["predict"], ["INPUT", "--output", "--ra-col", "--dec-col", "--coord-col", "--ebv-col",
                   "--model", "--weights", "--surveys", "--batch-size", "--chunk-size",
                   "--device", "--no-cache", "--resume", "--overwrite", "z_pdf", "z_flags",
                   "NOT_ESTIMATED", "Exit status"]),
])
def test_help(capsys, argv, expected):
    assert main([*argv, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for word in expected:
        assert word in text


def test_help_names_every_column_written(capsys):
    """``predict --help`` and ``demo --help`` name every column the commands write, and
    no redshift column they do not write."""
    import re

    from astro_mantis.demo import demo_table
    from astro_mantis.table import OOD_KEY, OUTPUT_KEYS

    added = [f"z_{key}" for key in OUTPUT_KEYS + (OOD_KEY,)]
    for command, columns in (("predict", added), ("demo", demo_table(3).colnames + added)):
        assert main([command, "--help"]) == 0
        text = capsys.readouterr().out
        missing = [c for c in columns if not re.search(rf"(?<![\w-]){c}(?![\w-])", text)]
        assert not missing, f"{command} --help does not name {missing}"
        # and it names no redshift column that is not written
        assert set(re.findall(r"(?<![\w-])z_[a-z0-9]+(?![\w-])", text)) <= set(columns)


def test_no_command_prints_help(capsys):
    assert main([]) == EXIT_BAD_INPUT
    assert "cutouts" in capsys.readouterr().out


def test_demo_positions():
    from astro_mantis.simulate import SampleSky

    sky = SampleSky()
    ra, dec, labels, rows = demo_positions(36, sky=sky)
    assert len(ra) == len(dec) == len(labels) == len(rows) == 36
    assert np.sum(dec < -30) >= 2
    assert np.sum(np.isnan(ra)) == 1 and rows[np.isnan(ra)][0] == -1
    assert labels[1:3] == ["south of PS1 (dec < -30)", "GALEX coverage hole"]
    assert not sky.galex_covered((ra[2], dec[2]))
    good = rows >= 0
    # every valid position is a sample galaxy, each used once
    np.testing.assert_array_equal(ra[good], np.asarray(sky.catalog["ra"])[rows[good]])
    np.testing.assert_array_equal(dec[good], np.asarray(sky.catalog["dec"])[rows[good]])
    assert len(set(rows[good])) == good.sum()
    again = demo_positions(36, sky=sky)
    np.testing.assert_array_equal(ra, again[0])  # deterministic
    assert len(demo_positions(3, sky=sky)[0]) == 3
    # by default every sample galaxy once, plus the invalid position
    ra_all, _, _, rows_all = demo_positions(sky=sky)
    assert len(ra_all) == len(sky.catalog) + 1
    assert sorted(rows_all[rows_all >= 0]) == list(range(len(sky.catalog)))
    with pytest.raises(ValueError, match="at most"):
        demo_positions(10_000, sky=sky)


def test_demo_too_many_positions(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "d"), "--n", "10000"]) == EXIT_BAD_INPUT
    assert "at most" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_demo(tmp_path, capsys):
    before = (conf.panstarrs_url, conf.legacysurvey_url, conf.cache_dir)
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--n", "8", "--no-progress"]) == EXIT_OK
    assert (conf.panstarrs_url, conf.legacysurvey_url, conf.cache_dir) == before
    names = {p.name for p in out.iterdir()}
    assert {"photoz.fits", "metrics.ecsv", "photoz_summary.png", "row_000.png",
            "row_001.png", "row_002.png"} == names
    for name in ("photoz_summary.png", "row_000.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    t = Table.read(out / "photoz.fits")
    assert len(t) == 8 and t["z_pdf"].shape == (8, 400)
    flags = [MantisFlag(int(f)) for f in t["z_flags"]]
    assert flags[0] == MantisFlag.NONE
    assert flags[1] & MantisFlag.PANSTARRS_MISSING and flags[1] & MantisFlag.OUT_OF_FOOTPRINT
    assert flags[2] & MantisFlag.GALEX_MISSING
    assert flags[7] & MantisFlag.BAD_COORDINATE and flags[7] & MantisFlag.NOT_ESTIMATED
    assert np.isnan(t["z_mean"][7]) or np.ma.is_masked(t["z_mean"][7])
    # the rows are sample-sky galaxies, with their true redshifts; the PDFs are informative
    from astro_mantis.simulate import SampleSky

    catalog = SampleSky().catalog
    for i in range(7):
        row = catalog[int(t["sample_id"][i])]
        assert t["ra"][i] == row["ra"] and t["z_true"][i] == pytest.approx(row["z"])
    metrics = Table.read(out / "metrics.ecsv")
    m = dict(zip(metrics["metric"], metrics["value"]))
    assert metrics.meta["n"] == 7 and "SIMULATED" in metrics.meta["data"]
    assert 0 < m["nmad"] < 0.2 and 0 <= m["pit_ks"] <= 1
    text = capsys.readouterr().out
    assert "8 rows" in text and str(out) in text and "photoz.fits" in text
    assert "SIMULATED" in text and "NMAD" in text


def _sample_table(path, rows, **extra):
    from astro_mantis.simulate import SampleSky

    cat = SampleSky().catalog
    t = Table({"RAJ2000": np.asarray(cat["ra"][rows]) * u.deg,
               "DEJ2000": np.asarray(cat["dec"][rows]) * u.deg,
               "EBV": np.asarray(cat["ebv_csfd"][rows]), "name": [f"g{i}" for i in rows]})
    for k, v in extra.items():
        t[k] = v
    t.write(path, overwrite=True)
    return t


@pytest.fixture
def sample_server(tmp_path):
    from astro_mantis.simulate import SampleSky
    from astro_mantis.testing import SurveyServer

    with SurveyServer(sky=SampleSky()) as srv, srv.configure(conf), \
            conf.set_temp("cache_dir", str(tmp_path / "cache")), \
            conf.set_temp("backoff", 0.01), conf.set_temp("timeout", 5.0):
        yield srv


@pytest.mark.parametrize("suffix", ["fits", "ecsv", "parquet", "h5"])
def test_predict_end_to_end(sample_server, tmp_path, capsys, suffix):
    if suffix == "parquet":
        pytest.importorskip("pyarrow")
    if suffix == "h5":
        pytest.importorskip("h5py")
    src = tmp_path / "in.ecsv"
    t = _sample_table(src, [5, 6, 7, 5])
    out = tmp_path / f"out.{suffix}"
    argv = ["predict", str(src), "-o", str(out), "--ra-col", "RAJ2000", "--dec-col", "DEJ2000",
            "--ebv-col", "EBV", "--no-progress"]
    assert main(argv) == EXIT_OK
    back = Table.read(out, **({"path": "data"} if suffix == "h5" else {}))
    assert len(back) == 4 and list(back["name"]) == list(t["name"])
    assert back["z_pdf"].shape == (4, 400)
    assert np.allclose(back["z_mean"][0], back["z_mean"][3])  # same position
    assert not np.any(np.asarray(back["z_flags"]) & MantisFlag.DUST_UNKNOWN)
    text = capsys.readouterr().out
    assert "4 rows, 4 estimated, 0 not" in text and "3 positions processed" in text
    # an existing output is not replaced without --overwrite
    assert main(argv) == EXIT_BAD_INPUT
    assert "--overwrite" in capsys.readouterr().err


def test_predict_bad_input_and_resume(sample_server, tmp_path, capsys):
    src = tmp_path / "in.fits"
    _sample_table(src, [10, 11, 12, 13])
    out = tmp_path / "out.fits"
    base = ["predict", str(src), "-o", str(out), "--no-progress"]
    assert main(base) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "'ra' not found" in err and "RAJ2000, DEJ2000, EBV, name" in err
    cols = ["--ra-col", "RAJ2000", "--dec-col", "DEJ2000", "--ebv-col", "EBV"]
    assert main(base + cols + ["--model", "mantis-giant"]) == EXIT_BAD_INPUT
    assert "unknown model 'mantis-giant'" in capsys.readouterr().err
    assert main(base + cols + ["--ebv-col", "a,b,c"]) == EXIT_BAD_INPUT
    assert main(base + cols + ["--resume"]) == EXIT_BAD_INPUT
    assert "nothing to resume" in capsys.readouterr().err
    # without dust: a warning, flagged rows, still written
    assert main(base + cols[:4]) == EXIT_OK
    assert "dust unknown" in capsys.readouterr().err
    assert np.all(np.asarray(Table.read(out)["z_flags"]) & MantisFlag.DUST_UNKNOWN)
    # server failures mid-run: rows flagged, the run goes on; --resume completes them
    with conf.set_temp("retries", 0):
        sample_server.fail_next(4, kind="5xx", endpoint="fitscut")
        assert main(base + cols + ["--overwrite", "--no-cache"]) == EXIT_OK
    text = capsys.readouterr().out
    assert "NOT_ESTIMATED" in text and "--resume" in text
    first = Table.read(out)
    failed = (np.asarray(first["z_flags"]) & MantisFlag.FETCH_FAILED) != 0
    assert failed.any()
    assert main(["predict", str(src), "-o", str(out), "--resume", "--ebv-col", "EBV",
                 "--ra-col", "RAJ2000", "--dec-col", "DEJ2000", "--no-progress"]) == EXIT_OK
    done = Table.read(out)
    assert not np.any(np.asarray(done["z_flags"]) & MantisFlag.NOT_ESTIMATED)
    assert np.allclose(done["z_pdf"][~failed], first["z_pdf"][~failed])


# --------------------------------------------------------------------- issue 11
_COLS = ["--ra-col", "RAJ2000", "--dec-col", "DEJ2000"]


def test_predict_refuses_a_survey_subset_and_bad_devices(sample_server, tmp_path, capsys):
    src = tmp_path / "in.fits"
    _sample_table(src, [20, 21])
    out = tmp_path / "out.fits"
    base = ["predict", str(src), "-o", str(out), "--no-progress", "--ebv-col", "EBV"] + _COLS
    assert main(base + ["--surveys", "galex,panstarrs"]) == EXIT_BAD_INPUT
    assert "trained on galex, panstarrs, unwise" in capsys.readouterr().err
    assert main(base + ["--device", "banana"]) == EXIT_BAD_INPUT
    assert "--device 'banana'" in capsys.readouterr().err
    assert not out.exists() and sum(sample_server.counts.values()) == 0
    # upper-case columns: the error suggests the option that fixes it
    t = Table.read(src)
    t.rename_columns(["RAJ2000", "DEJ2000"], ["RA", "DEC"])
    t.write(src, overwrite=True)
    assert main(["predict", str(src), "-o", str(out), "--no-progress"]) == EXIT_BAD_INPUT
    assert "Did you mean --ra-col RA?" in capsys.readouterr().err


def test_predict_checks_its_output_before_any_work(sample_server, tmp_path, capsys):
    src = tmp_path / "in.ecsv"
    _sample_table(src, [22, 23])
    base = ["predict", str(src), "--no-progress", "--ebv-col", "EBV"] + _COLS
    for out, message in ((tmp_path / "nodir" / "o.fits", "does not exist"),
                         (tmp_path, "is a directory"),
                         (tmp_path / "o.unknown", "cannot tell the format")):
        assert main(base + ["-o", str(out)]) == EXIT_BAD_INPUT
        assert message in capsys.readouterr().err
    assert sum(sample_server.counts.values()) == 0  # found before fetching anything
    # the formats --help names all work, each keeping the run's settings
    from astro_mantis.table import run_settings
    from astro_mantis.tableio import read_table

    for name in ("o.vot", "o.csv"):
        assert main(base + ["-o", str(tmp_path / name)]) == EXIT_OK
        back = read_table(tmp_path / name)
        assert back["z_pdf"].shape == (2, 400)
        s = run_settings(back)
        assert s["model"] == "mantis-mini" and s["ebv"] == "col:EBV,EBV"
        assert len(s["input"]) == 64


def test_predict_with_every_fetch_failing_exits_non_zero(sample_server, tmp_path, capsys):
    src = tmp_path / "in.fits"
    _sample_table(src, [24, 25, 26])
    out = tmp_path / "out.fits"
    with conf.set_temp("retries", 0):
        sample_server.fail_next(1000, kind="5xx", endpoint="fitscut")
        status = main(["predict", str(src), "-o", str(out), "--no-progress", "--ebv-col",
                       "EBV", "--no-cache"] + _COLS)
    assert status == 3  # EXIT_NONE_ESTIMATED
    captured = capsys.readouterr()
    assert "panstarrs: failed: HTTP 503" in captured.out and "3 position(s)" in captured.out
    assert "no row could be estimated" in captured.err
    assert out.exists()  # the flagged rows are still written, for --resume


def test_resume_carries_the_first_runs_settings(sample_server, tmp_path, capsys):
    src = tmp_path / "in.fits"
    _sample_table(src, [27, 28, 29, 30])
    out = tmp_path / "out.fits"
    cache = tmp_path / "mycache"
    first = ["predict", str(src), "-o", str(out), "--no-progress", "--ebv-col", "EBV",
             "--tta", "--cache-dir", str(cache)] + _COLS
    with conf.set_temp("retries", 0):
        sample_server.fail_next(3, kind="5xx", endpoint="fitscut")
        assert main(first) == EXIT_OK
    text = capsys.readouterr().out
    assert f"--cache-dir {cache}" in text and "--resume" in text  # the printed hint
    before = Table.read(out)
    todo = (np.asarray(before["z_flags"]) & MantisFlag.NOT_ESTIMATED) != 0
    assert todo.any() and before.meta["Z_TTA"] is True
    # a different input is refused, naming the difference
    other = tmp_path / "other.fits"
    _sample_table(other, [31, 32, 33, 34])
    assert main(["predict", str(other), "-o", str(out), "--resume", "--no-progress"]) \
        == EXIT_BAD_INPUT
    assert "is not the input of the run" in capsys.readouterr().err
    # a setting given differently is refused
    assert main(["predict", str(src), "-o", str(out), "--resume", "--no-progress",
                 "--ebv", "0.02"] + _COLS) == EXIT_BAD_INPUT
    assert "dust source" in capsys.readouterr().err
    # the bare resume takes --ebv-col, --tta and the columns from the file
    assert main(["predict", str(src), "-o", str(out), "--resume", "--no-progress",
                 "--cache-dir", str(cache)]) == EXIT_OK
    done = Table.read(out)
    assert not np.any(np.asarray(done["z_flags"]) & MantisFlag.NOT_ESTIMATED)
    assert not np.any(np.asarray(done["z_flags"]) & MantisFlag.DUST_UNKNOWN)
    assert done.meta["Z_EBV"] == "col:EBV,EBV" and done.meta["Z_TTA"] is True
    assert np.array_equal(np.asarray(done["z_pdf"])[~todo], np.asarray(before["z_pdf"])[~todo])


def test_the_printed_resume_command_keeps_local_tiles_and_precision(tmp_path):
    """A run cut from local tiles is completed from them, not from the network."""
    import shlex

    from astro_mantis.cli.main import build_parser
    from astro_mantis.cli.predict import _resume_command

    argv = ["predict", "in.fits", "-o", "out.fits", "--tiles", "panstarrs=/data/ps 1",
            "--precision", "bfloat16", "--cache-dir", str(tmp_path)]
    words = shlex.split(_resume_command(build_parser().parse_args(argv)))
    assert words[words.index("--tiles") + 1] == "panstarrs=/data/ps 1"
    assert words[words.index("--precision") + 1] == "bfloat16"
    assert "--resume" in words
    plain = shlex.split(_resume_command(build_parser().parse_args(argv[:4])))
    assert "--tiles" not in plain and "--precision" not in plain  # auto: the recorded one

def test_dry_run_sends_and_writes_nothing(sample_server, tmp_path, capsys):
    src = tmp_path / "in.fits"
    _sample_table(src, [35, 36, 37])
    out = tmp_path / "out.fits"
    assert main(["predict", str(src), "-o", str(out), "--dry-run", "--ebv-col", "EBV"]
                + _COLS) == EXIT_OK
    text = capsys.readouterr().out
    assert "3 to process" in text and "request(s)" in text and "estimated time" in text
    assert not out.exists() and sum(sample_server.counts.values()) == 0
    assert main(["cutouts", str(src), "--out", str(tmp_path / "c"), "--dry-run"] + _COLS) \
        == EXIT_OK
    assert "to fetch" in capsys.readouterr().out and not (tmp_path / "c").exists()


def test_demo_services_plot_and_qp_offline(tmp_path, capsys):
    """No server fixture: --demo-services serves the sample sky; plot and qp from the shell."""
    import qp

    src = tmp_path / "in.fits"
    _sample_table(src, [40, 41])
    out = tmp_path / "out.ecsv"
    with conf.set_temp("cache_dir", str(tmp_path / "cache")):
        assert main(["predict", str(src), "-o", str(out), "--demo-services", "--no-progress",
                     "--ebv-col", "EBV", "--qp", str(tmp_path / "pdfs.hdf5")] + _COLS) == EXIT_OK
        assert "--demo-services" in capsys.readouterr().err
        table = Table.read(out)
        ens = qp.read(str(tmp_path / "pdfs.hdf5"))
        assert ens.npdf == 2 and list(ens.ancil["row"]) == [0, 1]
        assert np.allclose(ens.pdf(np.array([0.3]))[:, 0],
                           np.asarray(table["z_pdf"])[:, int(0.3 / 0.004)], rtol=1e-4)
        # the figure comes from the cache of the services the run used (those are gone)
        fig = tmp_path / "row1.png"
        assert main(["plot", str(out), "--row", "1", "-o", str(fig)]) == EXIT_OK
        assert fig.stat().st_size > 10_000
    assert main(["plot", str(out), "--row", "5", "-o", str(tmp_path / "x.png")]) \
        == EXIT_BAD_INPUT
    assert "row 5 does not exist" in capsys.readouterr().err


def test_plot_says_where_its_cutouts_came_from(sample_server, tmp_path):
    from astro_mantis import add_redshift_columns
    from astro_mantis.visualization import plot_redshift_row

    t = Table.read(_sample_table(tmp_path / "in.fits", [42]) and tmp_path / "in.fits")
    add_redshift_columns(t, ra="RAJ2000", dec="DEJ2000", ebv="EBV", progress=False)
    n = sum(sample_server.counts.values())
    fig = plot_redshift_row(t, 0)
    texts = [x.get_text() for x in fig.texts]
    assert any("services the table records" in x and sample_server.panstarrs_url.split("/")[2]
               in x for x in texts)
    assert sum(sample_server.counts.values()) == n  # answered from the cache of those services


def test_cutouts_interrupted_keeps_what_it_fetched(sample_server, tmp_path, monkeypatch):
    """Ctrl-C (KeyboardInterrupt) in the middle of a fetch: the cutouts written so far
    stay, and the summary says which rows were not fetched. The interrupt comes while
    the third chunk is being fetched, from the fetch itself: a SIGINT sent by a thread
    was seen to arrive at a moment where Python drops it (once in a CI run)."""
    from astro_mantis import Mantis
    from astro_mantis.cli import FetchInterrupted, fetch_and_write
    from astro_mantis.simulate import SampleSky

    cat = SampleSky().catalog
    ra, dec = np.asarray(cat["ra"][:12]), np.asarray(cat["dec"][:12])
    out = tmp_path / "cuts"
    real, calls = Mantis.get_cutouts, []

    def interrupted_on_the_third_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(Mantis, "get_cutouts", interrupted_on_the_third_chunk)
    with pytest.raises(FetchInterrupted) as info:
        fetch_and_write(ra, dec, out, progress=False, chunk_size=2)
    assert len(calls) == 3
    summary = Table.read(out / "summary.ecsv")
    assert summary.meta["interrupted"] is True and len(summary) == 12
    written = ~np.ma.getmaskarray(summary["file"])
    assert written.tolist() == [True] * 4 + [False] * 8
    for name in summary["file"][written]:
        assert MultiSurveyCutout.read(out / name).surveys
    assert set(summary["status_galex"][~written]) == {"not fetched"}
    assert info.value.summary is not None


def test_failed_final_write_keeps_the_earlier_output(tmp_path):
    """The issue's reproduction: predict with a file-size limit on its final write."""
    import resource
    import subprocess
    import sys

    src = tmp_path / "in.fits"
    _sample_table(src, list(range(40)))
    out = tmp_path / "p5.fits"
    cmd = [sys.executable, "-m", "astro_mantis.cli", "predict", str(src), "-o", str(out),
           "--demo-services", "--no-cache", "--no-progress", "--ebv-col", "EBV"] + _COLS
    assert subprocess.run(cmd, capture_output=True, timeout=300).returncode == EXIT_OK
    before = out.read_bytes()
    assert len(before) > 70_000

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))

    res = subprocess.run(cmd + ["--overwrite"], capture_output=True, text=True, timeout=300,
                         preexec_fn=limit)
    assert res.returncode == EXIT_BAD_INPUT and "is unchanged" in res.stderr
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if "tmp" in p.name] == []


# --------------------------------------------------------------------- audit findings (E)
def test_predict_reads_an_hdf5_table_at_any_path(sample_server, tmp_path, capsys):
    """An HDF5 input is read wherever its one table is stored (only path "data" was
    read: "cannot read table ..."); several tables without one at "data" are refused
    naming them."""
    pytest.importorskip("h5py")
    t = _sample_table(tmp_path / "in.ecsv", [5, 6])
    src = tmp_path / "other_path.h5"
    t.write(src, path="catalog/targets", serialize_meta=True)
    out = tmp_path / "out.h5"
    argv = ["predict", str(src), "-o", str(out), "--ebv-col", "EBV", "--no-progress"] + _COLS
    assert main(argv) == EXIT_OK
    back = Table.read(out, path="data")  # the output keeps path "data" (and --resume reads it)
    assert list(back["name"]) == ["g5", "g6"] and back["RAJ2000"].unit == u.deg
    assert main(argv[:4] + ["--resume", "--no-progress"]) == EXIT_OK
    t.write(src, path="second", append=True, serialize_meta=True)
    assert main(argv + ["--overwrite"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "holds 2 tables (catalog/targets, second)" in err


def test_predict_writes_zero_rows_and_rich_meta_it_can_read_back(sample_server, tmp_path,
                                                                 capsys):
    """A zero-row table goes to .ecsv and .csv and comes back (the read-back check failed
    with "shape mismatch between value and column specifier", exit 2); a VOTable output
    keeps the input's HISTORY and nested meta (dropped without a word)."""
    from astro_mantis.tableio import read_table

    t = _sample_table(tmp_path / "all.fits", [5, 6])
    t[:0].write(tmp_path / "zero.fits")
    for name in ("zero_out.ecsv", "zero_out.csv"):
        assert main(["predict", str(tmp_path / "zero.fits"), "-o", str(tmp_path / name),
                     "--ebv-col", "EBV", "--no-progress"] + _COLS) == EXIT_OK, \
            capsys.readouterr().err
        back = read_table(tmp_path / name)
        assert len(back) == 0 and back["z_pdf"].shape == (0, 400)
        assert back.meta["z_model"] == "mantis-mini"
    t.meta["HISTORY"] = ["made by pipeline v1"]
    t.meta["nested"] = {"a": [1, 2], "b": {"c": 3}}
    t.write(tmp_path / "meta.ecsv")
    out = tmp_path / "meta_out.vot"
    assert main(["predict", str(tmp_path / "meta.ecsv"), "-o", str(out), "--ebv-col", "EBV",
                 "--no-progress"] + _COLS) == EXIT_OK
    back = read_table(out)
    assert back.meta["HISTORY"] == ["made by pipeline v1"]
    assert back.meta["nested"] == {"a": [1, 2], "b": {"c": 3}}


# --------------------------------------------------------------------- audit findings (G)
#: Options of ``predict`` that OUTPUT does not record and that change what the run
#: writes, or where from: the printed resume command must carry each one given.
_OUTPUT_OPTIONS = {"prefix": "ms_", "weights": "w.safetensors", "device": "cpu",
                   "precision": "float32", "format": "fits", "output_format": "fits",
                   "qp": "pdfs.hdf5", "tiles": "panstarrs=/data/ps1", "cache_dir": "cache dir",
                   "chunk_size": "32", "batch_size": "16", "checkpoint_every": "120",
                   "no_cache": True,
                   "demo_services": True, "no_progress": True}
#: Options OUTPUT records (a bare --resume takes them from it) or that are the resume
#: command's own (input, output, --resume), or that never go into one.
_RECORDED = {"ra_col": "RA", "dec_col": "DEC", "ra_unit": "hourangle", "coord_col": "c",
             "ebv_col": "EBV", "ebv": "0.02", "model": "mantis-mini",
             "surveys": "galex,panstarrs,unwise", "tta": True}
_NOT_CARRIED = {"input", "output", "resume", "overwrite", "dry_run", "help"}


def test_the_printed_resume_command_carries_every_option_output_does_not_record():
    """--qp was dropped: following the printed command left the qp file with the first
    run's PDFs only. Every option of the parser is classified (a new one fails here
    until it is), and each output-affecting one given comes back from the command."""
    import argparse
    import shlex

    from astro_mantis.cli.main import build_parser
    from astro_mantis.cli.predict import _resume_command

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    predict = sub.choices["predict"]
    dests = {a.dest for a in predict._actions}
    assert dests == set(_OUTPUT_OPTIONS) | set(_RECORDED) | _NOT_CARRIED, \
        "classify the new predict option in this test (and in _resume_command)"
    options = {a.dest: a.option_strings[0] for a in predict._actions if a.option_strings}
    argv = ["predict", "in.fits", "-o", "out.fits"]
    for dest, value in {**_OUTPUT_OPTIONS, **_RECORDED}.items():
        argv += [options[dest]] if value is True else [options[dest], value]
    args = parser.parse_args(argv)
    words = shlex.split(_resume_command(args))
    assert words[:2] == ["astro-mantis", "predict"]
    again = parser.parse_args(words[1:])
    assert again.resume and again.input == "in.fits" and again.output == "out.fits"
    for dest in _OUTPUT_OPTIONS:
        assert getattr(again, dest) == getattr(args, dest), f"--{dest} is not carried"
    for dest in _RECORDED:  # taken from OUTPUT: left out
        assert getattr(again, dest) in (None, False), f"--{dest} need not be given again"


def _fail_in_chunk(monkeypatch, k, exc):
    """Make the table job's k-th chunk raise ``exc`` (an interrupt, a crash); returns
    the real ``_infer_chunk``, to put back."""
    import astro_mantis.table as T

    real, calls = T._infer_chunk, []

    def failing(job, chunk, cuts):
        calls.append(1)
        if len(calls) == k:
            raise exc
        return real(job, chunk, cuts)

    monkeypatch.setattr(T, "_infer_chunk", failing)
    return real


def test_an_interrupted_predict_prints_the_positions_done_and_a_complete_resume(
        sample_server, tmp_path, capsys, monkeypatch):
    """An interrupted run printed the positions planned as "processed", and its resume
    command without --qp: following it left the qp file with the first run's PDFs."""
    import shlex

    import qp

    import astro_mantis.table as T

    src = tmp_path / "in.fits"
    _sample_table(src, [50, 51, 52, 53, 54, 55])
    out, pdfs = tmp_path / "out.fits", tmp_path / "pdfs.hdf5"
    real = _fail_in_chunk(monkeypatch, 2, KeyboardInterrupt)
    assert main(["predict", str(src), "-o", str(out), "--no-progress", "--ebv-col", "EBV",
                 "--chunk-size", "2", "--qp", str(pdfs)] + _COLS) == 130
    captured = capsys.readouterr()
    assert "2 estimated, 4 not" in captured.out
    assert "2 of 6 positions processed" in captured.out
    assert qp.read(str(pdfs)).npdf == 2
    command = captured.err.split("complete it with: ")[1].strip()
    words = shlex.split(command)
    assert words[words.index("--qp") + 1] == str(pdfs)
    monkeypatch.setattr(T, "_infer_chunk", real)
    assert main(words[1:]) == EXIT_OK  # the printed command, as given
    assert "6 estimated, 0 not" in capsys.readouterr().out
    ens = qp.read(str(pdfs))
    assert ens.npdf == 6 and list(ens.ancil["row"]) == list(range(6))


def test_a_signal_during_the_final_write_is_held_until_it_is_done(sample_server, tmp_path,
                                                                   capsys, monkeypatch):
    """Ctrl-C during the final write threw every estimate away ("astro-mantis:
    interrupted", no file). The write is brief and atomic: the signal waits for it, then
    the command stops as interrupted (130), saying that the output is whole."""
    import os
    import signal

    import astro_mantis.cli.predict as P

    src = tmp_path / "in.fits"
    _sample_table(src, [56, 57])
    out = tmp_path / "out.fits"
    real = P.write_table

    def interrupted_write(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(P, "write_table", interrupted_write)
    assert main(["predict", str(src), "-o", str(out), "--no-progress", "--ebv-col", "EBV"]
                + _COLS) == 130
    err = capsys.readouterr().err
    assert out.exists(), "the estimates were thrown away"
    done = Table.read(out)
    assert not np.any(np.asarray(done["z_flags"]) & MantisFlag.NOT_ESTIMATED)
    assert "interrupted during the final write, which was finished first" in err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_interrupt_messages_say_how_to_complete_the_job(sample_server, tmp_path, capsys,
                                                        monkeypatch):
    """predict interrupted during its setup exited 130 saying nothing; train and
    build-training-set said only "astro-mantis: interrupted"."""
    import astro_mantis.models.inference as inference
    import astro_mantis.spectro.training_set as training_set
    import astro_mantis.training.pipeline as pipeline

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    src = tmp_path / "in.fits"
    _sample_table(src, [58])
    monkeypatch.setattr(inference, "get_model", interrupt)
    assert main(["predict", str(src), "-o", str(tmp_path / "o.fits"), "--ebv-col", "EBV",
                 "--no-progress"] + _COLS) == 130
    err = capsys.readouterr().err
    assert "nothing was written" in err and "same command" in err
    # train: no epoch done, then one done (a checkpoint of this run)
    data, run = tmp_path / "data", tmp_path / "run"
    data.mkdir()
    monkeypatch.setattr(pipeline, "fit_and_export", interrupt)
    assert main(["train", "--data", str(data), "--out", str(run), "--no-progress"]) == 130
    err = capsys.readouterr().err
    assert "before the first epoch finished" in err and "rerun the same command" in err

    def one_epoch_then_interrupt(*args, **kwargs):
        run.mkdir(exist_ok=True)
        (run / "checkpoint.pt").write_bytes(b"epoch 1")
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "fit_and_export", one_epoch_then_interrupt)
    assert main(["train", "--data", str(data), "--out", str(run), "--no-progress"]) == 130
    assert "rerun the same command with --resume" in capsys.readouterr().err
    # build-training-set: the manifest comes last, so the same command completes it
    monkeypatch.setattr(training_set, "build_training_set", interrupt)
    assert main(["build-training-set", str(src), "--out", str(tmp_path / "ts"),
                 "--z-col", "EBV", "--no-progress"] + _COLS) == 130
    err = capsys.readouterr().err
    assert "no training set is in" in err and "Rerun the same command to complete it" in err


def test_sigterm_stops_predict_as_ctrl_c_does(tmp_path):
    """SIGTERM (batch schedulers, timeout, docker stop) killed predict with no output at
    all; it now stops it as Ctrl-C does, with exit status 143: the rows done are
    written and the printed resume command completes them."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from astro_mantis.fetch import fetcher
    from astro_mantis.simulate import SampleSky
    from astro_mantis.testing import SurveyServer

    src = tmp_path / "in.fits"
    t = _sample_table(src, list(range(60, 84)))
    out, cache = tmp_path / "out.fits", tmp_path / "cache"
    with SurveyServer(sky=SampleSky()) as srv:
        with srv.configure(conf), conf.set_temp("cache_dir", str(cache)):
            # the first two chunks come from the cache, the others are slow
            from astropy.coordinates import SkyCoord

            fetcher.get_cutouts(SkyCoord(t["RAJ2000"][:8], t["DEJ2000"][:8]), progress=False)
        n0 = sum(srv.counts.values())
        srv.latency = 0.5
        script = (
            "import sys\n"
            "from astro_mantis import conf\n"
            f"conf.panstarrs_url, conf.legacysurvey_url = {srv.panstarrs_url!r}, "
            f"{srv.legacysurvey_url!r}\n"
            f"conf.cache_dir, conf.max_connections_per_host = {str(cache)!r}, 2\n"
            "from astro_mantis.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
        cmd = [sys.executable, "-c", script, "predict", str(src), "-o", str(out),
               "--no-progress", "--ebv-col", "EBV", "--chunk-size", "4",
               "--precision", "float32"] + _COLS
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + 120
        while sum(srv.counts.values()) == n0 and proc.poll() is None \
                and time.monotonic() < deadline:  # until chunk 3 is being fetched
            time.sleep(0.05)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        t_sent = time.monotonic()
        stdout, stderr = proc.communicate(timeout=60)
        took = time.monotonic() - t_sent
        assert proc.returncode == 143, (proc.returncode, stdout, stderr)
        assert took < 5.0, f"SIGTERM took {took:.1f} s to take effect"
        assert "of 24 positions processed" in stdout
        assert "--resume" in stderr
        first = Table.read(out)
        pending = (np.asarray(first["z_flags"]) & MantisFlag.NOT_ESTIMATED) != 0
        assert not pending[:4].any() and pending[8:].any()
        srv.latency = 0.0
        with srv.configure(conf), conf.set_temp("cache_dir", str(cache)):
            assert main(["predict", str(src), "-o", str(out), "--resume", "--no-progress"]) \
                == EXIT_OK
    done = Table.read(out)
    assert not np.any(np.asarray(done["z_flags"]) & MantisFlag.NOT_ESTIMATED)
    assert np.array_equal(np.asarray(done["z_pdf"])[~pending],
                          np.asarray(first["z_pdf"])[~pending])


def test_a_rerun_into_a_used_folder_never_leaves_a_summary_naming_other_positions(
        sample_server, tmp_path, monkeypatch):
    """A rerun into an --out folder of an earlier run overwrote its cutout files chunk
    by chunk but its summary only at the end: killed in between (SIGKILL), it left the
    old summary naming files that held other positions. The folder is checked at every
    chunk, as a kill at that moment would leave it."""
    from astro_mantis import Mantis
    from astro_mantis.cli import fetch_and_write
    from astro_mantis.simulate import SampleSky

    cat = SampleSky().catalog
    ra, dec = np.asarray(cat["ra"]), np.asarray(cat["dec"])
    out = tmp_path / "cuts"

    def check_the_folder():
        summary = Table.read(out / "summary.ecsv")
        named = ~np.ma.getmaskarray(summary["file"])
        for row in summary[named]:
            cut = MultiSurveyCutout.read(out / str(row["file"]))
            assert np.isclose(cut.coord.ra.deg, float(row["ra"])) \
                and np.isclose(cut.coord.dec.deg, float(row["dec"])), \
                f"{row['file']} holds another position than its summary row {row['row']}"
        return int(named.sum())

    fetch_and_write(ra[:6], dec[:6], out, progress=False, chunk_size=2)
    assert check_the_folder() == 6
    real, named = Mantis.get_cutouts, []

    def checked_then_fetched(*args, **kwargs):
        named.append(check_the_folder())
        return real(*args, **kwargs)

    monkeypatch.setattr(Mantis, "get_cutouts", checked_then_fetched)
    fetch_and_write(ra[10:16], dec[10:16], out, progress=False, chunk_size=2)
    assert named == [0, 0, 0]  # under way: the summary names no file
    assert check_the_folder() == 6
    summary = Table.read(out / "summary.ecsv")
    assert summary.meta["interrupted"] is False and summary.meta["in_progress"] is False


# ------------------------------------------------------------------ checkpoints
def test_a_predict_that_crashes_keeps_its_checkpoint_for_resume(sample_server, tmp_path,
                                                                capsys, monkeypatch):
    """A run killed without warning (out of memory, SIGKILL, a lost machine) left
    nothing but the cutout cache: OUTPUT was written only at the end. Checkpoints
    write it during the run; the printed --resume command completes it."""
    import shlex

    import astro_mantis.table as T

    src = tmp_path / "in.fits"
    _sample_table(src, [94, 95, 96, 97, 98, 99])
    out = tmp_path / "out.fits"
    real = _fail_in_chunk(monkeypatch, 3, MemoryError)
    argv = ["predict", str(src), "-o", str(out), "--no-progress", "--ebv-col", "EBV",
            "--chunk-size", "2", "--checkpoint-every", "0.001", "--precision", "float32"] + _COLS
    with pytest.raises(MemoryError):
        main(argv)
    err = capsys.readouterr().err
    kept = Table.read(out)
    pending = (np.asarray(kept["z_flags"]) & MantisFlag.NOT_ESTIMATED) != 0
    assert len(kept) == 6 and pending[-2:].all() and not pending[:2].any()
    command = err.split("complete it with: ")[1].strip()
    monkeypatch.setattr(T, "_infer_chunk", real)
    assert main(shlex.split(command)[1:]) == EXIT_OK
    assert "6 estimated, 0 not" in capsys.readouterr().out
    whole = tmp_path / "whole.fits"
    assert main(argv[:3] + [str(whole)] + argv[4:]) == EXIT_OK
    assert np.allclose(Table.read(out)["z_pdf"], Table.read(whole)["z_pdf"], rtol=1e-5,
                       atol=1e-7)


def test_a_signal_during_a_checkpoint_waits_for_it(sample_server, tmp_path, capsys,
                                                   monkeypatch):
    """Ctrl-C while a checkpoint is written waits for the write, then stops the run as
    Ctrl-C does; a checkpoint that cannot be written is reported once, and the run
    goes on."""
    import os
    import signal

    import astro_mantis.cli.predict as P

    src = tmp_path / "in.fits"
    _sample_table(src, [100, 101, 102, 103, 104, 105])
    out = tmp_path / "out.fits"
    real, writes = P.write_table, []

    def interrupted_first_write(*args, **kwargs):
        writes.append(1)
        if len(writes) == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(P, "write_table", interrupted_first_write)
    argv = ["predict", str(src), "-o", str(out), "--no-progress", "--ebv-col", "EBV",
            "--chunk-size", "2", "--checkpoint-every", "0.001", "--precision", "float32"] + _COLS
    assert main(argv) == 130
    assert len(writes) == 2  # the checkpoint, whole, then the interrupted run's write
    done = Table.read(out)
    assert int(np.sum((np.asarray(done["z_flags"]) & MantisFlag.NOT_ESTIMATED) == 0)) == 2
    capsys.readouterr()

    def full_disk(table, *args, **kwargs):  # until the run is complete
        if np.any(np.asarray(table["z_flags"]) & MantisFlag.NOT_ESTIMATED):
            raise OSError(28, "No space left on device")
        return real(table, *args, **kwargs)

    monkeypatch.setattr(P, "write_table", full_disk)
    assert main(argv[:3] + [str(tmp_path / "o2.fits")] + argv[4:]) == EXIT_OK
    captured = capsys.readouterr()
    assert captured.err.count("cannot write the checkpoint") == 1
    assert "No space left" in captured.err and "6 estimated, 0 not" in captured.out


@pytest.mark.parametrize("value", ["-5", "inf", "nan", "soon"])
def test_checkpoint_every_takes_seconds(tmp_path, capsys, value):
    src = tmp_path / "in.fits"
    _sample_table(src, [94])
    assert main(["predict", str(src), "-o", str(tmp_path / "o.fits"), "--checkpoint-every",
                 value]) == EXIT_BAD_INPUT
    assert "--checkpoint-every: expected a" in capsys.readouterr().err
    assert not (tmp_path / "o.fits").exists()


# ------------------------------------------------- cutouts from some surveys' tiles
def test_cutouts_from_some_local_tiles_are_not_reported_interrupted(tmp_path, capsys):
    """--tiles naming only Pan-STARRS: GALEX and unWISE are 'not fetched: no local ...
    tiles' in every row reached. A complete run (exit 0) counted those rows as "not
    fetched (interrupted)"; it now says which surveys had no tiles, and "interrupted"
    only where the summary's meta says so."""
    from astro_mantis.cli import format_summary
    from astro_mantis.simulate import ImagingConfig, MockSky, MockSkyConfig
    from astro_mantis.simulate.render import BANDS
    from astro_mantis.simulate.tiles import write_tiles

    cat = Table({"ra": [185.0, 185.005], "dec": [25.0, 25.005], "r_half_disk": [1.0, 1.0],
                 "r_half_bulge": [0.4, 0.4], "bulge_frac": [0.3, 0.3], "q": [0.6, 0.6],
                 "pa": [50.0, 50.0]})
    for band in BANDS:
        cat[f"mag_{band}"] = [18.0, 18.5]
    root = tmp_path / "tiles"
    write_tiles(MockSky(MockSkyConfig(imaging=ImagingConfig(star_density=0,
                                                            neighbour_density=0)),
                        catalog=cat, seed=1), root, (184.98, 185.02), (24.98, 25.02))
    src = _table(tmp_path / "t.ecsv", [185.0, 185.005, 10.0, np.nan], [25.0, 25.005, -5.0, 25.0])
    out = tmp_path / "cuts"
    assert main(["cutouts", str(src), "--out", str(out), "--tiles",
                 f"panstarrs={root / 'panstarrs'}", "--no-progress"]) == EXIT_OK
    printed = capsys.readouterr().out
    assert "interrupted" not in printed and "not fetched" in printed
    assert "4 row(s): 3 cutout file(s) written, 1 row(s) with a bad coordinate" in printed
    assert "galex: 3 row(s) not fetched: no local galex tiles" in printed
    assert "unwise: 3 row(s) not fetched: no local unwise tiles" in printed
    summary = Table.read(out / "summary.ecsv")
    assert summary.meta["interrupted"] is False
    assert list(summary["status_panstarrs"]) == ["fetched", "fetched", "out of footprint",
                                                 "bad coordinate"]
    assert list(summary["status_galex"][:3]) == ["not fetched: no local galex tiles"] * 3
    assert "no local galex tiles" in summary["status_galex"].description
    assert "interrupted before the row" in summary["status_galex"].description
    # an interrupted run's summary: the rows not reached say so, those cut do not
    summary.meta["interrupted"] = True
    for s in SURVEYS:
        summary[f"status_{s}"][1] = "not fetched"
    text = format_summary(summary, SURVEYS)
    assert ", 1 row(s) not fetched (interrupted)" in text
    assert "galex: 2 row(s) not fetched: no local galex tiles" in text
