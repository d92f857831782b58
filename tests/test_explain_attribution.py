# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Tests of astro_mantis.explain.attribution: exact Shapley values, IG, columns, figure."""
import numpy as np
import pytest
import torch
from astropy.table import Table

from astro_mantis.explain import (BANDS, SURVEYS, add_attribution_columns, band_attribution,
                                  plot_survey_shares, shapley_from_values,
                                  survey_shares_by_redshift)
from astro_mantis.explain._common import SURVEY_CHANNELS
from astro_mantis.fusion import fuse_arrays
from astro_mantis.models import build_model

torch.set_num_threads(1)
SIZE = 32  # the networks are fully convolutional: small images keep the tests fast


def tiny_mini(seed=0):
    torch.manual_seed(seed)
    net = build_model("mantis-mini", widths=(4, 8), depths=(1, 1), hidden=16).eval()
    # make the head sensitive: random BatchNorm statistics and a wider output spread
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.running_mean.uniform_(-0.1, 0.1)
        net.fc1.weight.mul_(20)
    return net


def images(n=2, seed=1):
    rng = np.random.default_rng(seed)
    return rng.random((n, 9, SIZE, SIZE), dtype=np.float32), rng.random((n, 2)).astype(
        np.float32) * 0.1


def phi_bands(t):
    return np.stack([np.asarray(t[f"phi_{b}"]) for b in BANDS], axis=1)


def phi_surveys(t):
    return np.stack([np.asarray(t[f"phi_{s}"]) for s in SURVEYS], axis=1)


@pytest.mark.parametrize("target", ["mean", "logp", "cde"])
def test_efficiency_to_float_precision(target):
    net = tiny_mini()
    x, dust = images()
    t = band_attribution(x, model=net, target=target, z_spec=[0.3, 1.1], dust=dust)
    total = t["v_all"] - t["v_none"]
    assert np.all(np.abs(total) > 1e-4)  # the game is not trivial
    scale = np.abs(phi_bands(t)).sum(axis=1)
    assert np.allclose(phi_bands(t).sum(axis=1), total, rtol=0, atol=1e-12 * scale.max() + 1e-14)
    assert np.allclose(phi_surveys(t).sum(axis=1), total, rtol=0, atol=1e-12)
    shares = np.stack([t[f"share_{s}"] for s in SURVEYS], axis=1)
    assert np.allclose(shares.sum(axis=1), 1.0) and (shares >= 0).all()
    assert t.meta["method"] == "shapley" and t.meta["target"] == target


def test_shapley_from_values_known_game():
    # v(S) = (sum of the weights in S)^2 for three players: phi has a closed form
    w = np.array([1.0, 2.0, 3.0])
    masks = ((np.arange(8)[:, None] >> np.arange(3)) & 1).astype(bool)
    v = (masks @ w) ** 2
    phi = shapley_from_values(v[None], 3)[0]
    # for (sum w)^2 the Shapley value of i is w_i * sum(w)
    assert np.allclose(phi, w * w.sum())
    with pytest.raises(ValueError, match="shape"):
        shapley_from_values(v[None, :7], 3)


def test_band_the_model_cannot_see_gets_zero():
    net = tiny_mini()
    blind = 3  # the r band
    with torch.no_grad():
        net.Base.stem[0].weight[:, blind] = 0
        for ch in SURVEY_CHANNELS["unwise"]:
            net.Base.stem[0].weight[:, ch] = 0
    x, dust = images()
    t = band_attribution(x, model=net, dust=dust)
    phi = phi_bands(t)
    seen = [j for j in range(9) if j != blind and j not in SURVEY_CHANNELS["unwise"]]
    assert np.abs(phi[:, seen]).max() > 1e-4  # the others do matter
    assert np.abs(phi[:, blind]).max() < 1e-7
    assert np.abs(phi[:, list(SURVEY_CHANNELS["unwise"])]).max() < 1e-7
    assert np.abs(t["phi_unwise"]).max() < 1e-7 and np.abs(t["share_unwise"]).max() < 1e-6
    ig = band_attribution(x, model=net, dust=dust, method="ig", n_steps=8)
    assert np.abs(phi_bands(ig)[:, blind]).max() == 0.0  # no gradient reaches it


def test_missing_survey_is_the_baseline():
    """A survey fusion reports missing is all zeros: removing it changes nothing."""
    rng = np.random.default_rng(2)
    ps1 = rng.gamma(2.0, 20.0, (2, 5, 170, 170)).astype(np.float32)
    wise = rng.gamma(2.0, 5.0, (2, 2, 32, 32)).astype(np.float32)
    fused = fuse_arrays(galex=None, panstarrs=ps1, unwise=wise, ebv=np.zeros((2, 2)))
    assert not fused.valid[:, :2].any()
    t = band_attribution(fused, model=tiny_mini())
    assert np.abs(phi_bands(t)[:, :2]).max() < 1e-7 and np.abs(t["phi_galex"]).max() < 1e-7
    assert np.abs(t["phi_panstarrs"]).min() > 0


