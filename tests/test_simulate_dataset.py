"""Tests of astro_mantis.simulate.dataset: training shards rendered from the mock sky."""
import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("galsim")

from astro_mantis.flags import MantisFlag  # noqa: E402
from astro_mantis.simulate import ImagingConfig, MockSky, MockSkyConfig  # noqa: E402
from astro_mantis.simulate.dataset import (  # noqa: E402
    SPLITS,
    assign_splits,
    iter_shards,
    load_shard,
    make_dataset,
    read_manifest,
    shard_paths,
)
from astro_mantis.surveys import get_survey  # noqa: E402

N, SEED, SHARD = 12, 3, 3
SURVEYS = ("galex", "panstarrs", "unwise")


def config():
    # many coverage failures, so that a dozen galaxies show each kind
    return MockSkyConfig(south_fraction=0.2,
                         imaging=ImagingConfig(galex_hole_fraction=0.3, ps1_nan_fraction=0.2))


def digests(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(root).glob("*/shard_*.npz"))}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("dataset") / "a"
    manifest = make_dataset(N, root, seed=SEED, config=config(), shard_size=SHARD,
                            progress=False)
    return root, manifest


@pytest.fixture(scope="module")
def sky():
    return MockSky(replace(config(), n_galaxies=N), seed=SEED)


def all_shards(root):
    return {split: [load_shard(p) for p in shard_paths(root, split)] for split in SPLITS}


def test_manifest_and_split_sizes(dataset):
    root, manifest = dataset
    assert manifest == read_manifest(root)
    assert manifest["complete"] and manifest["simulated"]
    assert manifest["n"] == N and manifest["seed"] == SEED
    assert manifest["config"] == repr(replace(config(), n_galaxies=N))
    assert manifest["surveys"] == list(SURVEYS)
    assert "even-indexed" in manifest["provenance"]
    from astro_mantis import __version__

    assert manifest["version"] == __version__
    sizes = {s: manifest["splits"][s]["n"] for s in SPLITS}
    assert sizes == {"train": 10, "validation": 1, "test": 1}  # round(0.8 * 12) ...
    info = manifest["surveys_info"]
    assert info["galex"]["bands"] == ["NUV", "FUV"] and info["galex"]["unit"] == "ct / s"
    assert info["galex"]["zeropoint_ab"] == [20.08, 18.82]
    assert info["panstarrs"]["bands"] == list("grizy")
    assert info["panstarrs"]["shape"] == [5, 170, 170]
    assert info["unwise"]["zeropoint_ab"] == pytest.approx([25.199, 25.839])
    gen = manifest["generation"]
    assert gen["galaxies_rendered"] == N and gen["galaxies_per_second"] > 0
    # the shard list: shard_size respected, files where the manifest says
    for split in SPLITS:
        shards = manifest["splits"][split]["shards"]
        assert [s["file"] for s in shards] == [f"{split}/shard_{k:05d}.npz"
                                               for k in range(len(shards))]
        assert all(0 < s["n"] <= SHARD for s in shards)
        assert sum(s["n"] for s in shards) == sizes[split]
        assert all((root / s["file"]).exists() for s in shards)
    assert [s["n"] for s in manifest["splits"]["train"]["shards"]] == [3, 3, 3, 1]
    assert "train/shard_00000.npz" in json.dumps(manifest)


def test_split_assignment_is_deterministic_and_disjoint():
    a = assign_splits(1000, (0.8, 0.1, 0.1), seed=5)
    b = assign_splits(1000, (0.8, 0.1, 0.1), seed=5)
    c = assign_splits(1000, (0.8, 0.1, 0.1), seed=6)
    assert all(np.array_equal(a[s], b[s]) for s in SPLITS)
    assert not np.array_equal(a["train"], c["train"])
    assert [len(a[s]) for s in SPLITS] == [800, 100, 100]
    assert np.array_equal(np.sort(np.concatenate([a[s] for s in SPLITS])), np.arange(1000))


