"""The ``match`` and ``build-training-set`` subcommands, on a parser built here.

``astro_mantis.cli`` wires them into ``astro-mantis``; these tests build an
`argparse` parser with the two subparsers the way it does, and run the jobs against
the loopback servers.
"""
import argparse
import json

import numpy as np
import pytest
from astropy import units as u
from astropy.table import Table

from astro_mantis import conf
from astro_mantis.cli import InputError
from astro_mantis.simulate import SampleSky
from astro_mantis.simulate.dataset import read_manifest
from astro_mantis.spectro import conf as sconf
from astro_mantis.cli.spectro import (
    add_build_training_set_parser,
    add_match_parser,
    parse_angle,
    parse_fractions,
)
from astro_mantis.testing import SkyServer, make_specobj


@pytest.fixture
def parser():
    p = argparse.ArgumentParser(prog="astro-mantis")
    sub = p.add_subparsers(dest="command")
    add_match_parser(sub)
    add_build_training_set_parser(sub)
    return p


def _run(parser, argv):
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def catalog():
    return SampleSky().catalog


def _targets(tmp_path, catalog, n=40):
    t = Table({"RAJ2000": np.asarray(catalog["ra"][:n], float) * u.deg,
               "DEJ2000": np.asarray(catalog["dec"][:n], float) * u.deg,
               "name": [f"g{i}" for i in range(n)]})
    t.write(tmp_path / "targets.ecsv")
    return tmp_path / "targets.ecsv"


def test_help_texts_are_complete(parser, capsys):
    for command, words in (("match", ["sdss-spall", "--download", "spec_flags", "--quality",
                                      "Exit status"]),
                           ("build-training-set", ["healpix", "--split", "astro-mantis train",
                                                   "--keep-failed", "Exit status"])):
        with pytest.raises(SystemExit) as info:
            parser.parse_args([command, "--help"])
        assert info.value.code == 0
        text = capsys.readouterr().out
        for word in words:
            assert word in text, (command, word)


