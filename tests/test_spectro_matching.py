"""match_spectroscopic with user catalogs: the local nearest-neighbour match and its rules."""
import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import MaskedColumn, Table

from astro_mantis.spectro import SPEC_COLUMNS, SpecFlag, match_spectroscopic
from astro_mantis.spectro.matching import nearest_spectra


def _sep_arcsec(ra1, dec1, ra2, dec2):
    """Great-circle distances (haversine), arcsec, broadcasting."""
    ra1, dec1, ra2, dec2 = map(np.radians, (ra1, dec1, ra2, dec2))
    a = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(a, 0, 1)))) * 3600


def test_nearest_match_agrees_with_brute_force():
    rng = np.random.default_rng(42)
    ncat, n = 3000, 2000
    cat_ra, cat_dec = rng.uniform(10, 10.5, ncat), rng.uniform(-0.25, 0.25, ncat)
    # half the positions near a catalog entry, some near two, the rest anywhere
    pick = rng.integers(0, ncat, n)
    ra = np.where(np.arange(n) % 2 == 0, cat_ra[pick] + rng.normal(0, 2e-4, n),
                  rng.uniform(10, 10.5, n))
    dec = np.where(np.arange(n) % 2 == 0, cat_dec[pick] + rng.normal(0, 2e-4, n),
                   rng.uniform(-0.25, 0.25, n))
    radius = 2 * u.arcsec
    idx, sep, matched, ambiguous = nearest_spectra(ra, dec, cat_ra, cat_dec, radius)
    d = _sep_arcsec(ra[:, None], dec[:, None], cat_ra[None, :], cat_dec[None, :])
    best = d.argmin(axis=1)
    np.testing.assert_array_equal(matched, d.min(axis=1) <= 2)
    np.testing.assert_array_equal(idx[matched], best[matched])
    np.testing.assert_allclose(sep.to_value(u.arcsec), d.min(axis=1), atol=1e-6)
    np.testing.assert_array_equal(ambiguous, (d <= 2).sum(axis=1) >= 2)
    assert matched.sum() > 500 and ambiguous.sum() > 0


def _catalog():
    # two entries 0.6" apart at (150, 2), one isolated, one with a bad z, one failing NQ
    return Table({"RA": [150.0, 150.0 + 0.6 / 3600, 151.0, 152.0, 153.0],
                  "DEC": [2.0, 2.0, 2.5, 3.0, 3.5],
                  "Z": MaskedColumn([0.1, 0.2, 0.3, 0.4, 0.5],
                                    mask=[False, False, False, True, False]),
                  "ZERR": [1e-4, 2e-4, 3e-4, 4e-4, 5e-4],
                  "NQ": [4, 3, 4, 4, 2],
                  "TYPE": ["GALAXY", "GALAXY", "QSO", "GALAXY", "GALAXY"],
                  "CATAID": [101, 102, 103, 104, 105],
                  "SURVEY": ["GAMA", "SDSS", "GAMA", "GAMA", "2dF"]},
                 meta={"name": "GAMA mock"})


def _targets():
    # 0: right on entry 0 (entry 1 within 1": ambiguous); 1: near entry 2; 2: nothing;
    # 3: masked entry 3 only; 4: NaN; 5: dec out of range; 6 and 7: both nearest to entry 2;
    # 8: entry 4 (NQ 2)
    return Table({"ID": np.arange(9),
                  "ra": [150.0, 151.0 + 0.2 / 3600, 160.0, 152.0, np.nan, 10.0,
                         151.0 - 0.3 / 3600, 151.0, 153.0],
                  "dec": [2.0, 2.5, 2.0, 3.0, 1.0, 95.0, 2.5, 2.5 + 0.2 / 3600, 3.5]})


def test_user_table_catalog_columns_and_flags():
    t = _targets()
    match_spectroscopic(t, catalog=_catalog(), radius=1 * u.arcsec, z_col="z",
                        z_err_col="zerr", ra_col="ra", dec_col="dec", class_col="type",
                        id_col="cataid", columns=["SURVEY"])
    assert list(t["ID"]) == list(range(9))
    for name in SPEC_COLUMNS + ("spec_SURVEY",):
        assert name in t.colnames
    F = SpecFlag
    assert [F(int(f)) for f in t["spec_flags"]] == [
        F.AMBIGUOUS, F.SHARED, F.NO_MATCH, F.NO_MATCH, F.BAD_COORDINATE, F.BAD_COORDINATE,
        F.SHARED, F.SHARED, F.NONE]
    assert t["spec_id"].tolist()[:2] == [101, 103] and t["spec_id"][8] == 105
    assert t["z_spec"][0] == 0.1 and t["z_spec_err"][1] == pytest.approx(3e-4)
    assert t["spec_class"][1] == "QSO" and t["spec_SURVEY"][0] == "GAMA"
    assert t["spec_source"][0] == "GAMA mock"
    for i in (2, 3, 4, 5):
        assert t["z_spec"].mask[i] and t["spec_id"].mask[i] and t["spec_sep"].mask[i]
    assert t["spec_sep"][0] == pytest.approx(0.0, abs=1e-6)
    s = t.meta["spec_match"]
    assert (s["n_matched"], s["n_no_match"], s["n_bad_coordinate"], s["n_ambiguous"],
            s["n_shared_rows"], s["n_shared_spectra"]) == (5, 2, 2, 1, 3, 1)
    assert s["catalog"] == "table" and s["rows_kept"] == 4  # the masked z is no spectrum