def test_shards_round_trip_and_align(dataset, sky):
    root, _ = dataset
    shards = all_shards(root)
    ids = np.concatenate([s["id"] for split in SPLITS for s in shards[split]])
    assert np.array_equal(np.sort(ids), np.arange(N))  # every galaxy once
    for split in SPLITS:
        assert np.array_equal(np.concatenate([s["id"] for s in shards[split]]),
                              assign_splits(N, (0.8, 0.1, 0.1), SEED)[split])
    cat = sky.catalog
    for shard in shards["train"]:
        m = len(shard["id"])
        assert shard["galex"].shape == (m, 2, 32, 32) and shard["galex"].dtype == np.float32
        assert shard["panstarrs"].shape == (m, 5, 170, 170)
        assert shard["panstarrs"].dtype == np.float32
        assert shard["unwise"].shape == (m, 2, 32, 32)
        assert shard["panstarrs_exptime"].shape == (m, 5)
        table = shard["catalog"]
        assert len(table) == m and table.colnames == cat.colnames
        assert table["ra"].unit == "deg" and table["ebv_csfd"].unit == "mag"
        assert table["coeffs"].shape == (m, 5)
        # z, dust and the catalog row belong to the same galaxy
        assert np.array_equal(table["id"], shard["id"])
        np.testing.assert_array_equal(shard["z"], np.asarray(cat["z"])[shard["id"]])
        np.testing.assert_array_equal(shard["z"], table["z"])
        np.testing.assert_array_equal(shard["ebv_csfd"], np.asarray(cat["ebv_csfd"])[shard["id"]])
        np.testing.assert_array_equal(shard["ebv_planck"], table["ebv_planck"])
        np.testing.assert_array_equal(table["ra"], np.asarray(cat["ra"])[shard["id"]])
        assert list(table["type"]) == list(np.asarray(cat["type"])[shard["id"]])
    seen = 0
    for split in SPLITS:
        for a, b in zip(iter_shards(root, split), shards[split]):
            assert np.array_equal(a["id"], b["id"])
            seen += len(a["id"])
    assert seen == N


def _reader_cutouts(sky, ra, dec):
    """What the package's readers make of the service responses at a position."""
    import io

    out = {}
    for name in SURVEYS:
        survey = get_survey(name)
        if not survey.in_footprint(ra, dec):
            out[name] = None
            continue
        if name == "panstarrs":
            requests = survey.image_requests(ra, dec, listing={b: f"stack.{b}" for b in "grizy"})
            hduls = [sky.render(name, (ra, dec), band=r.band) for r in requests]
        else:
            requests = survey.image_requests(ra, dec)
            hduls = [sky.render(name, (ra, dec))]
        contents = []
        for hdul in hduls:
            buf = io.BytesIO()
            hdul.writeto(buf)
            contents.append(buf.getvalue())
        out[name] = survey.read(contents, requests, ra, dec)
    return out


def test_pixels_are_the_services_cutouts_after_the_readers(dataset, sky):
    root, _ = dataset
    kinds = set()
    for path in shard_paths(root, "train")[:3]:
        shard = load_shard(path)
        for j, gid in enumerate(shard["id"]):
            ra, dec = float(sky.catalog["ra"][gid]), float(sky.catalog["dec"][gid])
            ref = _reader_cutouts(sky, ra, dec)
            flags = MantisFlag(int(shard["flags"][j]))
            for name in SURVEYS:
                data = shard[name][j]
                if ref[name] is None:
                    kinds.add(f"{name} missing")
                    assert np.isnan(data).all()
                    assert flags & get_survey(name).flag
                    assert flags & MantisFlag.OUT_OF_FOOTPRINT
                    continue
                assert not flags & get_survey(name).flag
                want = ref[name].data
                assert np.array_equal(np.isnan(data), np.isnan(want))
                if name == "panstarrs":  # float16 storage: 11 significant bits
                    np.testing.assert_allclose(data, want, rtol=2.0**-11, atol=1e-6)
                    np.testing.assert_allclose(shard["panstarrs_exptime"][j],
                                               [ref[name].meta[f"EXPTIME{b}"] for b in "GRIZY"])
                    if np.isnan(want).any():
                        kinds.add("chip gap")
                        assert flags & MantisFlag.NAN_PIXELS
                else:
                    np.testing.assert_array_equal(data, want)
    assert {"galex missing", "panstarrs missing", "chip gap"} <= kinds


