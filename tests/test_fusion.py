"""Fusion: the published early-fusion recipe, its missing-data policy and the variants.

The expected values are computed here independently of the code under test: the
normalisations with numpy in float64 from the formulas of the paper, the crops with
explicit index ranges, and the 22 → 120 bilinear resize with a separable numpy
implementation (pixel centres at half-integers, edges replicated) that is also
checked against PIL's bilinear resize of a float image ("F" mode).
"""
import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.wcs import WCS

from astro_mantis import MantisFlag, MultiSurveyCutout
from astro_mantis.fusion import (CHANNELS, early_fusion, fill_nonfinite, fuse_arrays,
                                 late_fusion, reproject_fusion)
from astro_mantis.fusion.core import center_crop, crop_offsets, inpaint_nans, resize_bilinear
from astro_mantis.surveys import SURVEYS, SurveyImage

COORD = SkyCoord(150.0, 2.0, unit="deg")


def wcs_for(name, n, ra=150.0, dec=2.0):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [(n + 1) / 2, (n + 1) / 2]
    s = SURVEYS[name].pixscale.to_value(u.deg)
    w.wcs.cd = [[-s, 0], [0, s]]
    return w


def image(name, data, bands=None, exptime=None):
    """A SurveyImage; PS1 planes carry the zero points of stacks of ``exptime`` seconds
    (default: each band's typical exposure time), as the cutout service's do."""
    survey = SURVEYS[name]
    data = np.asarray(data, np.float32)
    bands = bands or survey.bands
    zps = None
    if name == "panstarrs":
        zps = [survey.exptime_zeropoint(survey.typical_exptime[b] if exptime is None
                                        else exptime[b]) for b in bands]
    return SurveyImage(name, data, wcs_for(name, data.shape[-1]), survey.unit, bands,
                       zeropoints=zps)


def fixed_cutout(seed=0):
    """Nine planes of deterministic values spanning each stretch's interesting range."""
    rng = np.random.default_rng(seed)
    galex = rng.uniform(-0.02, 0.08, (2, 32, 32))       # clip(x/0.05) hits 0 and 1
    ps1 = rng.uniform(-20.0, 400.0, (5, 170, 170))      # negatives → 0
    wise = rng.uniform(-2.0, 30.0, (2, 32, 32))
    return MultiSurveyCutout(COORD, {"galex": image("galex", galex),
                                     "panstarrs": image("panstarrs", ps1),
                                     "unwise": image("unwise", wise)})


# ------------------------------------------------------------------ independent recipe
def np_bilinear(img, size):
    """Bilinear resize, align_corners=False, edges replicated (enlarging only)."""
    n = img.shape[-1]
    src = np.clip((np.arange(size) + 0.5) * n / size - 0.5, 0, n - 1)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, n - 1)
    w = src - i0
    m = np.zeros((size, n))
    m[np.arange(size), i0] += 1 - w
    m[np.arange(size), i1] += w
    return m @ np.asarray(img, np.float64) @ m.T


def recipe(cut):
    g = cut["galex"].data.astype(np.float64)
    p = cut["panstarrs"].data.astype(np.float64)
    w = cut["unwise"].data.astype(np.float64)
    galex = np.clip(g[:, 5:27, 5:27] / 0.05, 0, 1)
    ps1 = np.maximum(np.arcsinh(0.08 * p[:, 25:145, 25:145]) / 8, 0)
    wise = np.maximum(np.arcsinh(0.6 * w[:, 5:27, 5:27]) / 6, 0)
    return np.concatenate([[np_bilinear(b, 120) for b in galex], ps1,
                           [np_bilinear(b, 120) for b in wise]])


def test_reference_resize_agrees_with_pil():
    from PIL import Image

    a = np.random.default_rng(3).random((22, 22)).astype(np.float32)
    pil = np.asarray(Image.fromarray(a, mode="F").resize((120, 120), Image.BILINEAR))
    np.testing.assert_allclose(np_bilinear(a, 120), pil, atol=1e-6)
    # and the package's resize (torch, antialias=True) agrees with both
    np.testing.assert_allclose(resize_bilinear(a, 120), pil, atol=3e-6)


