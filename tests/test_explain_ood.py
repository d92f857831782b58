# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Tests of astro_mantis.explain.ood: reference embedding, OOD score and flag, shift test."""
from pathlib import Path

import numpy as np
import pytest
import torch
from astropy.table import Table

from astro_mantis.explain import (OOD_THRESHOLD, STATISTICS, ReferenceEmbedding, auroc,
                                  band_misalignment, build_reference, edge_mass, embed,
                                  features_and_statistics, features_and_widths,
                                  statistics_from_features,
                                  load_reference, ood_flags, ood_score, reference_path,
                                  save_reference, shift_test)
from astro_mantis.pdf import RedshiftPDF
from astro_mantis.flags import MantisFlag
from astro_mantis.models import build_model, load_model, save_model

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def mock_dir(tmp_path_factory):
    """A small mock-sky dataset in the real shard format (GalSim renders, a few seconds)."""
    from astro_mantis.simulate.dataset import make_dataset

    path = tmp_path_factory.mktemp("ood_mock")
    make_dataset(72, path, seed=21, split=(0.75, 0.0, 0.25), shard_size=24, progress=False)
    return path


def _fused(path, split):
    from astro_mantis.simulate.dataset import iter_shards
    from astro_mantis.training.data import fuse_shard_arrays

    # with the Pan-STARRS counts the bundled model takes (as served or at the reference
    # exposure), as build_reference fuses its rows
    exposure = load_model("mantis-mini").panstarrs_exposure
    xs, ds = [], []
    for shard in iter_shards(path, split):
        x, d, _ = fuse_shard_arrays(shard, panstarrs_exposure=exposure)
        xs.append(x)
        ds.append(d)
    return np.concatenate(xs), np.concatenate(ds)


def test_reference_score_is_a_percentile():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(400, 20)) * np.linspace(3, 0.1, 20)
    ref = ReferenceEmbedding.from_features(feats, n_components=8, k=5)
    assert ref.points.shape == (400, 8) and ref.components.shape == (8, 20)
    assert np.allclose(ref.points.std(axis=0, ddof=1), 1, atol=1e-4)  # whitened
    fresh = ref.score(rng.normal(size=(2000, 20)) * np.linspace(3, 0.1, 20))
    assert 0 <= fresh.min() and fresh.max() <= 1
    assert 0.4 < np.median(fresh) < 0.6  # same distribution: about uniform
    assert abs(np.mean(fresh > 0.9) - 0.1) < 0.04
    far = ref.score(rng.normal(size=(50, 20)) * 3 + 10)
    assert (far == 1).all()
    assert auroc(fresh, far) > 0.99  # ties at score 1 count one half
    assert ood_flags(far).tolist() == [int(MantisFlag.OUT_OF_DISTRIBUTION)] * 50
    assert ood_flags([0.5, np.nan, OOD_THRESHOLD + 1e-9]).tolist() == [0, 0, 256]
    with pytest.raises(ValueError, match="threshold"):
        ood_flags([0.5], threshold=0)
    with pytest.raises(ValueError, match="shape"):
        ref.score(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="more than k"):
        ReferenceEmbedding.from_features(feats[:6], k=5)


def test_combined_score_weighs_pdf_widths():
    """With widths, a galaxy typical in the embedding but with an unusually broad PDF
    scores high; in-distribution galaxies still score about uniformly; save/load keeps it."""
    rng = np.random.default_rng(2)
    scale = np.linspace(3, 0.1, 20)
    feats, widths = rng.normal(size=(600, 20)) * scale, rng.gamma(4.0, 0.02, 600)
    ref = ReferenceEmbedding.from_features(feats, n_components=8, k=5, widths=widths)
    assert np.all(np.diff(ref.widths) >= 0) and len(ref.combined) == 600
    fresh_f, fresh_w = rng.normal(size=(3000, 20)) * scale, rng.gamma(4.0, 0.02, 3000)
    fresh = ref.score(fresh_f, fresh_w)
    assert 0.4 < np.median(fresh) < 0.6 and abs(np.mean(fresh > 0.9) - 0.1) < 0.04
    assert abs(np.mean(fresh > OOD_THRESHOLD) - 0.01) < 0.01
    # typical features, PDFs five times broader than any reference galaxy's
    broad = ref.score(fresh_f[:50], np.full(50, 5 * widths.max()))
    assert (broad == 1).all()
    assert np.median(ref.score(fresh_f[:50])) < 0.9  # the distance alone misses them
    # far in the embedding with ordinary widths: still found
    assert (ref.score(rng.normal(size=(20, 20)) * 3 + 10, fresh_w[:20]) == 1).all()
    with pytest.raises(ValueError, match="one per galaxy"):
        ref.score(fresh_f[:5], fresh_w[:4])
    with pytest.raises(ValueError, match="width must be 600 finite values"):
        ReferenceEmbedding.from_features(feats, widths=widths[:10])
    with pytest.raises(ValueError, match="give both or neither"):
        ReferenceEmbedding(ref.mean, ref.components, ref.scale, ref.points, ref.null, 5,
                           widths=ref.widths)
    path = ref.save(Path(pytest.importorskip("tempfile").mkdtemp()) / "r.ood.npz")
    back = ReferenceEmbedding.load(path)
    np.testing.assert_allclose(back.score(fresh_f[:100], fresh_w[:100]),
                               ref.score(fresh_f[:100], fresh_w[:100]), atol=1e-3)
    old = ReferenceEmbedding.from_features(feats, n_components=8, k=5)  # no widths
    assert old.widths is None and np.array_equal(old.score(fresh_f, fresh_w),
                                                 old.score(fresh_f))