def test_float32_storage_is_exact(tmp_path):
    root = tmp_path / "f32"
    make_dataset(2, root, seed=1, split=(1, 0, 0), surveys=("panstarrs",), ps1_dtype="float32",
                 config=MockSkyConfig(imaging=ImagingConfig(ps1_nan_fraction=0,
                                                            galex_hole_fraction=0)),
                 progress=False)
    (shard,) = list(iter_shards(root, "train"))
    assert set(shard) >= {"panstarrs", "panstarrs_exptime"}
    assert "galex" not in shard and "unwise" not in shard
    sky = MockSky(MockSkyConfig(n_galaxies=2, imaging=ImagingConfig(ps1_nan_fraction=0,
                                                                     galex_hole_fraction=0)),
                  seed=1)
    for j, gid in enumerate(shard["id"]):
        pos = (float(sky.catalog["ra"][gid]), float(sky.catalog["dec"][gid]))
        want = np.stack([sky.render("panstarrs", pos, band=b)[0].data for b in "grizy"])
        np.testing.assert_array_equal(shard["panstarrs"][j], want)
    assert list(iter_shards(root, "validation")) == []


def test_identical_bytes_across_workers_and_reruns(dataset, tmp_path):
    root, _ = dataset
    before = digests(root)
    assert len(before) == 6
    other = tmp_path / "b"
    manifest = make_dataset(N, other, seed=SEED, config=config(), shard_size=SHARD, workers=2,
                            progress=False)
    assert manifest["generation"]["workers"] == 2
    assert digests(other) == before
    # a rerun into a complete directory renders nothing and changes nothing
    again = make_dataset(N, root, seed=SEED, config=config(), shard_size=SHARD, progress=False)
    assert again["generation"]["galaxies_rendered"] == 0
    assert again["generation"]["galaxies_skipped"] == N
    assert digests(root) == before


def test_rerun_into_a_complete_directory_never_marks_it_incomplete(dataset, tmp_path,
                                                                    monkeypatch):
    """A reader of a finished set must never see it incomplete because of a rerun (the
    manifest was rewritten with complete=False first, and left so by an interrupt)."""
    import shutil

    import astro_mantis.simulate.dataset as dataset_module

    src, _ = dataset
    root = tmp_path / "done"
    shutil.copytree(src, root)
    manifest_bytes = (root / "manifest.json").read_bytes()
    writes = []
    real_write = dataset_module.write_manifest
    monkeypatch.setattr(dataset_module, "write_manifest",
                        lambda d, m: (writes.append(dict(m)), real_write(d, m)))
    again = make_dataset(N, root, seed=SEED, config=config(), shard_size=SHARD, progress=False)
    assert writes == [] and (root / "manifest.json").read_bytes() == manifest_bytes
    assert again["complete"] and again["generation"]["galaxies_rendered"] == 0
    assert again["generation"]["galaxies_skipped"] == N
    # an incomplete manifest over complete shards (interrupted before its last write) is
    # completed, without rendering
    manifest = json.loads(manifest_bytes)
    manifest["complete"] = False
    (root / "manifest.json").write_text(json.dumps(manifest))
    done = make_dataset(N, root, seed=SEED, config=config(), shard_size=SHARD, progress=False)
    assert done["generation"]["galaxies_rendered"] == 0
    assert [w["complete"] for w in writes] == [False, True]
    assert json.loads((root / "manifest.json").read_text())["complete"] is True


def test_resume_regenerates_only_missing_shards(dataset, tmp_path):
    import shutil

    src, _ = dataset
    root = tmp_path / "resume"
    shutil.copytree(src, root)
    before = digests(root)
    victim = root / "train" / "shard_00002.npz"
    victim.unlink()
    (root / "validation" / "shard_00000.npz").write_bytes(b"not a zip")  # a damaged file
    untouched = root / "train" / "shard_00000.npz"
    mtime = os.stat(untouched).st_mtime_ns
    manifest = make_dataset(N, root, seed=SEED, config=config(), shard_size=SHARD,
                            progress=False)
    assert manifest["generation"]["galaxies_rendered"] == SHARD + 1
    assert digests(root) == before
    assert os.stat(untouched).st_mtime_ns == mtime
    assert not list(root.glob("*/.tmp-*"))