def test_early_fusion_pins_the_published_recipe():
    cut = fixed_cutout()
    x, dust, valid, flags = early_fusion(cut, ebv=[[0.02, 0.03]])
    assert x.shape == (1, 9, 120, 120) and x.dtype == np.float32
    np.testing.assert_allclose(x[0], recipe(cut), rtol=0, atol=3e-6)
    assert valid.all() and flags[0] == 0
    np.testing.assert_array_equal(dust, np.float32([[0.02, 0.03]]))


def test_early_fusion_hand_checked_pixels():
    galex = np.full((2, 32, 32), 99.0)        # outside the 22-pixel crop: never seen
    galex[0, 5:27, 5:27] = 0.025              # NUV: 0.025 / 0.05 = 0.5 everywhere
    galex[1, 5:27, 5:27] = -1.0               # FUV: clipped to 0
    ps1 = np.full((5, 170, 170), 1e6)         # outside the 120-pixel crop: never seen
    ps1[:, 25:145, 25:145] = 0.0
    ps1[0, 25, 25] = 100.0                    # g, first pixel of the crop
    ps1[4, 144, 144] = 12.5                   # y, last pixel of the crop
    ps1[2, 80, 30] = -50.0                    # i: negative → 0
    wise = np.zeros((2, 32, 32))
    wise[0, 5:27, 5:27] = 1.0                 # W1: asinh(0.6) / 6 everywhere
    cut = MultiSurveyCutout(COORD, {"galex": image("galex", galex),
                                    "panstarrs": image("panstarrs", ps1),
                                    "unwise": image("unwise", wise)})
    x = early_fusion(cut).x[0]
    np.testing.assert_allclose(x[0], 0.5, atol=1e-6)
    np.testing.assert_array_equal(x[1], 0.0)
    assert x[2, 0, 0] == pytest.approx(0.34705903509046, abs=1e-6)  # asinh(8) / 8
    assert x[6, 119, 119] == pytest.approx(0.11017169836, abs=1e-6)  # asinh(1) / 8
    assert x[4, 55, 5] == 0.0
    assert np.count_nonzero(x[2:7]) == 2
    np.testing.assert_allclose(x[7], 0.09480414978870792, atol=1e-6)  # asinh(0.6) / 6
    np.testing.assert_array_equal(x[8], 0.0)


def test_crop_offsets_follow_center_crop_rule():
    assert crop_offsets((170, 170), 120) == (25, 25)
    assert crop_offsets((32, 32), 22) == (5, 5)
    a = np.arange(170 * 170).reshape(170, 170)
    assert center_crop(a, 120)[0, 0] == a[25, 25]
    with pytest.raises(ValueError, match="at least 120"):
        crop_offsets((100, 100), 120)


def test_channel_order_and_bands_by_name():
    cut = fixed_cutout(1)
    x = early_fusion(cut).x
    ps1 = cut["panstarrs"]
    shuffled = SurveyImage("panstarrs", ps1.data[::-1], ps1.wcs, ps1.unit, ps1.bands[::-1])
    cut2 = MultiSurveyCutout(COORD, {"unwise": cut["unwise"], "panstarrs": shuffled,
                                     "galex": cut["galex"]})
    np.testing.assert_array_equal(early_fusion(cut2).x, x)
    assert [b for _, b in CHANNELS] == ["NUV", "FUV", "g", "r", "i", "z", "y", "W1", "W2"]


