# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The training-shard format (astro_mantis.shards), without the mock sky."""
import json
import os
import stat
import warnings

import numpy as np
import pytest
from astropy.table import Table

from astro_mantis import MantisFlag
from astro_mantis import shards
from astro_mantis.shards import (FORMAT, FORMAT_VERSION, SPLITS, assign_splits, check_shard_size,
                                 check_split, check_surveys, column_meta, float16_planes,
                                 iter_shards, load_shard, new_manifest, read_manifest,
                                 shard_complete, shard_paths, write_manifest, write_shard)
from astro_mantis.surveys import get_survey


def _catalog(m):
    cat = Table({"id": np.arange(m, dtype=np.int64), "mag_r": np.linspace(18, 20, m)})
    cat["mag_r"].unit = "mag"
    cat["mag_r"].description = "r magnitude"
    return cat


def _arrays(m, rng, flags=None):
    cat = _catalog(m)
    ps1 = rng.normal(300.0, 50.0, (m, 5, 170, 170)).astype(np.float32)
    ps1[0, 0, 0, 0] = 1e6  # a bright plane: scaled by a power of two before float16
    stored, scale = float16_planes(ps1)
    arrays = {"id": cat["id"].data.copy(), "z": rng.uniform(0, 1, m),
              "ebv_csfd": np.full(m, 0.02), "ebv_planck": np.full(m, 0.03),
              "flags": np.zeros(m, np.int64) if flags is None else flags,
              "galex": rng.normal(0, 1, (m, 2, 32, 32)).astype(np.float32),
              "panstarrs": stored, "panstarrs_scale": scale,
              "panstarrs_exptime": np.full((m, 5), 1000.0),
              "catalog": cat.as_array(), "columns": np.array(json.dumps(column_meta(cat)))}
    return arrays, ps1


def test_checks():
    assert check_split((8, 1, 1)) == pytest.approx([0.8, 0.1, 0.1])
    with pytest.raises(ValueError, match="split must be three"):
        check_split((1, 1))
    with pytest.raises(ValueError, match="non-negative"):
        check_split((1, -1, 1))
    assert check_surveys(["UNWISE", "galex"]) == ("galex", "unwise")
    with pytest.raises(ValueError, match="surveys must be among"):
        check_surveys([])
    assert check_shard_size(np.int64(3)) == 3
    for bad in (0, True, 2.5):
        with pytest.raises(ValueError, match="shard_size must be a positive integer"):
            check_shard_size(bad)
    with pytest.raises(ValueError, match="ps1_dtype"):
        shards.check_ps1_dtype("float64")


def test_splits_are_disjoint_cover_and_follow_the_seed():
    a = assign_splits(101, check_split((0.7, 0.2, 0.1)), seed=5)
    assert [len(a[s]) for s in SPLITS] == [71, 20, 10]
    joined = np.concatenate([a[s] for s in SPLITS])
    assert np.array_equal(np.sort(joined), np.arange(101))
    again = assign_splits(101, check_split((0.7, 0.2, 0.1)), seed=5)
    assert all(np.array_equal(a[s], again[s]) for s in SPLITS)
    other = assign_splits(101, check_split((0.7, 0.2, 0.1)), seed=6)
    assert not np.array_equal(a["test"], other["test"])
    # the simulator and the spectroscopic builder deal with this very function
    from astro_mantis.simulate import dataset
    from astro_mantis.spectro import training_set

    assert dataset.assign_splits is assign_splits and training_set.assign_splits is assign_splits


def test_float16_planes_keep_eleven_bits():
    rng = np.random.default_rng(0)
    cube = rng.normal(300.0, 50.0, (2, 5, 8, 8)).astype(np.float32)
    cube[1, 3] *= 1000.0  # peak above 32768: scaled
    cube[0, 2] = np.nan  # a missing plane stays NaN
    stored, scale = float16_planes(cube)
    assert stored.dtype == np.float16 and scale.dtype == np.float32
    assert scale[1, 3] > 1 and np.all(np.log2(scale) == np.round(np.log2(scale)))
    back = stored.astype(np.float32) * scale[..., None, None]
    ok = np.isfinite(cube)
    assert np.all(np.isnan(back[~ok]))
    assert np.max(np.abs(back[ok] / cube[ok] - 1)) <= 2.0 ** -11