def test_rerun_with_other_settings_is_refused(dataset):
    root, _ = dataset
    with pytest.raises(ValueError, match="seed"):
        make_dataset(N, root, seed=SEED + 1, config=config(), shard_size=SHARD, progress=False)
    with pytest.raises(ValueError, match="shard_size"):
        make_dataset(N, root, seed=SEED, config=config(), shard_size=4, progress=False)


@pytest.mark.parametrize("kwargs, message", [
    ({"n": 0}, "n must be a positive integer"),
    ({"shard_size": 0}, "shard_size must be a positive integer"),
    ({"workers": 0}, "workers must be a positive integer"),
    ({"split": (0.8, 0.2)}, "three"),
    ({"split": (-1, 1, 1)}, "non-negative"),
    ({"surveys": ("sdss",)}, "unknown survey"),
    ({"ps1_dtype": "int8"}, "ps1_dtype"),
    ({"config": {"n_galaxies": 3}}, "MockSkyConfig"),
])
def test_invalid_arguments(tmp_path, kwargs, message):
    args = {"n": 3, "path": tmp_path / "x", "progress": False, **kwargs}
    with pytest.raises(ValueError, match=message):
        make_dataset(**args)


def test_missing_value_and_incomplete_dataset(dataset, tmp_path):
    root, _ = dataset
    for path in shard_paths(root, "train"):
        shard = load_shard(path, missing=0.0)
        gone = (shard["flags"] & int(MantisFlag.GALEX_MISSING)) != 0
        if gone.any():
            assert (shard["galex"][gone] == 0).all()
            break
    else:
        pytest.fail("no GALEX hole in the training shards")
    with pytest.raises(ValueError, match="split must be one of"):
        shard_paths(root, "dev")
    with pytest.raises(FileNotFoundError):
        read_manifest(tmp_path)
    partial = tmp_path / "partial"
    partial.mkdir()
    manifest = read_manifest(root)
    manifest["complete"] = False
    (partial / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="incomplete"):
        list(iter_shards(partial, "train"))


@pytest.mark.parametrize("kwargs, message", [
    ({"n": 100, "density": 0}, r"dataset_config density must be a positive finite .* got 0"),
    ({"n": 100, "density": -5}, r"dataset_config density must be a positive finite .* got "
                                r"-5"),
    ({"n": 100, "density": float("nan")}, r"dataset_config density .* got nan"),
    ({"n": 100, "density": float("inf")}, r"dataset_config density .* got inf"),
    ({"n": 100, "density": "dense"}, r"dataset_config density must be a positive number"),
    ({"n": 100, "density": None}, r"dataset_config density must be a positive number"),
    ({"n": 1, "density": 1e300}, r"dataset_config density .* too high for n=1"),
    ({"n": 0}, r"dataset_config n must be a positive integer, got 0"),
    ({"n": -3}, r"dataset_config n must be a positive integer, got -3"),
    ({"n": 10.0}, r"dataset_config n must be a positive integer, got 10\.0"),
    ({"n": True}, r"dataset_config n must be a positive integer, got True"),
])
def test_dataset_config_validates_n_and_density_naming_them(kwargs, message):
    from astro_mantis.simulate.dataset import dataset_config

    with pytest.raises(ValueError, match=message):
        dataset_config(**kwargs)


def test_dataset_config_is_unchanged_for_valid_arguments():
    """The recipe's data sets are rendered from these configs: their repr must not move."""
    from astro_mantis.simulate.dataset import dataset_config

    config = dataset_config(1000)
    assert repr(config) == repr(dataset_config(np.int64(1000), density=100))
    assert config.n_galaxies == 1000
    half = 0.5 * np.sqrt(1000 / 100.0)
    assert config.dec_range == (25.0 - half, 25.0 + half)
    assert config.ra_range == (185.0 - half / np.cos(np.radians(25.0)),
                               185.0 + half / np.cos(np.radians(25.0)))