def test_quality_expression_and_callable_on_user_catalogs():
    t = match_spectroscopic(_targets(), catalog=_catalog(), z_col="Z", ra_col="RA",
                            dec_col="DEC", quality="NQ >= 3")
    assert t["z_spec"].mask[8] and t["spec_flags"][0] == SpecFlag.AMBIGUOUS
    t2 = match_spectroscopic(_targets(), catalog=_catalog(), z_col="Z", ra_col="RA",
                             dec_col="DEC", quality=lambda cat: np.asarray(cat["NQ"]) >= 4)
    assert t2["spec_flags"][0] == SpecFlag.NONE and t2["z_spec"].mask[8]
    assert t2.meta["spec_match"]["quality"] == "callable <lambda>"
    with pytest.raises(KeyError, match="needs column 'zWarning'"):
        match_spectroscopic(_targets(), catalog=_catalog(), z_col="Z", ra_col="RA",
                            dec_col="DEC", quality="zWarning == 0")


def test_catalog_files_and_units(tmp_path):
    cat = _catalog()
    cat["RA"] = (np.asarray(cat["RA"]) * u.deg).to(u.rad)  # a unit-aware column
    cat.write(tmp_path / "gama.fits")
    cat.write(tmp_path / "gama.txt", format="ascii.ecsv")
    for path, fmt in ((tmp_path / "gama.fits", None), (tmp_path / "gama.txt", "ascii.ecsv"),
                      (str(tmp_path / "gama.fits"), None)):
        t = match_spectroscopic(_targets(), catalog=path, z_col="Z", ra_col="RA",
                                dec_col="DEC", catalog_format=fmt)
        assert t["spec_id"][1] == 2 and t["z_spec"][1] == pytest.approx(0.3)
        assert t["spec_source"][1] == str(path).rsplit("/", 1)[-1]
    with pytest.raises(ValueError, match="cannot read catalog.*catalog_format"):
        match_spectroscopic(_targets(), catalog=tmp_path / "gama.txt")


@pytest.mark.parametrize("kwargs, error, match", [
    ({"z_col": "redshift"}, KeyError, "no column 'redshift'.*RA, DEC, Z"),
    ({"ra_col": "alpha"}, KeyError, "no column 'alpha'"),
    ({"radius": 1.0}, TypeError, "angle with a unit.*without a unit"),
    ({"radius": 1 * u.m}, TypeError, "angle with a unit"),
    ({"radius": -1 * u.arcsec}, ValueError, "positive angle"),
    ({"radius": 2 * u.deg}, ValueError, "larger than 1 degree"),
    ({"radius": "one arcsec"}, ValueError, "cannot read radius"),
    ({"quality": "NQ >="}, ValueError, "cannot parse"),
])
def test_bad_arguments_are_explained(kwargs, error, match):
    t = _targets()
    kw = dict(catalog=_catalog(), z_col="Z", ra_col="RA", dec_col="DEC")
    kw.update(kwargs)
    with pytest.raises(error, match=match):
        match_spectroscopic(t, **kw)
    assert "z_spec" not in t.colnames


def test_bad_catalogs_are_explained(tmp_path):
    with pytest.raises(ValueError, match="unknown catalog 'desi'"):
        match_spectroscopic(_targets(), catalog="desi")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        match_spectroscopic(_targets(), catalog=str(tmp_path / "none.fits"))
    with pytest.raises(TypeError, match="catalog must be"):
        match_spectroscopic(_targets(), catalog=42)
    with pytest.raises(TypeError, match="astropy Table"):
        match_spectroscopic({"ra": [1]}, catalog=_catalog())
    with pytest.raises(KeyError, match="column 'ra' not found; the table has columns: x"):
        match_spectroscopic(Table({"x": [1.0]}), catalog=_catalog(), z_col="Z")