def test_missing_survey_gives_zeros_invalid_and_flag():
    cut = fixed_cutout()
    partial = MultiSurveyCutout(COORD, {"panstarrs": cut["panstarrs"]},
                                missing=["galex", "unwise"])
    x, dust, valid, flags = early_fusion([cut, partial, None])
    np.testing.assert_array_equal(x[1, :2], 0)
    np.testing.assert_array_equal(x[1, 7:], 0)
    np.testing.assert_array_equal(x[1, 2:7], x[0, 2:7])
    assert valid[1].tolist() == [False, False] + [True] * 5 + [False, False]
    f = MantisFlag(int(flags[1]))
    assert MantisFlag.GALEX_MISSING in f and MantisFlag.UNWISE_MISSING in f
    assert MantisFlag.PANSTARRS_MISSING not in f
    assert not valid[2].any() and MantisFlag.BAD_COORDINATE in MantisFlag(int(flags[2]))
    np.testing.assert_array_equal(x[2], 0)


def test_nan_pixels_zero_policy():
    cut = fixed_cutout()
    ps1 = cut["panstarrs"].data.copy()
    ps1[1, 60:64, :] = np.nan          # r: a chip gap through the crop
    ps1[3, :10, :] = np.inf            # z: bad rows outside the crop only
    wise = cut["unwise"].data.copy()
    wise[0, 16, 16] = np.nan
    bad = MultiSurveyCutout(COORD, {"galex": cut["galex"], "panstarrs": image("panstarrs", ps1),
                                    "unwise": image("unwise", wise)})
    x, _, valid, flags = early_fusion([cut, bad])
    assert np.isfinite(x).all()
    np.testing.assert_array_equal(x[1, 3, 35:39, :], 0.0)
    np.testing.assert_array_equal(x[1, 4], x[0, 4])
    np.testing.assert_array_equal(x[1, 5], x[0, 5])   # inf outside the crop: unseen
    assert valid[1].tolist() == [True, True, True, False, True, True, True, False, True]
    assert MantisFlag.NAN_PIXELS in MantisFlag(int(flags[1]))


def test_nan_pixels_inpaint_policy():
    ps1 = np.full((5, 170, 170), 50.0)
    ps1[0, 60:68, :] = np.nan          # an 8-pixel-wide gap
    ps1[4] = np.nan                    # a band with no data at all
    cut = MultiSurveyCutout(COORD, {"panstarrs": image("panstarrs", ps1)})
    x, _, valid, flags = early_fusion(cut, nan_policy="inpaint")
    assert np.isfinite(x).all()
    np.testing.assert_allclose(x[0, 2], np.arcsinh(4.0) / 8, rtol=1e-5)  # filled from 50s
    np.testing.assert_array_equal(x[0, 6], 0.0)
    assert valid[0, 2:7].tolist() == [True, True, True, True, False]
    assert MantisFlag.NAN_PIXELS in MantisFlag(int(flags[0]))
    with pytest.raises(ValueError, match="nan_policy"):
        early_fusion(cut, nan_policy="mean")


def test_fill_nonfinite_and_inpaint_helpers():
    a = np.ones((2, 5, 5), np.float32)
    a[0, 2, 2] = np.nan
    a[1] = np.nan
    filled, zeroed = fill_nonfinite(a, "inpaint")
    assert filled[0, 2, 2] == pytest.approx(1.0) and not zeroed[0].any()
    assert zeroed[1].all() and (filled[1] == 0).all()
    filled, zeroed = fill_nonfinite(a, "zero")
    assert filled[0, 2, 2] == 0 and zeroed[0, 2, 2] and zeroed.sum() == 26
    assert np.isnan(inpaint_nans(np.full((3, 3), np.nan))).all()


def test_dust_values_and_flag():
    cut = fixed_cutout()
    _, dust, _, flags = early_fusion([cut, cut])
    np.testing.assert_array_equal(dust, 0)
    assert all(MantisFlag.DUST_UNKNOWN in MantisFlag(int(f)) for f in flags)
    _, dust, _, flags = early_fusion([cut, cut], ebv=[[0.1, 0.2], [np.nan, 0.1]])
    np.testing.assert_allclose(dust, [[0.1, 0.2], [0, 0]])
    assert flags.tolist() == [0, int(MantisFlag.DUST_UNKNOWN)]
    _, dust, _, _ = early_fusion(cut, ebv=[0.05, 0.06] * u.mag)
    np.testing.assert_allclose(dust, [[0.05, 0.06]])
    with pytest.raises(ValueError, match=r"ebv must have shape \(2, 2\)"):
        early_fusion([cut, cut], ebv=[0.1, 0.2])