def test_agrees_with_captum():
    from captum.attr import ShapleyValues, ShapleyValueSampling

    from astro_mantis.explain._common import scalar_target
    from astro_mantis.explain.attribution import _TargetModule

    net = tiny_mini()
    x, dust = images(1)
    t = band_attribution(x, model=net, dust=dust)
    forward = _TargetModule(net, scalar_target(net, "mean"))
    xt, dt, idx = torch.as_tensor(x), torch.as_tensor(dust), torch.zeros(1, dtype=torch.long)
    # surveys: captum's exact Shapley values (all 3! orderings) against ours
    survey_mask = torch.zeros(1, 9, 1, 1, dtype=torch.long)
    for k, s in enumerate(SURVEYS):
        survey_mask[0, list(SURVEY_CHANNELS[s])] = k
    survey_mask = survey_mask.expand(1, 9, SIZE, SIZE).contiguous()
    with torch.no_grad():
        exact = ShapleyValues(forward).attribute(xt, baselines=0.0,
                                                 additional_forward_args=(dt, idx),
                                                 feature_mask=survey_mask)
    ours = [exact[0, SURVEY_CHANNELS[s][0], 0, 0].item() for s in SURVEYS]
    assert np.allclose(ours, phi_surveys(t)[0], rtol=1e-4, atol=1e-6)
    # bands: captum's permutation sampling; the exact values lie within its error
    band_mask = torch.arange(9).view(1, 9, 1, 1).expand(1, 9, SIZE, SIZE).contiguous()
    runs = []
    sampler = ShapleyValueSampling(forward)
    for seed in range(8):
        torch.manual_seed(seed)
        with torch.no_grad():
            a = sampler.attribute(xt, baselines=0.0, additional_forward_args=(dt, idx),
                                  feature_mask=band_mask, n_samples=6,
                                  perturbations_per_eval=16)
        runs.append(a[0, :, 0, 0].numpy())
    runs = np.array(runs, dtype=float)
    mean, err = runs.mean(axis=0), runs.std(axis=0, ddof=1) / np.sqrt(len(runs))
    exact_b = phi_bands(t)[0]
    assert np.all(np.abs(mean - exact_b) <= 4 * err + 1e-6), (mean, exact_b, err)
    # and the sampled estimate is not trivially equal to anything: it has spread
    assert err.max() > 0


def test_integrated_gradients_complete_and_additive():
    net = tiny_mini()
    x, dust = images()
    ig = band_attribution(x, model=net, dust=dust, method="ig", n_steps=64)
    sh = band_attribution(x, model=net, dust=dust)
    assert np.allclose(ig["v_all"], sh["v_all"], atol=1e-6)
    assert np.allclose(ig["v_none"], sh["v_none"], atol=1e-6)
    total = np.asarray(ig["v_all"] - ig["v_none"])
    assert np.all(np.abs(ig["ig_delta"]) < 0.05 * np.abs(total) + 1e-6)
    for s in SURVEYS:
        assert np.allclose(ig[f"phi_{s}"],
                           phi_bands(ig)[:, list(SURVEY_CHANNELS[s])].sum(axis=1))
    assert ig.meta["method"] == "ig" and ig.meta["n_steps"] == 64


def test_shrimp_architecture():
    """The mantis-shrimp-v1 architecture (ConvNeXt) works too (a small timm backbone)."""
    pytest.importorskip("timm")
    torch.manual_seed(0)
    net = build_model("mantis-shrimp-v1", backbone="convnext_atto", hidden=32).eval()
    x, dust = images(1)
    t = band_attribution(x, model=net, dust=dust, batch_size=128)
    assert np.isclose(phi_bands(t).sum(), t["v_all"][0] - t["v_none"][0], atol=1e-10)
    ig = band_attribution(x, model=net, dust=dust, method="ig", n_steps=4)
    assert np.isfinite(phi_bands(ig)).all()