def test_argument_types():
    assert parse_angle("1arcsec") == 1 * u.arcsec
    assert parse_angle(" 0.5 arcmin ") == 30 * u.arcsec
    for bad in ("1", "one", "1 m"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_angle(bad)
    assert parse_fractions("0.7,0.2,0.1") == (0.7, 0.2, 0.1)
    with pytest.raises(argparse.ArgumentTypeError, match="3 comma-separated"):
        parse_fractions("0.7,0.3")


def test_match_with_skyserver(parser, tmp_path, catalog, capsys):
    src = _targets(tmp_path, catalog)
    spec = make_specobj(catalog, seed=2)
    out = tmp_path / "matched.ecsv"
    with SkyServer(spec) as sky, sky.configure(), sconf.set_temp("skyserver_min_interval", 0):
        status = _run(parser, ["match", str(src), "--out", str(out), "--ra-col", "RAJ2000",
                               "--dec-col", "DEJ2000", "--radius", "1.5arcsec", "--no-cache",
                               "--no-progress"])
    assert status == 0
    t = Table.read(out)
    assert len(t) == 40 and list(t["name"]) == [f"g{i}" for i in range(40)]
    assert t.meta["spec_match"]["radius_arcsec"] == 1.5
    assert t.meta["spec_match"]["n_matched"] == int((~t["z_spec"].mask).sum()) > 20
    text = capsys.readouterr().out
    assert f"-> {out}" in text and "matched" in text and "SDSS DR17 SpecObj" in text
    with pytest.raises(InputError, match="exists; pass --overwrite"):
        _run(parser, ["match", str(src), "--out", str(out)])


def test_match_with_a_catalog_file(parser, tmp_path, catalog):
    src = _targets(tmp_path, catalog)
    mine = Table({"ALPHA": catalog["ra"], "DELTA": catalog["dec"], "ZBEST": catalog["z"],
                  "NQ": np.where(np.arange(len(catalog)) % 2 == 0, 4, 2)})
    mine.write(tmp_path / "mine.fits")
    out = tmp_path / "m.fits"
    assert _run(parser, ["match", str(src), "--out", str(out), "--ra-col", "RAJ2000",
                         "--dec-col", "DEJ2000", "--catalog", str(tmp_path / "mine.fits"),
                         "--z-col", "ZBEST", "--cat-ra-col", "alpha", "--cat-dec-col", "delta",
                         "--quality", "NQ >= 3", "--keep-col", "NQ"]) == 0
    t = Table.read(out)
    assert (~t["z_spec"].mask).sum() == 20 and set(t["spec_NQ"][~t["spec_NQ"].mask]) == {4}
    assert json.loads(t.meta["SPECMTCH"])["quality"] == "NQ >= 3"
    np.testing.assert_allclose(t["z_spec"][0], catalog["z"][0])


@pytest.mark.parametrize("extra, message", [
    (["--catalog", "nowhere.fits"], "neither sdss, sdss-spall nor an existing file"),
    (["--ra-col", "ra"], "column 'ra' not found"),
    (["--quality", "z >"], "cannot parse the quality cut"),
    (["--catalog", "sdss-spall"], "download=True"),
])
def test_match_bad_input(parser, tmp_path, catalog, monkeypatch, extra, message):
    from astropy.config.paths import temporary_cache_dir_path

    from astro_mantis.testing import SASServer

    monkeypatch.setenv("SAS_BASE_DIR", str(tmp_path / "sas"))
    src = _targets(tmp_path, catalog, 5)
    argv = ["match", str(src), "--out", str(tmp_path / "o.ecsv"), "--ra-col", "RAJ2000",
            "--dec-col", "DEJ2000"]
    with temporary_cache_dir_path(tmp_path, namespace="astro_mantis"), SASServer() as sas, \
            sas.configure(), pytest.raises(InputError, match=message):
        _run(parser, argv + extra)
    assert not (tmp_path / "o.ecsv").exists()


def test_match_radius_needs_a_unit(parser, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["match", "t.ecsv", "--out", "o.ecsv", "--radius", "1"])
    assert info.value.code == 2
    assert "no angular unit" in capsys.readouterr().err


def test_build_training_set(parser, server, tmp_path, catalog, capsys):
    server.sky = SampleSky()
    t = Table({"ra": catalog["ra"][:6], "dec": catalog["dec"][:6], "zs": catalog["z"][:6],
               "a": catalog["ebv_csfd"][:6], "b": catalog["ebv_planck"][:6]})
    t.write(tmp_path / "m.ecsv")
    out = tmp_path / "ts"
    assert _run(parser, ["build-training-set", str(tmp_path / "m.ecsv"), "--out", str(out),
                         "--z-col", "zs", "--split", "0.5,0.5,0", "--split-method", "healpix",
                         "--nside", "16", "--ebv-col", "a,b", "--no-progress"]) == 0
    manifest = read_manifest(out)
    assert manifest["n"] == 6 and manifest["split"]["nside"] == 16
    assert manifest["source"]["dust"] == "columns a and b"
    assert "astro-mantis train --data" in capsys.readouterr().out
    with pytest.raises(InputError, match="overwrite=True"):
        _run(parser, ["build-training-set", str(tmp_path / "m.ecsv"), "--out", str(out),
                      "--z-col", "zs"])
    with pytest.raises(InputError, match="--surveys"):
        _run(parser, ["build-training-set", str(tmp_path / "m.ecsv"), "--out", str(out),
                      "--surveys", "galex,hst"])
    with pytest.raises(InputError, match="no column 'z_spec'"):
        _run(parser, ["build-training-set", str(tmp_path / "m.ecsv"), "--out",
                      str(tmp_path / "other")])
    assert conf.cache_dir  # the server fixture's temporary cache was used


def _spall_without_run2d(catalog, path):
    """A spAll file of the BOSS (v5_13_2) mock spectra with no RUN2D column, as some
    older or hand-made files are; returns the spectra written."""
    from astropy.io import fits

    from astro_mantis.testing import write_spall

    spec = make_specobj(catalog, seed=3)
    spec = spec[np.asarray(spec["run2d"]).astype(str) == "v5_13_2"]
    write_spall(spec, path)
    with fits.open(path) as hdul:
        cols = [c for c in hdul[1].columns if c.name != "RUN2D"]
        fits.BinTableHDU.from_columns(cols).writeto(path, overwrite=True)
    return spec


def test_match_spall_file_without_run2d_column(parser, tmp_path, catalog):
    """--run2d names the reduction of a --spall file without RUN2D (the error asks for it)."""
    src = _targets(tmp_path, catalog)
    spec = _spall_without_run2d(catalog, tmp_path / "spAll-mine.fits")
    argv = ["match", str(src), "--out", str(tmp_path / "o.ecsv"), "--ra-col", "RAJ2000",
            "--dec-col", "DEJ2000", "--catalog", "sdss-spall", "--spall",
            str(tmp_path / "spAll-mine.fits"), "--quality", "zWarning == 0"]
    with pytest.raises(InputError, match=r"no RUN2D column: pass run2d= \(astro-mantis "
                                         r"match --run2d\)"):
        _run(parser, argv)
    assert _run(parser, argv + ["--run2d", "v5_13_2"]) == 0
    t = Table.read(tmp_path / "o.ecsv")
    matched = ~t["spec_id"].mask
    assert matched.sum() > 5 and set(t["spec_run2d"][matched]) == {"v5_13_2"}
    assert set(t["spec_id"][matched].tolist()) <= set(spec["specObjID"].tolist())
    # one reduction per file, or one for all: anything else is explained
    with pytest.raises(InputError, match="one reduction for all the spAll files, or one per"):
        _run(parser, argv + ["--overwrite", "--run2d", "v5_13_2", "--run2d", "26"])


def _boss_spall(catalog, path):
    from astro_mantis.testing import write_spall

    spec = make_specobj(catalog, seed=0)
    spec = spec[np.char.strip(np.asarray(spec["run2d"]).astype(str)) == "v5_13_2"]
    write_spall(spec, path)
    return spec


def test_match_checks_the_output_before_matching(parser, tmp_path, catalog, monkeypatch):
    """A missing directory or an unknown extension is found before the match (minutes
    of SkyServer queries) starts."""
    import astro_mantis.spectro.matching as matching

    def no_match(*args, **kwargs):
        raise AssertionError("the match ran before the output was checked")

    monkeypatch.setattr(matching, "match_spectroscopic", no_match)
    src = _targets(tmp_path, catalog, 5)
    for out, message in ((tmp_path / "nowhere" / "o.ecsv", "does not exist"),
                         (tmp_path / "o.txt", "cannot tell the format of --out")):
        with pytest.raises(InputError, match=message):
            _run(parser, ["match", str(src), "--out", str(out), "--ra-col", "RAJ2000",
                          "--dec-col", "DEJ2000", "--catalog", "sdss"])


@pytest.mark.parametrize("name", ["o.vot", "o.xml"])
def test_match_writes_sdss_ids_to_votable_as_text(parser, tmp_path, catalog, name):
    """VOTable has no uint64: the SDSS specObjID goes in as its decimal text, every
    digit kept (ids of plates >= 8192 are beyond int64)."""
    from astro_mantis.tableio import read_table

    src = _targets(tmp_path, catalog)
    spec = _boss_spall(catalog, tmp_path / "spall.fits")
    out = tmp_path / name
    assert _run(parser, ["match", str(src), "--out", str(out), "--ra-col", "RAJ2000",
                         "--dec-col", "DEJ2000", "--catalog", "sdss-spall", "--spall",
                         str(tmp_path / "spall.fits"), "--no-progress"]) == 0
    t = read_table(out)
    matched = t["spec_flags"] & 1 == 0
    assert matched.sum() > 10 and t["spec_id"].dtype.kind == "U"
    ids = {int(v) for v in t["spec_id"][matched]}
    assert ids <= {int(v) for v in spec["specObjID"]}
    assert set(t["spec_id"][~matched]) <= {""}
    assert t.meta["spec_match"]["n_matched"] == int(matched.sum())


def test_data_release_of_a_fits_match_is_read_back(parser, tmp_path, catalog):
    """--data-release 16 written to FITS (the SPECMTCH keyword) is the release
    get_spectrum uses for its rows, as from an ECSV file's spec_match."""
    from astro_mantis.spectro.spectra import _data_release

    src = _targets(tmp_path, catalog, 10)
    _boss_spall(catalog, tmp_path / "spall.fits")
    for name in ("o.fits", "o.ecsv"):
        assert _run(parser, ["match", str(src), "--out", str(tmp_path / name), "--ra-col",
                             "RAJ2000", "--dec-col", "DEJ2000", "--catalog", "sdss-spall",
                             "--spall", str(tmp_path / "spall.fits"), "--data-release", "16",
                             "--no-progress"]) == 0
        t = Table.read(tmp_path / name)
        assert _data_release(t[0], None) == 16, name
        assert _data_release(t[0], 15) == 15
