"""build_training_set: cutouts over the loopback survey servers -> the shards `train` reads."""
import json

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import MaskedColumn, Table

from astro_mantis import Mantis, MantisFlag, conf
from astro_mantis.simulate import SampleSky
from astro_mantis.simulate.dataset import load_shard, read_manifest, shard_paths
from astro_mantis.spectro import assign_healpix_splits, build_training_set

N = 16


@pytest.fixture(scope="module")
def sky():
    return SampleSky()


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cutout_cache"))


@pytest.fixture
def sample_server(server, sky):  # the conftest's loopback survey server, on the sample sky
    server.sky = sky
    return server


@pytest.fixture
def cached_server(sample_server, shared_cache):
    """The sample-sky server with a cutout cache shared by this module's fault-free tests."""
    with conf.set_temp("cache_dir", shared_cache):
        yield sample_server


def _matched_table(sky, n=N):
    """Sample galaxies as if matched: z_spec from the truth; a few rows unusable."""
    cat = sky.catalog[:n]
    z = np.array(cat["z"], dtype=float)
    t = Table({"ra": np.asarray(cat["ra"], float), "dec": np.asarray(cat["dec"], float),
               "objid": np.asarray(cat["id"], dtype=np.int64) + 1000,
               "ebv_csfd": np.asarray(cat["ebv_csfd"], float),
               "ebv_planck": np.asarray(cat["ebv_planck"], float)})
    mask = np.zeros(n, bool)
    mask[1] = True                # no spectroscopic redshift
    z[2] = 1.7                    # outside the model's bins
    t["z_spec"] = MaskedColumn(z, mask=mask)
    t["z_pdf"] = np.full((n, 400), 1 / 1.6, dtype=np.float32)  # too wide for `catalog`
    t["name"] = [f"gal{i:03d}" for i in range(n)]
    t.meta["spec_match"] = {"source": "SDSS DR17 SpecObj (SkyServer)", "radius_arcsec": 1.0,
                            "quality": "zWarning == 0 and class == 'GALAXY'"}
    return t


def test_shards_are_what_train_reads(cached_server, sky, tmp_path):
    t = _matched_table(sky)
    manifest = build_training_set(t, tmp_path / "ts", split=(0.5, 0.25, 0.25), shard_size=4,
                                  id_col="objid", ebv=("ebv_csfd", "ebv_planck"),
                                  progress=False)
    # the manifest: every field a simulated set has, and the provenance
    from astro_mantis.simulate.dataset import make_dataset  # noqa: F401  (the format's owner)

    expected_keys = {"format", "format_version", "n", "seed", "config", "split_fractions",
                     "shard_size", "surveys", "ps1_dtype", "version", "created_by",
                     "simulated", "provenance", "splits", "surveys_info",
                     "panstarrs_precision", "missing_surveys", "columns", "complete", "bytes",
                     "bytes_per_galaxy", "generation"}
    assert expected_keys <= set(manifest)
    assert manifest == read_manifest(tmp_path / "ts")
    assert manifest["format"] == "astro_mantis.simulate.dataset" and manifest["complete"]
    assert manifest["n"] == N - 2 and manifest["simulated"] is False
    assert manifest["source"]["dust"] == "columns ebv_csfd and ebv_planck"
    assert manifest["source"]["rows_left_out"] == {
        "no spectroscopic redshift": 1, "redshift outside [0.0, 1.6)": 1, "bad coordinate": 0,
        "cutout fetch failed": 0}
    assert "SDSS DR17 SpecObj (SkyServer)" in manifest["provenance"]
    assert manifest["source"]["catalog_columns_left_out"] == ["z_pdf"]
    assert sum(v["n"] for v in manifest["splits"].values()) == N - 2
    assert [v["n"] for v in manifest["splits"].values()] == [7, 4, 3]

    by_id = {int(i): k for k, i in enumerate(t["objid"])}
    seen = []
    for split in ("train", "validation", "test"):
        for path in shard_paths(tmp_path / "ts", split):
            shard = load_shard(path)
            m = len(shard["id"])
            assert shard["galex"].shape == (m, 2, 32, 32)
            assert shard["panstarrs"].shape == (m, 5, 170, 170)
            assert shard["unwise"].shape == (m, 2, 32, 32)
            assert shard["panstarrs_exptime"].shape == (m, 5)
            for j, gid in enumerate(shard["id"]):
                k = by_id[int(gid)]
                seen.append(k)
                assert shard["z"][j] == t["z_spec"][k]
                assert shard["ebv_csfd"][j] == np.float32(t["ebv_csfd"][k])
                assert shard["ebv_planck"][j] == np.float32(t["ebv_planck"][k])
                assert shard["catalog"]["name"][j] == t["name"][k]
                assert shard["catalog"]["input_row"][j] == k
                # the pixels are the cutout service's (PS1 to float16 precision)
                cut = Mantis.get_cutouts(SkyCoord(t["ra"][k], t["dec"][k], unit="deg"))
                assert int(shard["flags"][j]) == int(cut.flags)
                np.testing.assert_array_equal(shard["unwise"][j], cut["unwise"].data)
                np.testing.assert_allclose(shard["panstarrs"][j], cut["panstarrs"].data,
                                           rtol=2**-10, atol=1e-3)
                exptime = [cut["panstarrs"].meta[f"EXPTIME{b.upper()}"] for b in "grizy"]
                np.testing.assert_array_equal(shard["panstarrs_exptime"][j], exptime)
                if "galex" in cut.missing:
                    assert np.isnan(shard["galex"][j]).all()
                else:
                    np.testing.assert_array_equal(shard["galex"][j], cut["galex"].data)
    assert sorted(seen) == sorted(set(range(N)) - {1, 2})
    columns = json.loads(str(np.load(path)["columns"][()]))
    assert columns["ra"]["dtype"] == "<f8"