def test_auroc():
    assert auroc([0, 1], [2, 3]) == 1.0 and auroc([2, 3], [0, 1]) == 0.0
    assert auroc([1, 1], [1, 1]) == 0.5
    with pytest.raises(ValueError, match="each class"):
        auroc([], [1])


def test_save_load_beside_weights(tmp_path):
    net = build_model("mantis-mini", widths=(4, 8), depths=(1, 1), hidden=16)
    weights, _ = save_model(net, tmp_path / "mini")
    rng = np.random.default_rng(1)
    ref = ReferenceEmbedding.from_features(rng.normal(size=(50, 16)), 4, 3, {"model": "x"})
    assert reference_path(weights) == tmp_path / "mini.ood.npz"
    save_reference(ref, weights)
    from astro_mantis.models import load_model

    loaded = load_model("mantis-mini", weights=weights)
    assert reference_path(loaded) == tmp_path / "mini.ood.npz"
    back = load_reference(loaded)
    assert np.array_equal(back.points, ref.points) and back.k == 3
    assert back.meta["model"] == "x"
    q = rng.normal(size=(5, 16))
    assert np.allclose(back.score(q), ref.score(q))
    assert (tmp_path / "mini.ood.npz").stat().st_size < 20_000
    assert load_reference(tmp_path / "other.safetensors") is None
    with pytest.raises(ValueError, match="not a reference"):
        np.savez(tmp_path / "bad.npz", a=np.zeros(2))
        ReferenceEmbedding.load(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="no weights file"):
        reference_path(net)
    with pytest.raises(ValueError, match="no reference embedding"):
        ood_score(q, model=build_model("mantis-mini", widths=(4, 8), depths=(1, 1)))


def test_mock_sky_corruptions_score_higher(mock_dir):
    """The bundled model flags a saturated band on mock galaxies (54 reference rows)."""
    from astro_mantis.models import load_model

    net = load_model("mantis-mini")
    ref = build_reference(net, mock_dir, split="train", n_components=16, k=5)
    assert ref.meta["split"] == "train" and len(ref.points) == 54
    x, dust = _fused(mock_dir, "test")
    held = ood_score(x, net, ref, dust=dust)
    assert set(ref.statistics) == set(STATISTICS) and len(ref.combined) == 54
    feats, stats = features_and_statistics(net, x, dust)
    assert np.allclose(feats, embed(x, net, dust=dust), atol=1e-5)
    assert np.array_equal(stats["width"], features_and_widths(net, x, dust)[1])
    assert np.array_equal(stats["misalignment"], band_misalignment(x))
    only = features_and_statistics(net, x, dust, statistics=("edge_mass",))[1]
    assert list(only) == ["edge_mass"] and np.array_equal(only["edge_mass"], stats["edge_mass"])
    with pytest.raises(ValueError, match="unknown statistics"):
        features_and_statistics(net, x, dust, statistics=("colour",))
    # from features a caller already has (predict(features=True)): the same statistics
    again = statistics_from_features(net, feats, x)
    for name in STATISTICS:
        np.testing.assert_allclose(again[name], stats[name], rtol=1e-6, atol=1e-9)
    assert list(statistics_from_features(net, feats, statistics=("width",))) == ["width"]
    with pytest.raises(ValueError, match="needs the fused images"):
        statistics_from_features(net, feats, statistics=("misalignment",))
    assert statistics_from_features(net, feats[:0], x[:0])["width"].shape == (0,)
    assert np.allclose(held, ood_score(feats, net, ref, statistics=stats))  # features in
    with pytest.raises(ValueError, match="give edge_mass, misalignment too"):
        ood_score(feats, net, ref, widths=stats["width"])
    # without widths, the distance percentile alone
    distance = ood_score(feats, net, ref)
    assert np.allclose(distance, np.searchsorted(ref.null, ref.knn_distance(feats)) / 54)
    # in bfloat16 (the table job's precision on such CPUs) the scores barely move
    low = ood_score(x, net, ref, dust=dust, precision="bfloat16")
    assert np.abs(low - held).mean() < 0.05 and not np.array_equal(low, held)
    with pytest.raises(ValueError, match="precision must be"):
        ood_score(x, net, ref, dust=dust, precision="half")
    saturated = x.copy()
    saturated[:, 3] = 1.0
    assert auroc(held, ood_score(saturated, net, ref, dust=dust)) >= 0.9
    assert np.mean(ood_flags(ood_score(saturated, net, ref, dust=dust)) > 0) > 0.8
    # a band shifted against the others: the misalignment sees it, the distance does not
    shifted = x.copy()
    shifted[:, 3] = np.roll(x[:, 3], 12, axis=-1)
    moved = features_and_statistics(net, shifted, dust)[1]["misalignment"]
    assert auroc(stats["misalignment"], moved) >= 0.9
    assert auroc(held, ood_score(shifted, net, ref, dust=dust)) > auroc(
        distance, ood_score(features_and_statistics(net, shifted, dust)[0], net, ref))