def test_existing_columns_need_overwrite():
    kw = dict(catalog=_catalog(), z_col="Z", ra_col="RA", dec_col="DEC")
    t = match_spectroscopic(_targets(), **kw)
    with pytest.raises(ValueError, match="overwrite=True"):
        match_spectroscopic(t, **kw)
    match_spectroscopic(t, radius="0.1 arcsec", overwrite=True, **kw)
    assert t.meta["spec_match"]["radius_arcsec"] == pytest.approx(0.1)
    assert t["spec_flags"][1] == SpecFlag.NO_MATCH  # 0.2" away: out of the smaller radius


def test_skycoord_column_in_any_frame():
    t = _targets()[:2]
    t["pos"] = SkyCoord(t["ra"], t["dec"], unit="deg").galactic
    del t["ra"], t["dec"]
    match_spectroscopic(t, catalog=_catalog(), coord="pos", z_col="Z", ra_col="RA",
                        dec_col="DEC")
    assert t["spec_id"].tolist() == [0, 2]
    with pytest.raises(TypeError, match="SkyCoord"):
        match_spectroscopic(Table({"pos": [1.0]}), catalog=_catalog(), coord="pos",
                            z_col="Z", ra_col="RA", dec_col="DEC")


def test_empty_inputs():
    t = Table({"ra": np.zeros(0), "dec": np.zeros(0)})
    match_spectroscopic(t, catalog=_catalog(), z_col="Z", ra_col="RA", dec_col="DEC")
    assert len(t) == 0 and "z_spec" in t.colnames
    empty_cat = _catalog()[:0]
    t = match_spectroscopic(_targets(), catalog=empty_cat, z_col="Z", ra_col="RA",
                            dec_col="DEC")
    assert t["z_spec"].mask.all() and t.meta["spec_match"]["catalog_spectra"] == 0


@pytest.mark.filterwarnings("ignore:.*spec_match")  # FITS headers take no dict meta
def test_matched_table_round_trips_through_ecsv_and_fits(tmp_path):
    t = match_spectroscopic(_targets(), catalog=_catalog(), z_col="Z", ra_col="RA",
                            dec_col="DEC", id_col="CATAID")
    t.write(tmp_path / "m.ecsv")
    back = Table.read(tmp_path / "m.ecsv")
    assert back.meta["spec_match"]["n_matched"] == 5
    assert back["spec_sep"].unit == u.arcsec
    np.testing.assert_array_equal(back["z_spec"].mask, t["z_spec"].mask)
    t.write(tmp_path / "m.fits")
    assert Table.read(tmp_path / "m.fits")["spec_id"][0] == 101


@pytest.fixture
def loopback_sdss(tmp_path, monkeypatch):
    """The loopback SkyServer and SAS, so that a query made by mistake never leaves the
    machine; yields both, to check that nothing was asked."""
    from astropy.config.paths import temporary_cache_dir_path

    from astro_mantis.testing import SASServer, SkyServer

    monkeypatch.setenv("SAS_BASE_DIR", str(tmp_path / "sas"))
    with temporary_cache_dir_path(tmp_path, namespace="astro_mantis"), SkyServer() as sky, \
            sky.configure(), SASServer() as sas, sas.configure():
        yield sky, sas


@pytest.mark.parametrize("name", ["flags", "sep", "class", "id", "source"])
def test_columns_that_would_replace_the_matchs_own_are_refused(name, loopback_sdss):
    """columns=["flags"] would write spec_flags over the flags of the match (and "sep"
    over spec_sep, ...): refused before anything is read or changed."""
    cat = _catalog()
    cat[name] = np.arange(len(cat))
    t = _targets()
    with pytest.raises(ValueError, match=f"'{name}' cannot be copied.*spec_{name}"):
        match_spectroscopic(t, catalog=cat, z_col="Z", ra_col="RA", dec_col="DEC",
                            columns=["SURVEY", name])
    assert "z_spec" not in t.colnames and f"spec_{name}" not in t.colnames
    with pytest.raises(ValueError, match="cannot be copied"):
        match_spectroscopic(_targets(), catalog="sdss", columns=[name])
    assert all(len(srv.log) == 0 for srv in loopback_sdss)  # before any query