def test_bad_input():
    net = tiny_mini()
    x, dust = images(1)
    with pytest.raises(ValueError, match="method"):
        band_attribution(x, model=net, method="lime")
    with pytest.raises(ValueError, match="target"):
        band_attribution(x, model=net, target="median")
    with pytest.raises(ValueError, match="needs z_spec"):
        band_attribution(x, model=net, target="logp")
    with pytest.raises(ValueError, match=r"in \[0.0, 1.6\)"):
        band_attribution(x, model=net, target="cde", z_spec=[2.0])
    with pytest.raises(ValueError, match="one value per row"):
        band_attribution(x, model=net, target="cde", z_spec=[0.2, 0.3])
    with pytest.raises(ValueError, match="shape"):
        band_attribution(x[:, :5], model=net)
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        band_attribution(bad, model=net)
    with pytest.raises(ValueError, match="dust must have shape"):
        band_attribution(x, model=net, dust=np.zeros((3, 2)))
    with pytest.raises(TypeError, match="model"):
        band_attribution(x, model=3)


def test_columns_shares_and_figure():
    import matplotlib

    matplotlib.use("Agg")
    attr = Table({f"share_{s}": v for s, v in zip(SURVEYS, np.array(
        [[0.2, 0.5, 0.3], [0.4, 0.4, 0.2], [0.0, 1.0, 0.0], [0.1, 0.1, 0.8]]).T)})
    for b in BANDS:
        attr[f"phi_{b}"] = np.arange(4.0)
    attr["v_all"] = np.ones(4)
    z = [0.1, 0.15, 0.9, 1.5]
    binned = survey_shares_by_redshift(attr, z, bins=[0.0, 0.5, 1.0, 1.6])
    assert list(binned["n"]) == [2, 1, 1]
    assert np.isclose(binned["share_galex"][0], 0.3)
    assert np.isclose(binned["share_galex_err"][0], np.std([0.2, 0.4], ddof=1) / np.sqrt(2))
    assert np.isnan(binned["share_galex_err"][1])
    ax = plot_survey_shares(attr, z, bins=[0.0, 0.5, 1.0, 1.6])
    assert len(ax.get_legend().get_texts()) == 3
    user = Table({"ra": np.arange(4.0)})
    add_attribution_columns(user, attr, prefix="z_")
    assert "z_phi_NUV" in user.colnames and "z_share_unwise" in user.colnames
    assert "z_v_all" not in user.colnames
    with pytest.raises(ValueError, match="row-aligned"):
        add_attribution_columns(Table({"a": [1]}), attr)
    with pytest.raises(ValueError, match="3 values"):
        survey_shares_by_redshift(attr, z[:3])


def test_cutouts_are_fused_like_early_fusion():
    from astropy.coordinates import SkyCoord
    from astropy.wcs import WCS

    from astro_mantis import MultiSurveyCutout
    from astro_mantis.fusion import early_fusion
    from astro_mantis.surveys import SURVEYS, SurveyImage

    rng = np.random.default_rng(5)
    shapes = {"galex": (2, 32, 32), "panstarrs": (5, 170, 170), "unwise": (2, 32, 32)}
    cuts = []
    for j in range(2):
        images = {}
        for name in ("panstarrs", "unwise") if j else ("galex", "panstarrs", "unwise"):
            s = SURVEYS[name]
            images[name] = SurveyImage(name, rng.gamma(2.0, 5.0, shapes[name]).astype(
                np.float32), WCS(naxis=2), s.unit, s.bands)
        cuts.append(MultiSurveyCutout(SkyCoord(150.0, 2.0, unit="deg"), images,
                                      missing=[] if not j else ["galex"]))
    net = tiny_mini()
    ebv = np.full((2, 2), 0.02)
    t = band_attribution(cuts, model=net, dust=ebv, method="ig", n_steps=4)
    ref = band_attribution(early_fusion(cuts, ebv=ebv), model=net, method="ig", n_steps=4)
    assert np.allclose(phi_bands(t), phi_bands(ref))
    assert phi_bands(t)[1, :2].tolist() == [0.0, 0.0]  # the missing GALEX of row 2


def test_empty_input_with_empty_dust():
    """N = 0 with dust of shape (0, 2) raised 'dust must have shape (0, 2); got (0, 2)'."""
    from astro_mantis.explain._common import as_fused

    fused = as_fused(np.zeros((0, 9, 8, 8), np.float32), dust=np.zeros((0, 2)))
    assert fused.x.shape == (0, 9, 8, 8) and fused.dust.shape == (0, 2)
    assert fused.valid.shape == (0, 9)
    with pytest.raises(ValueError, match=r"dust must have shape \(0, 2\); got \(0, 3\)"):
        as_fused(np.zeros((0, 9, 8, 8), np.float32), dust=np.zeros((0, 3)))
    with pytest.raises(ValueError, match=r"dust must have shape \(2, 2\); got \(0,\)"):
        as_fused(np.zeros((2, 9, 8, 8), np.float32), dust=[])