def test_shift_test_on_features():
    rng = np.random.default_rng(3)
    pvals = []
    for seed in range(5):
        a, b = rng.normal(size=(60, 10)), rng.normal(size=(60, 10))
        pvals.append(shift_test(a, b, method="mmd", n_permutations=99, seed=seed).p_value)
    assert sum(p > 0.05 for p in pvals) >= 4  # a random split is not flagged
    a, b = rng.normal(size=(60, 10)), rng.normal(size=(60, 10)) + 0.8
    r = shift_test(a, b, method="mmd", n_permutations=99)
    assert r.p_value == 0.01 and r.statistic > 0 and (r.n_a, r.n_b) == (60, 60)
    c = shift_test(a, b, method="classifier", n_permutations=99)
    assert c.p_value <= 0.02 and c.statistic > 0.8
    same = shift_test(a, rng.normal(size=(60, 10)), method="classifier", n_permutations=99)
    assert 0.2 < same.statistic < 0.8
    # tables: an embedding column, or the PDFs
    t = shift_test(Table({"embedding": a}), Table({"embedding": b}), n_permutations=19)
    assert t.p_value == 0.05
    with pytest.raises(ValueError, match="embedding"):
        shift_test(Table({"x": [1.0] * 5}), b)
    with pytest.raises(ValueError, match="method"):
        shift_test(a, b, method="ks")
    with pytest.raises(ValueError, match="at least 4"):
        shift_test(a[:3], b)
    with pytest.raises(ValueError, match="feature widths"):
        shift_test(a, b[:, :5])


def test_shift_test_on_images():
    torch.manual_seed(0)
    net = build_model("mantis-mini", widths=(4, 8), depths=(1, 1), hidden=16).eval()
    rng = np.random.default_rng(4)
    a = rng.random((12, 9, 24, 24), dtype=np.float32)
    b = rng.random((12, 9, 24, 24), dtype=np.float32) * 3
    r = shift_test(a, b, model=net, n_permutations=49)
    assert r.p_value < 0.05


def test_bundled_reference():
    """mantis-mini ships its reference embedding beside its weights."""
    import json

    from astro_mantis.models.registry import DATA_DIR

    ref = load_reference("mantis-mini")
    n = ref.meta["n_rows"]
    assert ref is not None and ref.k == 10 and ref.points.shape == (n, 32) and n >= 4000
    card = json.loads((DATA_DIR / "mantis-mini.json").read_text())
    assert ref.meta["model"] == "mantis-mini" and ref.meta["sha256"] == card["sha256"]
    assert ref.meta["split"] == "validation" and ref.meta["data"] == "WORKDIR/data/validation"
    assert set(ref.statistics) == set(STATISTICS) and len(ref.widths) == len(ref.combined) == n
    # its own rows score like a uniform percentile: the null is the leave-one-out distances
    assert np.all(np.diff(ref.null) >= 0) and len(ref.null) == n
    # features given directly: training rows (each its own neighbour) score below the
    # median on the whole, a point far along the first axis scores 1
    rows = ref.mean + (ref.points[:200] * ref.scale) @ ref.components
    # (farther than any reference row's own nearest-neighbour distance, the null's top)
    far = ref.mean + 1000 * ref.scale[0] * ref.components[:1]
    scores = ood_score(np.concatenate([rows, far]).astype(np.float32), "mantis-mini")
    assert np.median(scores[:200]) < 0.5 and scores[200] == 1.0