@pytest.mark.parametrize("catalog", ["sdss", "sdss-spall"])
@pytest.mark.parametrize("name", ["plate", "mjd", "run2d", "zwarning", "fiberid"])
def test_sdss_extra_columns_are_refused_for_the_sdss_catalogs(catalog, name, loopback_sdss):
    """The SDSS catalogs write spec_plate ... themselves (a user catalog's plate, mjd ...
    may be copied: that is how get_spectrum finds its spectra, test_spectro_spectra)."""
    t = _targets()
    with pytest.raises(ValueError, match=f"'{name}' cannot be copied.*spec_{name}"):
        match_spectroscopic(t, catalog=catalog, columns=[name])
    assert "z_spec" not in t.colnames
    assert all(len(srv.log) == 0 for srv in loopback_sdss)  # before any query or download
    cat = _catalog()
    cat[name] = np.arange(len(cat)) + 10
    match_spectroscopic(t, catalog=cat, z_col="Z", ra_col="RA", dec_col="DEC", columns=[name])
    assert t[f"spec_{name}"].tolist()[:2] == [10, 12]  # a user catalog's: copied


def test_masked_catalog_ids_stay_masked():
    cat = _catalog()
    cat["CATAID"] = MaskedColumn([101, 102, 103, 104, 105],
                                 mask=[False, False, True, False, False])
    t = match_spectroscopic(_targets(), catalog=cat, z_col="Z", ra_col="RA", dec_col="DEC",
                            id_col="CATAID")
    # rows 1, 6, 7 matched entry 2, whose identifier is masked; row 0 entry 0, row 8 entry 4
    assert not t["z_spec"].mask[[0, 1, 6, 7, 8]].any()
    assert t["spec_id"].mask.tolist() == [False, True, True, True, True, True, True, True,
                                          False]
    assert t["spec_id"][0] == 101 and t["spec_id"][8] == 105
    assert t["z_spec"][1] == pytest.approx(0.3)  # the match itself is kept


def test_overwrite_message_names_the_command_line_option_too():
    kw = dict(catalog=_catalog(), z_col="Z", ra_col="RA", dec_col="DEC")
    t = match_spectroscopic(_targets(), **kw)
    with pytest.raises(ValueError, match=r"overwrite=True \(astro-mantis match --overwrite\)"):
        match_spectroscopic(t, **kw)


# ----------------------------------------------------------------------------- re-matching
@pytest.fixture(scope="module")
def spall_match(tmp_path_factory):
    """A table of sample galaxies matched to an spAll file (SDSS columns included), and
    the row number of a matched row."""
    from astro_mantis.simulate import SampleSky
    from astro_mantis.testing import make_specobj, write_spall

    sky = SampleSky()
    spec = make_specobj(sky.catalog, seed=0)
    path = tmp_path_factory.mktemp("spall") / "spall.fits"
    write_spall(spec[np.char.strip(np.asarray(spec["run2d"]).astype(str)) == "v5_13_2"], path)
    t = Table({"ra": sky.catalog["ra"][:20], "dec": sky.catalog["dec"][:20]})
    match_spectroscopic(t, catalog="sdss-spall", spall=str(path))
    k = int(np.flatnonzero(~t["z_spec"].mask)[0])
    return t, k


def test_overwrite_removes_the_sdss_columns_of_an_earlier_match(spall_match):
    """A user catalog re-matched over an SDSS match: no SDSS plate/MJD/fiber is left on a
    row the new catalog does not match, so get_spectrum fetches nothing for it."""
    from astro_mantis.spectro.matching import SDSS_EXTRA
    from astro_mantis.spectro.spectra import spectrum_ids

    t, k = spall_match[0].copy(), spall_match[1]
    assert spectrum_ids(t[k])["plate"] > 0
    mine = Table({"ra": [0.0], "dec": [0.0], "z": [0.5]})
    match_spectroscopic(t, catalog=mine, overwrite=True)
    assert t["spec_flags"][k] == SpecFlag.NO_MATCH
    assert not set(SDSS_EXTRA) & set(t.colnames)
    with pytest.raises(KeyError, match="spec_plate"):
        spectrum_ids(t[k])
    assert t.meta["spec_match"]["columns_added"] == list(SPEC_COLUMNS)


def test_sdss_columns_alone_need_overwrite_whatever_the_catalog(spall_match):
    """Without overwrite, an SDSS column left by an earlier match is refused, even when
    the new catalog (a user's) would not write it; the table is left unchanged."""
    t = spall_match[0].copy()
    t.remove_columns(list(SPEC_COLUMNS))
    before = t.copy()
    with pytest.raises(ValueError, match=r"spec_plate.*overwrite=True"):
        match_spectroscopic(t, catalog=Table({"ra": [0.0], "dec": [0.0], "z": [0.5]}))
    assert t.colnames == before.colnames and t.meta == before.meta