def test_shard_dataset_fuses_them(cached_server, sky, tmp_path):
    from astro_mantis.training.data import ShardDataset

    t = _matched_table(sky, 10)
    build_training_set(t, tmp_path / "ts", split=(0.6, 0.2, 0.2), progress=False)
    ds = ShardDataset(tmp_path / "ts", "train", cache_dir=tmp_path / "fused")
    assert len(ds) == 5
    x, dust, z = ds[0]
    assert tuple(x.shape) == (9, 120, 120) and tuple(dust.shape) == (2,)
    assert float(z) in set(np.ma.compressed(t["z_spec"]).tolist())
    assert np.isfinite(x.numpy()).all()


def test_healpix_split_keeps_cells_whole(cached_server, sky, tmp_path):
    from astropy_healpix import HEALPix

    t = _matched_table(sky)
    manifest = build_training_set(t, tmp_path / "ts", split_method="healpix", nside=64,
                                  split=(0.6, 0.2, 0.2), progress=False)
    hp = HEALPix(nside=64, order="nested")
    cells = {}
    for split in ("train", "validation", "test"):
        for path in shard_paths(tmp_path / "ts", split):
            rows = load_shard(path)["catalog"]["input_row"]
            pix = hp.lonlat_to_healpix(t["ra"][rows] * u.deg, t["dec"][rows] * u.deg)
            cells[split] = set(np.asarray(pix).tolist()) | cells.get(split, set())
    assert not cells["train"] & cells["validation"] and not cells["train"] & cells["test"]
    assert not cells["validation"] & cells["test"]
    assert manifest["split"] == {"method": "healpix", "seed": 0, "nside": 64,
                                 "order": "nested", "fractions_achieved": manifest["split"][
                                     "fractions_achieved"]}


def test_assign_healpix_splits_fractions_and_determinism():
    rng = np.random.default_rng(0)
    ra, dec = rng.uniform(150, 170, 20000), rng.uniform(-5, 15, 20000)
    a = assign_healpix_splits(ra, dec, (0.8, 0.1, 0.1), nside=32, seed=3)
    b = assign_healpix_splits(ra, dec, (0.8, 0.1, 0.1), nside=32, seed=3)
    c = assign_healpix_splits(ra, dec, (0.8, 0.1, 0.1), nside=32, seed=4)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["test"], c["test"])
    sizes = np.array([len(a[k]) for k in ("train", "validation", "test")]) / 20000
    np.testing.assert_allclose(sizes, [0.8, 0.1, 0.1], atol=0.02)  # a few cells of ~60 each
    assert sorted(np.concatenate(list(a.values())).tolist()) == list(range(20000))


def test_failed_fetches_are_left_out_and_counted(sample_server, sky, tmp_path):
    t = _matched_table(sky, 8)
    sample_server.error_rate = 1.0
    sample_server.endpoints = {"fits-cutout"}  # GALEX and unWISE always fail
    with conf.set_temp("retries", 0):
        with pytest.raises(ValueError, match="every selected row's cutouts failed"):
            build_training_set(t, tmp_path / "ts", progress=False)
        manifest = build_training_set(t, tmp_path / "ts2", keep_failed=True, progress=False)
    assert manifest["n"] == 6  # the 8 rows but the 2 without a usable redshift
    shard = load_shard(shard_paths(tmp_path / "ts2", "train")[0])
    assert (shard["flags"] & int(MantisFlag.FETCH_FAILED)).all()
    assert np.isnan(shard["galex"]).all() and np.isfinite(shard["panstarrs"]).any()


def test_unknown_dust_is_nan_and_flagged(cached_server, sky, tmp_path):
    t = _matched_table(sky, 6)
    t["ebv_planck"][0] = np.nan
    build_training_set(t, tmp_path / "ts", split=(1, 0, 0), ebv=("ebv_csfd", "ebv_planck"),
                       progress=False)
    shard = load_shard(shard_paths(tmp_path / "ts", "train")[0])
    unknown = (shard["flags"] & int(MantisFlag.DUST_UNKNOWN)) != 0
    row0 = shard["catalog"]["input_row"] == 0
    assert unknown.tolist() == row0.tolist()
    assert np.isnan(shard["ebv_csfd"][row0]).all() and np.isfinite(shard["ebv_csfd"][~row0]).all()
    with pytest.raises(KeyError, match="dust"):
        build_training_set(t, tmp_path / "ts2", ebv="no_such_column", progress=False)