def _blobs(n, shift=(0, 0), band=3, size=120, sigma=4.0):
    """Fused-like images: one Gaussian galaxy at the centre in every band."""
    yy, xx = np.mgrid[:size, :size] - (size / 2 - 0.5)
    x = np.zeros((n, 9, size, size), np.float32)
    x[:] = np.exp(-(xx ** 2 + yy ** 2) / (2 * sigma ** 2))
    x[:, band] = np.exp(-((xx - shift[1]) ** 2 + (yy - shift[0]) ** 2) / (2 * sigma ** 2))
    return x


def test_band_misalignment():
    assert np.allclose(band_misalignment(_blobs(2)), 0, atol=1e-9)
    # one band moved by 6 pixels: its centroid is 6 pixels from the others' median
    assert np.allclose(band_misalignment(_blobs(2, shift=(0, 6))), 6, atol=0.05)
    assert np.allclose(band_misalignment(_blobs(1, shift=(3, 4), band=6)), 5, atol=0.05)
    # GALEX and unWISE channels are not read; a moved Pan-STARRS band is
    assert np.allclose(band_misalignment(_blobs(1, shift=(0, 6), band=0)), 0, atol=1e-9)
    # the sky level (the median) does not move a centroid
    assert np.allclose(band_misalignment(_blobs(1, shift=(0, 6)) + 0.3), 6, atol=0.05)
    # no light above the sky (a zeroed survey): 0
    assert band_misalignment(np.zeros((3, 9, 40, 40), np.float32)).tolist() == [0, 0, 0]
    assert band_misalignment(np.zeros((0, 9, 40, 40), np.float32)).shape == (0,)
    with pytest.raises(ValueError, match="fused images"):
        band_misalignment(np.zeros((2, 5, 40, 40)))
    with pytest.raises(ValueError, match="radius must be between 1 and 20"):
        band_misalignment(np.zeros((2, 9, 40, 40)), radius=21)
    # the network's input as it is: a tensor, e.g. bfloat16 and channels-last
    import torch

    blobs = _blobs(2, shift=(0, 6))
    assert np.array_equal(band_misalignment(torch.from_numpy(blobs)), band_misalignment(blobs))
    low = torch.from_numpy(blobs).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    assert np.allclose(band_misalignment(low), 6, atol=0.1)


def test_edge_mass():
    edges = np.linspace(0, 1.6, 401)
    pdf = np.zeros((3, 400))
    pdf[0, -1] = pdf[1, 0] = 1
    pdf[2] = 1
    mass = edge_mass(RedshiftPDF(pdf, edges=edges))
    assert np.allclose(mass, [1, 0, 0.1]) and mass.dtype == np.float64
    assert np.allclose(edge_mass(RedshiftPDF(pdf, edges=edges), fraction=0.5), [1, 0, 0.5])
    with pytest.raises(ValueError, match="fraction"):
        edge_mass(RedshiftPDF(pdf, edges=edges), fraction=0)