@pytest.mark.parametrize("fits_meta", [False, True])
def test_overwrite_removes_the_copies_of_an_earlier_match(fits_meta):
    """The spec_<name> copies an earlier match made are listed in its summary and removed
    by a new match, also when the summary is the SPECMTCH text of a FITS header."""
    import json

    t = match_spectroscopic(_targets(), catalog=_catalog(), z_col="Z", ra_col="RA",
                            dec_col="DEC", columns=["SURVEY", "NQ"])
    assert t.meta["spec_match"]["columns_added"] == list(SPEC_COLUMNS) + ["spec_SURVEY",
                                                                           "spec_NQ"]
    if fits_meta:  # as astropy reads back `astro-mantis match --out x.fits`
        t.meta = {"SPECMTCH": json.dumps(t.meta.pop("spec_match"))}
    t["spec_mine"] = np.arange(len(t))  # not the match's: kept
    with pytest.raises(ValueError, match="spec_SURVEY"):
        match_spectroscopic(t, catalog=_catalog(), z_col="Z", ra_col="RA", dec_col="DEC")
    match_spectroscopic(t, catalog=_catalog(), z_col="Z", ra_col="RA", dec_col="DEC",
                        columns=["NQ"], overwrite=True)
    assert "spec_SURVEY" not in t.colnames and "spec_mine" in t.colnames
    assert "spec_NQ" in t.colnames and list(t.meta) == ["spec_match"]


def test_vector_columns_are_copied_whole():
    cat = _catalog()
    cat["FLUX"] = np.arange(15.0).reshape(5, 3)
    cat["FLUX"][2] = [7.5, 8.5, 9.5]
    cat["BANDS"] = MaskedColumn(np.arange(10).reshape(5, 2), mask=[[False, True]] * 5)
    t = match_spectroscopic(_targets(), catalog=cat, z_col="Z", ra_col="RA", dec_col="DEC",
                            columns=["FLUX", "BANDS"])
    assert t["spec_FLUX"].shape == (9, 3) and t["spec_BANDS"].shape == (9, 2)
    assert t["spec_FLUX"][0].tolist() == [0.0, 1.0, 2.0]
    assert t["spec_FLUX"][1].tolist() == [7.5, 8.5, 9.5]
    assert t["spec_FLUX"].mask[2].all() and not t["spec_FLUX"].mask[0].any()
    assert t["spec_BANDS"].mask[0].tolist() == [False, True]
    assert t["spec_BANDS"].mask[2].all()


def test_a_failed_match_leaves_the_table_unchanged():
    """An error found while the columns are made (here a SkyCoord catalog column that
    cannot be copied) comes before anything is written; the same call then works
    without overwrite once the column is left out."""
    cat = _catalog()
    cat["POS"] = SkyCoord(cat["RA"], cat["DEC"], unit="deg")
    t = _targets()
    with pytest.raises(TypeError, match="'POS'.*cannot be copied"):
        match_spectroscopic(t, catalog=cat, z_col="Z", ra_col="RA", dec_col="DEC",
                            columns=["SURVEY", "POS"])
    assert t.colnames == _targets().colnames and not t.meta
    match_spectroscopic(t, catalog=cat, z_col="Z", ra_col="RA", dec_col="DEC",
                        columns=["SURVEY"])
    assert "spec_SURVEY" in t.colnames


def test_columns_may_be_one_name():
    cat = _catalog()
    cat["N"], cat["Q"] = 1, 2
    t = match_spectroscopic(_targets(), catalog=cat, z_col="Z", ra_col="RA", dec_col="DEC",
                            columns="NQ")
    assert "spec_NQ" in t.colnames and "spec_N" not in t.colnames
    for bad in ([1], 5):
        with pytest.raises(TypeError, match="columns must be"):
            match_spectroscopic(_targets(), catalog=cat, z_col="Z", ra_col="RA",
                                dec_col="DEC", columns=bad)


@pytest.mark.parametrize("qtable", [False, True])
def test_copied_columns_keep_unit_description_and_format(qtable):
    from astropy.table import QTable

    cat = (QTable if qtable else Table)(_catalog())
    cat["MAG"] = [20.0, 21.0, 22.0, 23.0, 24.0] * u.mag
    cat["MAG"].info.description = "r-band magnitude"
    cat["MAG"].info.format = ".2f"
    t = match_spectroscopic(_targets(), catalog=cat, z_col="Z", ra_col="RA", dec_col="DEC",
                            columns=["MAG"])
    assert t["spec_MAG"].unit == u.mag
    assert t["spec_MAG"].description == "r-band magnitude"
    assert t["spec_MAG"].format == ".2f"
    assert t["spec_MAG"][0] == 20.0 and t["spec_MAG"].mask[2]