def test_bad_input_is_explained(sky, tmp_path):
    t = _matched_table(sky, 4)
    with pytest.raises(KeyError, match="no column 'zz'.*match_spectroscopic"):
        build_training_set(t, tmp_path / "a", z_col="zz")
    with pytest.raises(ValueError, match="split_method"):
        build_training_set(t, tmp_path / "a", split_method="sky")
    with pytest.raises(ValueError, match="power of 2"):
        build_training_set(t, tmp_path / "a", split_method="healpix", nside=30)
    with pytest.raises(ValueError, match="split must be three"):
        build_training_set(t, tmp_path / "a", split=(1, 1))
    t["z_spec"].mask = True
    with pytest.raises(ValueError, match="no row has a usable 'z_spec'"):
        build_training_set(t, tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "manifest.json").write_text("{}")
    with pytest.raises(ValueError, match="overwrite=True"):
        build_training_set(_matched_table(sky, 4), tmp_path / "b")


def test_failed_rebuild_leaves_no_manifest_listing_missing_shards(sample_server, sky, tmp_path):
    """overwrite=True removes the old set's manifest before any of its shards: a rebuild
    whose fetches all fail leaves no training set, not a manifest of shards that are gone."""
    t = _matched_table(sky, 6)
    out = tmp_path / "ts"
    build_training_set(t, out, split=(0.5, 0.5, 0), shard_size=2, progress=False)
    assert shard_paths(out, "train") and all(p.exists() for p in shard_paths(out, "train"))
    sample_server.error_rate = 1.0
    with conf.set_temp("retries", 0), \
            pytest.raises(ValueError, match="every selected row's cutouts failed"):
        build_training_set(t, out, split=(0.5, 0.5, 0), shard_size=2, overwrite=True,
                           cache=False, progress=False)
    assert not (out / "manifest.json").exists()  # the old one went before its shards did
    assert not list(out.rglob("shard_*.npz"))
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        read_manifest(out)
    # the directory is free again: a working rebuild needs no overwrite
    sample_server.error_rate = 0.0
    manifest = build_training_set(t, out, split=(0.5, 0.5, 0), shard_size=2, progress=False)
    assert manifest["n"] == 4
    assert all(p.exists() for split in ("train", "validation") for p in shard_paths(out, split))


def test_overwrite_message_names_the_command_line_option_too(sky, tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "manifest.json").write_text("{}")
    with pytest.raises(ValueError, match=r"overwrite=True \(astro-mantis build-training-set "
                                         r"--overwrite\)"):
        build_training_set(_matched_table(sky, 4), tmp_path / "b")


def test_ids_beyond_int64_or_masked_are_refused(sky, tmp_path):
    """SDSS specObjIDs of plates >= 8192 exceed int64: refused (they would wrap to
    negative ids), as are masked ids of kept rows, before anything is written."""
    from astro_mantis.spectro import sdss_specobjid

    t = _matched_table(sky, 4)
    t["spec_id"] = MaskedColumn(sdss_specobjid([9000, 751, 751, 751], [57000] * 4,
                                               [100, 160, 161, 162], ["v5_13_2"] * 4))
    assert int(t["spec_id"][0]) >= 2 ** 63
    with pytest.raises(ValueError, match=r"above the int64 range.*row 0.*leave id_col"):
        build_training_set(t, tmp_path / "a", id_col="spec_id")
    assert not (tmp_path / "a").exists()
    t["spec_id"][0] = 845594848269461504
    t["spec_id"].mask[3] = True
    with pytest.raises(ValueError, match=r"masked in 1 of the 2 row\(s\) kept \(e.g. row 3\)"):
        build_training_set(t, tmp_path / "a", id_col="spec_id")
    assert not (tmp_path / "a").exists()


def test_ids_in_int64_are_stored(cached_server, sky, tmp_path):
    """uint64 ids within int64, and masked ids on rows left out, are fine; the match
    summary of a FITS file (SPECMTCH) is the manifest's provenance."""
    t = _matched_table(sky, 4)
    t["spec_id"] = MaskedColumn(np.array([11, 12, 13, 14], dtype=np.uint64),
                                mask=[False, True, False, False])
    t.meta = {"SPECMTCH": json.dumps(t.meta["spec_match"])}
    manifest = build_training_set(t, tmp_path / "ts", id_col="spec_id", split=(1, 0, 0),
                                  progress=False)
    ids = [int(i) for p in shard_paths(tmp_path / "ts", "train") for i in load_shard(p)["id"]]
    assert sorted(ids) == [11, 14]  # row 1 has no z_spec, row 2 a z outside the bins
    assert manifest["source"]["spec_match"]["radius_arcsec"] == 1.0