def test_reference_statistics(tmp_path):
    rng = np.random.default_rng(5)
    feats = rng.normal(size=(300, 12))
    stats = {name: rng.gamma(2.0, size=300) for name in STATISTICS}
    ref = ReferenceEmbedding.from_features(feats, n_components=6, k=5, statistics=stats)
    assert list(ref.statistics) == list(STATISTICS) and len(ref.combined) == 300
    # the reference galaxies' own scores are a percentile: about uniform
    own = ref.score(feats, statistics=stats)
    assert 0.4 < np.mean(own) < 0.6
    # ordinary features with one extreme statistic score at the top, whichever it is
    fresh = rng.normal(size=(20, 12))
    for name in STATISTICS:
        s = {n: np.full(20, np.median(v)) for n, v in stats.items()}
        s[name] = np.full(20, 100.0)
        assert (ref.score(fresh, statistics=s) == 1).all()
    back = ReferenceEmbedding.load(ref.save(tmp_path / "r.npz"))
    assert all(np.array_equal(back.statistics[n], ref.statistics[n]) for n in STATISTICS)
    some = {n: v[:20] for n, v in stats.items()}
    assert np.array_equal(back.score(fresh, statistics=some), ref.score(fresh, statistics=some))
    # a reference with widths only (as written before) weighs the widths alone: the
    # statistics it does not hold are ignored
    old = ReferenceEmbedding.from_features(feats, n_components=6, k=5, widths=stats["width"])
    assert list(old.statistics) == ["width"]
    assert np.array_equal(old.score(fresh, widths=some["width"]),
                          old.score(fresh, statistics=some))
    assert not np.array_equal(old.score(fresh, statistics=some), ref.score(fresh, statistics=some))
    with pytest.raises(ValueError, match="unknown statistics"):
        ReferenceEmbedding.from_features(feats, statistics={"colour": stats["width"]})
    with pytest.raises(ValueError, match="give the widths once"):
        ref.score(fresh, widths=np.ones(20), statistics={"width": np.ones(20)})
    with pytest.raises(ValueError, match="give misalignment too"):
        ref.score(fresh, statistics={n: np.ones(20) for n in STATISTICS[:2]})
    with pytest.raises(ValueError, match="edge_mass must have shape"):
        ref.score(fresh, statistics={n: np.ones(20 if n != "edge_mass" else 19)
                                     for n in STATISTICS})


def _tiny_net(seed=0):
    torch.manual_seed(seed)
    return build_model("mantis-mini", widths=(4, 8), depths=(1, 1), hidden=16).eval()


def test_save_writes_exactly_the_path_given(tmp_path):
    """np.savez_compressed appended .npz to a name without it: save reported myref.ood
    but wrote myref.ood.npz."""
    rng = np.random.default_rng(6)
    ref = ReferenceEmbedding.from_features(rng.normal(size=(30, 6)), 3, 3)
    path = ref.save(tmp_path / "myref.ood")
    assert path == tmp_path / "myref.ood" and path.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["myref.ood"]
    assert np.array_equal(ReferenceEmbedding.load(path).points, ref.points)
    assert ref.save(str(tmp_path / "r2.npz")) == tmp_path / "r2.npz"


def test_unreadable_reference_raises_value_error_naming_it(tmp_path):
    """A truncated or foreign file is a ValueError naming the file (the table job and the
    CLI catch ValueError), not a BadZipFile or KeyError."""
    rng = np.random.default_rng(7)
    good = ReferenceEmbedding.from_features(rng.normal(size=(30, 6)), 3, 3).save(
        tmp_path / "good.npz")
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[:200])
    text = tmp_path / "text.npz"
    text.write_text("hello")
    for bad in (cut, text):
        with pytest.raises(ValueError, match=f"{bad}.*not a readable reference embedding"):
            ReferenceEmbedding.load(bad)
    with pytest.raises(FileNotFoundError):
        ReferenceEmbedding.load(tmp_path / "none.npz")


def test_save_reference_refuses_to_replace_without_overwrite(tmp_path):
    """save_reference(ref, "mantis-mini") silently replaced the shipped reference; like
    ``explain reference`` it now needs overwrite=True to replace an existing file."""
    net = build_model("mantis-mini", widths=(4, 8), depths=(1, 1), hidden=16)
    weights, _ = save_model(net, tmp_path / "mini")
    rng = np.random.default_rng(8)
    first = ReferenceEmbedding.from_features(rng.normal(size=(30, 16)), 4, 3)
    second = ReferenceEmbedding.from_features(rng.normal(size=(30, 16)), 4, 3)
    path = save_reference(first, weights)
    assert path == tmp_path / "mini.ood.npz"
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_reference(second, weights)
    assert path.read_bytes() == before
    assert save_reference(second, weights, overwrite=True) == path
    assert np.array_equal(load_reference(weights).points, second.points)


def test_corrupt_stored_reference_is_reported(tmp_path):
    """A stored reference that cannot be read was reported as missing ('no reference
    embedding for this model: build one'): now the path and the cause."""
    net = _tiny_net()
    weights, _ = save_model(net, tmp_path / "mini")
    reference_path(weights).write_text("garbage")
    loaded = load_model("mantis-mini", weights=weights)
    q = np.zeros((2, 16))
    with pytest.raises(ValueError, match=r"cannot read the reference embedding stored for "
                                         r"this model, .*mini\.ood\.npz.*not a readable"):
        ood_score(q, model=loaded)
    reference_path(weights).unlink()
    with pytest.raises(ValueError, match="no reference embedding for this model"):
        ood_score(q, model=loaded)