def test_late_fusion_native_grids():
    cut = fixed_cutout()
    partial = MultiSurveyCutout(COORD, {"galex": cut["galex"]}, missing=["panstarrs", "unwise"])
    images, dust, valid, flags = late_fusion([cut, partial])
    assert images["galex"].shape == (2, 2, 32, 32)
    assert images["panstarrs"].shape == (2, 5, 170, 170)
    assert images["unwise"].shape == (2, 2, 32, 32)
    np.testing.assert_allclose(images["galex"][0], np.clip(cut["galex"].data / 0.05, 0, 1))
    np.testing.assert_allclose(images["unwise"][0],
                               np.maximum(np.arcsinh(0.6 * cut["unwise"].data) / 6, 0),
                               rtol=1e-6)
    np.testing.assert_array_equal(images["panstarrs"][1], 0)
    cut["unwise"].data[:] = np.nan
    late = late_fusion(cut)
    assert MantisFlag.UNWISE_MISSING in MantisFlag(int(late.flags[0]))
    assert not late.valid["unwise"].any() and late.valid["galex"].all()
    assert valid["galex"].all() and not valid["panstarrs"][1].any()
    assert MantisFlag.PANSTARRS_MISSING in MantisFlag(int(flags[1]))


def gaussian_source(n, sigma, flux, nbands):
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    g = np.exp(-(xx ** 2 + yy ** 2) / (2 * sigma ** 2))
    return np.repeat((flux * g / g.sum())[None], nbands, axis=0)


def test_reproject_fusion_conserves_flux_on_a_common_grid():
    galex = gaussian_source(32, 2.0, 10.0, 2)            # 3″ sigma: all inside 30″
    ps1 = gaussian_source(170, 8.0, 1000.0, 5)           # 2″ sigma
    wise = gaussian_source(32, 1.2, 50.0, 2)             # 3.3″ sigma
    cut = MultiSurveyCutout(COORD, {"galex": image("galex", galex),
                                    "panstarrs": image("panstarrs", ps1),
                                    "unwise": image("unwise", wise)})
    raw = reproject_fusion(cut, normalise=False)
    assert raw.x.shape == (1, 9, 120, 120) and raw.valid.all()
    sums = raw.x[0].sum(axis=(1, 2))
    np.testing.assert_allclose(sums, [10, 10, 1000, 1000, 1000, 1000, 1000, 50, 50], rtol=0.02)
    yy, xx = np.mgrid[:120, :120]
    for plane in raw.x[0]:   # every channel centred on the same sky position
        cy, cx = (plane * yy).sum() / plane.sum(), (plane * xx).sum() / plane.sum()
        assert abs(cy - 59.5) < 0.2 and abs(cx - 59.5) < 0.2
    fused = reproject_fusion(cut, size=60, pixscale=0.5 * u.arcsec)
    assert fused.x.shape == (1, 9, 60, 60) and np.isfinite(fused.x).all()
    assert fused.x.max() > 0 and fused.x.min() >= 0


def test_reproject_fusion_normalises_in_native_pixel_units():
    flat = MultiSurveyCutout(COORD, {"unwise": image("unwise", np.full((2, 32, 32), 2.0))})
    x = reproject_fusion(flat).x[0]
    np.testing.assert_allclose(x[7:, 20:100, 20:100], np.arcsinh(1.2) / 6, rtol=1e-3)
    assert not reproject_fusion(flat).valid[0, :7].any()