def _float16_planes_before(cube):
    """float16_planes as it was before ±inf pixels were kept out of the peak."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        peak = np.nanmax(np.abs(cube), axis=(-2, -1))
    peak = np.where(np.isfinite(peak), peak, 0.0)
    exponent = np.ceil(np.log2(np.maximum(peak, 1.0) / 32768.0))
    scale = np.exp2(np.maximum(exponent, 0.0)).astype(np.float32)
    return (cube / scale[..., None, None]).astype(np.float16), scale


def test_float16_planes_scale_by_the_finite_peak():
    """An infinite pixel does not set the scale (it was taken as no peak at all: scale 1,
    and the finite pixels above 65504 overflowed to inf); it stays infinite."""
    rng = np.random.default_rng(5)
    cube = rng.normal(300.0, 50.0, (2, 5, 8, 8)).astype(np.float32)
    cube[0, 1, 0, 0], cube[0, 1, 0, 1] = np.inf, -np.inf
    cube[0, 1, 3, 3], cube[0, 1, 4, 4] = 1e5, -2e5      # finite, beyond float16
    cube[1, 2, 5, 5] = np.inf                           # inf in a faint plane: scale 1
    cube[1, 4] = np.nan                                 # a missing plane
    cube[1, 4, 0, 0] = -np.inf                          # ...with an infinity in it
    stored, scale = float16_planes(cube)
    assert scale[0, 1] == 8.0 and scale[1, 2] == 1.0 and scale[1, 4] == 1.0
    back = stored.astype(np.float32) * scale[..., None, None]
    finite = np.isfinite(cube)
    assert np.isfinite(back[finite]).all()
    assert np.max(np.abs(back[finite] / cube[finite] - 1)) <= 2.0 ** -11
    inf = np.isinf(cube)
    np.testing.assert_array_equal(back[inf], cube[inf])
    assert np.isnan(back[np.isnan(cube)]).all()


def test_float16_planes_without_infinities_are_stored_as_before():
    rng = np.random.default_rng(6)
    cube = (rng.normal(300.0, 50.0, (4, 5, 16, 16))
            * rng.choice([1e-3, 1.0, 300.0, 3e4], (4, 5, 1, 1))).astype(np.float32)
    cube[rng.random(cube.shape) < 0.05] = np.nan
    cube[2, 3] = np.nan
    cube[1, 1, 2, 2] = 65504.0 * 2 ** 10
    for c in (cube, cube.astype(np.float64), cube[0, 0]):
        stored, scale = float16_planes(c)
        old_stored, old_scale = _float16_planes_before(c)
        assert stored.tobytes() == old_stored.tobytes() and stored.dtype == old_stored.dtype
        assert scale.tobytes() == old_scale.tobytes() and scale.shape == old_scale.shape


@pytest.fixture
def fsyncs(monkeypatch):
    """The descriptors flushed to disk with os.fsync, in order."""
    synced, fsync = [], os.fsync

    def spy(fd):
        synced.append(fd)
        return fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return synced


def test_write_manifest_is_atomic(tmp_path, fsyncs):
    """A temporary file of its own, flushed to disk before the rename; removed, and the
    earlier manifest kept, when the manifest cannot be written."""
    write_manifest(tmp_path, {"format": FORMAT, "n": 1})
    assert fsyncs
    before = (tmp_path / "manifest.json").read_bytes()
    assert before.endswith(b"\n") and json.loads(before) == {"format": FORMAT, "n": 1}
    with pytest.raises(TypeError, match="not JSON serializable"):
        write_manifest(tmp_path, {"format": FORMAT, "n": object()})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]
    assert (tmp_path / "manifest.json").read_bytes() == before


def test_write_npz_is_atomic_and_reproducible(tmp_path, fsyncs):
    target = tmp_path / "a.npz"
    arrays = {"x": np.arange(6.0).reshape(2, 3), "s": np.array("text")}
    for compression in ("stored", "deflate"):
        size = shards.write_npz(target, arrays, compression=compression)
        first = target.read_bytes()
        assert size == len(first) and fsyncs
        fsyncs.clear()
        shards.write_npz(target, arrays, compression=compression)
        assert target.read_bytes() == first       # byte-reproducible
        assert stat.S_IMODE(target.stat().st_mode) == 0o644
        with np.load(target) as npz:
            np.testing.assert_array_equal(npz["x"], arrays["x"])
    with pytest.raises(TypeError, match="object dtype"):
        shards.write_npz(target, {"x": np.arange(3), "o": np.array([None, 1], object)})
    assert [p.name for p in tmp_path.iterdir()] == ["a.npz"]   # no temporary file left
    assert target.read_bytes() == first                         # the earlier file kept


def test_a_shard_round_trips(tmp_path):
    rng = np.random.default_rng(1)
    flags = np.array([0, int(get_survey("galex").flag | MantisFlag.OUT_OF_FOOTPRINT), 0])
    arrays, ps1 = _arrays(3, rng, flags)
    arrays["galex"][1] = np.nan
    path = tmp_path / "shard_00000.npz"
    nbytes = write_shard(path, arrays)
    assert nbytes == path.stat().st_size
    assert shard_complete(path, arrays["id"]) and not shard_complete(path, arrays["id"][:2])
    assert not shard_complete(tmp_path / "none.npz", arrays["id"])
    out = load_shard(path)
    assert set(out) == {"id", "z", "ebv_csfd", "ebv_planck", "flags", "panstarrs_exptime",
                        "galex", "panstarrs", "catalog"}
    assert out["panstarrs"].dtype == np.float32
    assert np.max(np.abs(out["panstarrs"] / ps1 - 1)) <= 2.0 ** -11
    assert out["catalog"]["mag_r"].unit == "mag"
    assert out["catalog"]["mag_r"].description == "r magnitude"
    assert np.all(np.isnan(out["galex"][1]))
    filled = load_shard(path, missing=0.0)
    assert np.all(filled["galex"][1] == 0) and np.array_equal(filled["galex"][0],
                                                              out["galex"][0])
    # written byte for byte the same again
    first = path.read_bytes()
    write_shard(path, arrays)
    assert path.read_bytes() == first


def test_a_shard_missing_a_member_or_a_row_is_refused(tmp_path):
    arrays, _ = _arrays(2, np.random.default_rng(2))
    with pytest.raises(ValueError, match="needs the members"):
        write_shard(tmp_path / "a.npz", {k: v for k, v in arrays.items() if k != "z"})
    with pytest.raises(ValueError, match="'z' has 1 rows|member 'z' has 1 rows"):
        write_shard(tmp_path / "a.npz", {**arrays, "z": arrays["z"][:1]})
    with pytest.raises(ValueError, match="unknown shard member"):
        write_shard(tmp_path / "a.npz", {**arrays, "toy": arrays["galex"]})
    assert not (tmp_path / "a.npz").exists()


def test_manifest_paths_and_versions(tmp_path):
    rng = np.random.default_rng(3)
    arrays, _ = _arrays(2, rng)
    (tmp_path / "train").mkdir()
    write_shard(tmp_path / "train" / "shard_00000.npz", arrays)
    plan = {"n": 2, "seed": 0, "config": "test", "split_fractions": [1.0, 0.0, 0.0],
            "shard_size": 2, "surveys": ["galex", "panstarrs"], "ps1_dtype": "float16",
            "version": "x"}
    splits = {"train": {"n": 2, "shards": [{"file": "train/shard_00000.npz", "n": 2}]},
              "validation": {"n": 0, "shards": []}, "test": {"n": 0, "shards": []}}
    manifest = new_manifest(plan, simulated=False, provenance="a test", splits=splits,
                            ps1_dtype="float16", columns={}, complete=False, extra_entry=1)
    assert manifest["format"] == FORMAT and manifest["format_version"] == FORMAT_VERSION
    assert list(manifest)[-1] == "extra_entry"
    assert manifest["surveys_info"]["galex"]["zeropoint_ab"] == get_survey("galex").zeropoints()
    write_manifest(tmp_path, manifest)
    with pytest.raises(ValueError, match="incomplete"):
        shard_paths(tmp_path, "train")
    manifest["complete"] = True
    write_manifest(tmp_path, manifest)
    assert read_manifest(tmp_path) == json.loads(json.dumps(manifest))
    assert shard_paths(tmp_path, "train") == [tmp_path / "train" / "shard_00000.npz"]
    assert [s["id"].tolist() for s in iter_shards(tmp_path, "train")] == [[0, 1]]
    assert shard_paths(tmp_path, "test") == []
    with pytest.raises(ValueError, match="split must be one of"):
        shard_paths(tmp_path, "dev")
    write_manifest(tmp_path, {**manifest, "format_version": FORMAT_VERSION + 1})
    with pytest.raises(ValueError, match="format version .*upgrade"):
        read_manifest(tmp_path)
    write_manifest(tmp_path, {**manifest, "format": "something.else"})
    with pytest.raises(ValueError, match="not an astro_mantis shard manifest"):
        read_manifest(tmp_path)
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        read_manifest(tmp_path / "train")