def test_non_finite_features_or_statistics_score_nan():
    """NaN features or statistics scored 1.0 (searchsorted puts NaN last) and were
    flagged; ood_flags' 'NaN gives no flag' needs a NaN score."""
    rng = np.random.default_rng(9)
    feats = rng.normal(size=(100, 8))
    stats = {name: rng.gamma(2.0, size=100) for name in STATISTICS}
    ref = ReferenceEmbedding.from_features(feats, 4, 3, statistics=stats)
    q = rng.normal(size=(4, 8))
    q[1, 2] = np.nan
    q[2, 0] = np.inf
    s = {n: v[:4].copy() for n, v in stats.items()}
    s["edge_mass"][3] = np.nan
    score = ref.score(q, statistics=s)
    assert np.isfinite(score[0]) and np.isnan(score[1:]).all()
    assert ood_flags(score).tolist() == [int(ood_flags(score[:1])[0]), 0, 0, 0]
    assert np.isnan(ref.score(q)[1:3]).all() and np.isfinite(ref.score(q)[[0, 3]]).all()
    # the same through ood_score with features
    assert np.array_equal(ood_score(q, _tiny_net(), ref, statistics=s), score,
                          equal_nan=True)


def test_rows_without_data_score_nan():
    """Rows early fusion marks as holding no data (no valid channel) were scored (0.99
    each for two None cutouts with the bundled model, flagged): now NaN."""
    from astro_mantis.fusion import FusedInput

    bundled = ood_score([None, None], model="mantis-mini")
    assert bundled.shape == (2,) and np.isnan(bundled).all()
    assert ood_flags(bundled).tolist() == [0, 0]
    net = _tiny_net()
    rng = np.random.default_rng(10)
    x = rng.random((3, 9, 32, 32), dtype=np.float32)
    feats = embed(x, net)
    ref = ReferenceEmbedding.from_features(np.concatenate([feats, rng.normal(
        feats.mean(0), feats.std(0) + 1e-3, size=(40, 16))]), 4, 3)
    valid = np.ones((3, 9), bool)
    valid[1] = False
    fused = FusedInput(x, np.zeros((3, 2), np.float32), valid, np.zeros(3, np.int64))
    score = ood_score(fused, net, ref)
    assert np.isfinite(score[[0, 2]]).all() and np.isnan(score[1])
    assert np.array_equal(score[[0, 2]], ood_score(x[[0, 2]], net, ref))
    # an all-zero fused array is what a row without data fuses to
    x[2] = 0
    assert np.isnan(ood_score(x, net, ref)[2])


def _old_mmd_kernel(f):
    d2 = ((f[:, None, :] - f[None, :, :]) ** 2).sum(-1)
    width2 = np.median(d2[np.triu_indices(len(f), 1)])
    return np.exp(-d2 / max(width2, 1e-12))


def test_mmd_kernel_equals_the_broadcast_formula():
    from astro_mantis.explain.ood import _gaussian_kernel, _mmd2

    rng = np.random.default_rng(11)
    f = rng.normal(size=(50, 7)) * 3 + 1
    k = _gaussian_kernel(f)
    old = _old_mmd_kernel(f)
    np.testing.assert_allclose(k, old, rtol=1e-10, atol=1e-12)
    assert np.isclose(_mmd2(k, 20), _mmd2(old, 20), rtol=1e-9, atol=1e-14)


def test_mmd_memory_is_quadratic_not_cubic():
    """The MMD built an N×N×D array ((f[:, None] - f[None]) ** 2): 12.8 GB at 5,000
    galaxies per sample and 16 axes. Its peak memory is now a few N×N arrays."""
    import tracemalloc

    rng = np.random.default_rng(12)
    n, d = 200, 64
    a, b = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    shift_test(a, b, n_permutations=1, n_components=d)  # warm up (imports, caches)
    tracemalloc.start()
    try:
        shift_test(a, b, n_permutations=1, n_components=d)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    square = (2 * n) ** 2 * 8  # one float64 N×N array (N = 2n)
    assert peak < 8 * square < (2 * n) ** 2 * d * 8 / 4, peak