def test_outputs_are_always_finite():
    rng = np.random.default_rng(7)
    cuts = []
    for i in range(3):
        cut = fixed_cutout(i)
        for img in cut.surveys.values():
            d = img.data
            d[rng.random(d.shape) < 0.05] = np.nan
            d[rng.random(d.shape) < 0.01] = np.inf
            d[rng.random(d.shape) < 0.01] = -np.inf
        cuts.append(cut)
    for policy in ("zero", "inpaint"):
        assert np.isfinite(early_fusion(cuts, nan_policy=policy).x).all()
        late = late_fusion(cuts, nan_policy=policy)
        assert all(np.isfinite(a).all() for a in late.images.values())
    assert np.isfinite(reproject_fusion(cuts[:1]).x).all()


def test_fuse_arrays_matches_early_fusion():
    cuts = [fixed_cutout(i) for i in range(3)]
    cuts[1]["panstarrs"].data[2, 50:60] = np.nan
    cuts[2]["unwise"].data[:] = np.nan       # no finite pixel: the survey counts as missing
    ebv = np.array([[0.1, 0.2], [0.0, 0.01], [np.nan, np.nan]])
    stack = {s: np.stack([c[s].data for c in cuts]) for s in ("galex", "panstarrs", "unwise")}
    for policy in ("zero", "inpaint"):
        a = early_fusion(cuts, ebv=ebv, nan_policy=policy)
        b = fuse_arrays(**stack, ebv=ebv, nan_policy=policy)
        for field in ("x", "dust", "valid"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
        # cutout flags add NAN_PIXELS from anywhere in the image; the rest agree
        np.testing.assert_array_equal(a.flags & ~int(MantisFlag.NAN_PIXELS),
                                      b.flags & ~int(MantisFlag.NAN_PIXELS))
    assert MantisFlag.UNWISE_MISSING in MantisFlag(int(b.flags[2]))
    assert MantisFlag.NAN_PIXELS in MantisFlag(int(b.flags[1]))
    assert not b.valid[2, 7:].any()
    none = fuse_arrays(panstarrs=stack["panstarrs"])
    assert (none.flags & int(MantisFlag.GALEX_MISSING)).all() and not none.valid[:, :2].any()
    with pytest.raises(ValueError, match="disagree on the number of rows"):
        fuse_arrays(galex=stack["galex"], unwise=stack["unwise"][:2])


def test_rejects_foreign_objects():
    with pytest.raises(TypeError, match="MultiSurveyCutout"):
        early_fusion([np.zeros((9, 120, 120))])


def test_fusion_refuses_images_in_another_unit():
    """The stretches are fixed in each survey's unit: a PS1 image labelled Jy (or any
    unit that is not ct) is refused, naming the survey and both units, not fused as
    counts; the same unit spelled otherwise is fine."""
    cut = fixed_cutout()
    ps1 = cut["panstarrs"]
    jy = SurveyImage("panstarrs", ps1.data, ps1.wcs, u.Jy, ps1.bands)
    bad = MultiSurveyCutout(COORD, {"galex": cut["galex"], "panstarrs": jy,
                                    "unwise": cut["unwise"]})
    for fuse in (early_fusion, late_fusion, reproject_fusion):
        with pytest.raises(ValueError, match=r"panstarrs.*'Jy'.*expects 'ct'"):
            fuse([cut, bad])
    reproject_fusion(bad, normalise=False)  # fluxes in the images' own units: no stretch
    for name, unit in [("galex", "adu"), ("unwise", "nanomaggy"), ("galex", ""),
                       ("unwise", u.ct)]:
        img = cut[name]
        wrong = SurveyImage(name, img.data, img.wcs, unit, img.bands)
        with pytest.raises(ValueError, match=name):
            early_fusion(MultiSurveyCutout(COORD, {**cut.surveys, name: wrong}))
    # the expected units, however spelled: fused as before
    ref = early_fusion(cut)
    same = {name: SurveyImage(name, cut[name].data, cut[name].wcs, unit, cut[name].bands,
                              zeropoints=cut[name].zeropoints)
            for name, unit in [("galex", "count / s"), ("panstarrs", u.count),
                               ("unwise", "nanomaggy_vega")]}
    np.testing.assert_array_equal(early_fusion(MultiSurveyCutout(COORD, same)).x, ref.x)