@pytest.mark.parametrize("method", ["shapley", "ig"])
def test_rows_without_data_get_nan(method):
    """Rows early fusion marks as holding no data got all-zero attributions (every band
    'removed' changes nothing): now NaN, and no forward pass is spent on them."""
    from astro_mantis.fusion import FusedInput

    net = tiny_mini()
    x, dust = images(3)
    valid = np.ones((3, 9), bool)
    valid[1] = False
    fused = FusedInput(x, dust, valid, np.zeros(3, np.int64))
    t = band_attribution(fused, model=net, method=method, n_steps=4)
    both = band_attribution(x[[0, 2]], model=net, method=method, dust=dust[[0, 2]], n_steps=4)
    for name in t.colnames:
        col = np.asarray(t[name], float)
        assert np.isnan(col[1]), name
        np.testing.assert_allclose(col[[0, 2]], np.asarray(both[name], float), rtol=1e-6,
                                   atol=1e-7, err_msg=name)
    none = band_attribution([None], model=net)
    assert len(none) == 1 and all(np.isnan(none[c][0]) for c in none.colnames)


def test_masked_z_spec_rows_get_nan_not_the_value_under_the_mask():
    """A masked z_spec (a galaxy without a spectroscopic redshift, e.g. a MaskedColumn
    read from a catalogue) was read through np.asarray, which drops the mask: the row
    was explained with whatever value lay under it. Now the row has no target: NaN in
    every column, as a row without data."""
    from astropy.table import MaskedColumn

    from astro_mantis.explain._common import scalar_target

    net = tiny_mini()
    x, dust = images(3)
    z = MaskedColumn([0.4, 0.2, 0.9], mask=[False, True, False])
    for target in ("logp", "cde"):
        t = band_attribution(x, model=net, target=target, z_spec=z, dust=dust)
        both = band_attribution(x[[0, 2]], model=net, target=target, z_spec=[0.4, 0.9],
                                dust=dust[[0, 2]])
        for name in t.colnames:
            col = np.asarray(t[name], float)
            assert np.isnan(col[1]), name
            np.testing.assert_allclose(col[[0, 2]], np.asarray(both[name], float),
                                       rtol=1e-6, atol=1e-9, err_msg=name)
    # the lower-level helpers take no masked value as a redshift either
    with pytest.raises(ValueError, match="must be finite"):
        scalar_target(net, "logp", z, 3)
    # a plain masked array is read the same way
    masked = np.ma.masked_array([0.4, 0.2, 0.9], mask=[False, True, False])
    t = band_attribution(x, model=net, target="logp", z_spec=masked, dust=dust)
    assert np.isnan(t["v_all"][1]) and np.isfinite(t["v_all"][[0, 2]]).all()


def test_z_spec_length_is_checked_against_every_input_row():
    """With a row without data in the input, a z_spec one value short was accepted and
    paired with the wrong galaxies (the blank row was dropped before the check)."""
    net = tiny_mini()
    x, dust = images(3)
    x[0] = 0.0  # the first row holds no data
    with pytest.raises(ValueError, match=r"one value per row \(3\)"):
        band_attribution(x, model=net, target="logp", z_spec=[0.3, 0.9], dust=dust)
    t = band_attribution(x, model=net, target="logp", z_spec=[np.nan, 0.3, 0.9], dust=dust)
    ref = band_attribution(x[1:], model=net, target="logp", z_spec=[0.3, 0.9], dust=dust[1:])
    assert np.isnan(t["v_all"][0])
    np.testing.assert_allclose(np.asarray(t["v_all"][1:]), np.asarray(ref["v_all"]),
                               rtol=1e-6)


def test_survey_shares_n_counts_the_rows_averaged():
    """'n' counted every row of a bin, rows with NaN shares (no data) included, while
    the means used the finite ones only."""
    attr = Table({"share_galex": [0.1, np.nan, np.nan, 0.3],
                  "share_panstarrs": [0.5, np.nan, np.nan, 0.3],
                  "share_unwise": [0.4, np.nan, np.nan, 0.4]})
    b = survey_shares_by_redshift(attr, [0.1, 0.12, 0.15, 0.7], bins=[0.0, 0.2, 0.5, 1.0])
    assert list(b["n"]) == [1, 0, 1]
    assert np.isclose(b["share_galex"][0], 0.1) and np.isnan(b["share_galex"][1])
    # a masked redshift falls in no bin (it was read as the value under the mask)
    from astropy.table import MaskedColumn

    z = MaskedColumn([0.1, 0.12, 0.15, 0.1], mask=[False, False, False, True])
    b = survey_shares_by_redshift(attr, z, bins=[0.0, 0.2, 0.5, 1.0])
    assert list(b["n"]) == [1, 0, 0] and np.isclose(b["share_galex"][0], 0.1)