def test_shift_test_leaves_out_masked_and_non_finite_rows():
    """A table of add_redshift_columns has masked z_pdf rows (not estimated): they were
    read as NaN and the SVD failed (LinAlgError). Now they are left out and counted."""
    from astropy.table import MaskedColumn

    rng = np.random.default_rng(13)
    a, b = rng.normal(size=(30, 12)), rng.normal(size=(25, 12)) + 1.0
    pdf = np.abs(a).astype(np.float32)
    mask = np.zeros(pdf.shape, bool)
    mask[[2, 7, 11]] = True
    pdf[mask] = np.nan  # what the table job stores under the mask
    t = Table({"z_pdf": MaskedColumn(pdf, mask=mask)})
    r = shift_test(t, Table({"z_pdf": np.abs(b)}), n_permutations=19)
    assert (r.n_a, r.n_b, r.n_left_out_a, r.n_left_out_b) == (27, 25, 3, 0)
    keep = np.setdiff1d(np.arange(30), [2, 7, 11])
    same = shift_test(np.abs(a)[keep].astype(np.float32), np.abs(b), n_permutations=19)
    assert np.isclose(r.statistic, same.statistic) and r.p_value == same.p_value
    # feature arrays: non-finite rows left out too
    a2 = a.copy()
    a2[0, 3], a2[5, 0] = np.nan, np.inf
    r2 = shift_test(a2, b, n_permutations=19)
    assert (r2.n_a, r2.n_left_out_a) == (28, 2)
    assert np.isclose(r2.statistic, shift_test(a[np.r_[1:5, 6:30]], b,
                                                n_permutations=19).statistic)
    with pytest.raises(ValueError, match=r"at least 4 rows with finite values; got 2 "
                                         r"\(28 left out\) and 25"):
        a3 = a.copy()
        a3[2:] = np.nan
        shift_test(a3, b)


def test_shift_test_leaves_out_images_without_data():
    net = _tiny_net()
    rng = np.random.default_rng(14)
    a = rng.random((8, 9, 24, 24), dtype=np.float32)
    b = rng.random((8, 9, 24, 24), dtype=np.float32) * 2
    a[3] = 0  # fuses to no valid channel: a row without data
    r = shift_test(a, b, model=net, n_permutations=9)
    assert (r.n_a, r.n_b, r.n_left_out_a, r.n_left_out_b) == (7, 8, 1, 0)
    same = shift_test(np.delete(a, 3, axis=0), b, model=net, n_permutations=9)
    assert np.isclose(r.statistic, same.statistic)


def test_classifier_shift_test_folds_hold_both_samples():
    """The classifier test's folds were drawn without regard to the sample: with 4 rows
    against 100, all 4 could land in one fold (5 of 40 seeds), giving a NaN AUC whose
    p-value counted 'null >= NaN' as False: 1 / (1 + n), a 'significant shift' from
    no test at all."""
    rng = np.random.default_rng(0)
    for seed in range(40):
        a, b = rng.normal(3.0, 1, (4, 8)), rng.normal(0, 1, (100, 8))
        r = shift_test(a, b, method="classifier", n_permutations=20, seed=seed)
        assert np.isfinite(r.statistic) and r.statistic > 0.9, seed
        assert 0 < r.p_value <= 2 / 21, seed
    from astro_mantis.explain.ood import _stratified_folds

    # the folds split each sample in halves
    labels = np.r_[np.zeros(5, int), np.ones(50, int)]
    for seed in range(20):
        folds = _stratified_folds(labels, np.random.default_rng(seed))
        for k in (0, 1):
            assert 2 <= np.count_nonzero((folds == k) & (labels == 0)) <= 3
            assert np.count_nonzero((folds == k) & (labels == 1)) == 25
    # two samples drawn alike: not significant, and the statistic is near 0.5
    same = [shift_test(rng.normal(size=(6, 5)), rng.normal(size=(60, 5)),
                       method="classifier", n_permutations=20, seed=s) for s in range(10)]
    assert all(np.isfinite(r.statistic) for r in same)
    assert sum(r.p_value < 0.05 for r in same) <= 2


def test_shift_test_gives_no_p_value_from_a_non_finite_statistic(monkeypatch):
    import astro_mantis.explain.ood as ood

    monkeypatch.setattr(ood, "_lda_auc", lambda *args: np.nan)
    rng = np.random.default_rng(1)
    with pytest.raises(ValueError, match="not finite"):
        shift_test(rng.normal(size=(10, 4)), rng.normal(size=(10, 4)), method="classifier",
                   n_permutations=5)


def test_build_reference_leaves_out_rows_without_data():
    """All-zero (no-data) rows, which ood_score refuses to score, were embedded in the
    reference: they collapse to one point and shrink the k-NN null distribution."""
    from astro_mantis.fusion import FusedInput

    net = _tiny_net()
    rng = np.random.default_rng(11)
    x = rng.gamma(2.0, 0.05, (24, 9, 32, 32)).astype(np.float32)
    blank = x.copy()
    blank[[0, 5, 9, 17]] = 0.0
    kept = np.setdiff1d(np.arange(24), [0, 5, 9, 17])
    clean = build_reference(net, x[kept], n_components=4, k=3)
    ref = build_reference(net, blank, n_components=4, k=3)
    assert ref.meta["n_rows"] == 20 and ref.meta["n_left_out"] == 4
    assert clean.meta["n_left_out"] == 0
    np.testing.assert_allclose(ref.null, clean.null, rtol=1e-5)
    np.testing.assert_allclose(ref.points, clean.points, rtol=1e-4, atol=1e-5)
    for name in STATISTICS:
        np.testing.assert_allclose(ref.statistics[name], clean.statistics[name], rtol=1e-6)
    # a FusedInput row marked without data (no valid channel) likewise; max_rows counts
    # the rows read, those left out included
    valid = np.ones((24, 9), bool)
    valid[3] = False
    fused = FusedInput(x, np.zeros((24, 2), np.float32), valid, np.zeros(24, np.int64))
    r = build_reference(net, fused, n_components=4, k=3, max_rows=10)
    assert r.meta["n_rows"] == 9 and r.meta["n_left_out"] == 1
    with pytest.raises(ValueError, match="no galaxies with data"):
        build_reference(net, np.zeros((6, 9, 32, 32), np.float32), n_components=2, k=2)
    with pytest.raises(ValueError, match="without data left out"):
        build_reference(net, blank[:6], n_components=2, k=3)  # 4 rows with data


def test_build_reference_names_a_missing_directory(tmp_path):
    """A mistyped data directory gave numpy's 'could not convert string to float'."""
    net = _tiny_net()
    missing = tmp_path / "shardz"
    for data in (missing, str(missing)):
        with pytest.raises(FileNotFoundError, match=f"{str(missing)!r} does not exist"):
            build_reference(net, data)
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        build_reference(net, tmp_path / "a_file")


def test_reference_built_for_other_weights_is_refused(tmp_path):
    """A reference records the SHA-256 of its weights, but ood_score never compared it
    with the model's: one built for other weights was used silently."""
    rng = np.random.default_rng(12)
    x = rng.gamma(2.0, 0.05, (16, 9, 32, 32)).astype(np.float32)
    weights_a, _ = save_model(_tiny_net(0), tmp_path / "a")
    weights_b, _ = save_model(_tiny_net(1), tmp_path / "b")
    net_a = load_model("mantis-mini", weights=weights_a)
    net_b = load_model("mantis-mini", weights=weights_b)
    ref = build_reference(net_a, x, n_components=4, k=3)
    assert ref.meta["sha256"] == net_a.meta["sha256"] != net_b.meta["sha256"]
    assert np.isfinite(ood_score(x[:3], net_a, ref)).all()
    with pytest.raises(ValueError, match="built for other weights"):
        ood_score(x[:3], net_b, ref)
    with pytest.raises(ValueError, match="built for other weights"):
        ood_score(embed(x[:3], net_b), net_b, ref)  # features given: checked too
    assert np.isfinite(ood_score(x[:3], net_b, ref, check_weights=False)).all()
    from astro_mantis.explain import check_reference_weights

    with pytest.raises(ValueError, match="check_weights=False"):
        check_reference_weights(ref, net_b)
    check_reference_weights(ref, _tiny_net())  # a network without a known SHA-256
    # the one stored beside the weights: load_reference refuses it for a loaded model
    save_reference(ref, weights_b)
    with pytest.raises(ValueError, match=r"stored beside the weights, .*b\.ood\.npz"):
        load_reference(net_b)
    with pytest.raises(ValueError, match="built for other weights"):
        ood_score(x[:3], net_b)
    assert load_reference(net_b, check_weights=False) is not None
    assert load_reference(weights_b) is not None  # a path: no model to compare with


def test_scoring_features_loads_no_model(monkeypatch):
    """Scoring features from `embed` against a given reference needs no network; a
    change made ood_score load (or download) the named model first."""
    import astro_mantis.explain._common as common
    from astro_mantis.explain import ReferenceEmbedding, ood_score

    rng = np.random.default_rng(3)
    ref = ReferenceEmbedding.from_features(rng.normal(size=(60, 8)), n_components=4, k=3)

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(common, "_load", no_loading)
    scores = ood_score(rng.normal(size=(5, 8)), model="mantis-shrimp-v1", reference=ref)
    assert scores.shape == (5,) and np.all((scores >= 0) & (scores <= 1))
