# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Pan-STARRS counts rescaled to the reference exposure times, end to end."""
import numpy as np
import pytest
import torch

from astro_mantis import MantisFlag, MultiSurveyCutout
from astro_mantis.fusion import early_fusion, fuse_arrays
from astro_mantis.fusion.exposure import (exposure_scale, model_panstarrs_exposure,
                                          reference_exptime, to_reference_exposure,
                                          zeropoint_exptime)
from astro_mantis.models import build_model, predict
from astro_mantis.surveys import SURVEYS

from test_fusion import COORD, fixed_cutout, image

TINY = {"widths": (4, 8, 8, 8), "depths": (1, 1, 1, 1), "hidden": 16}
BANDS = ("g", "r", "i", "z", "y")


def tiny(exposure):
    torch.manual_seed(0)
    return build_model("mantis-mini", panstarrs_exposure=exposure, **TINY).eval()


def test_reference_exptime_is_the_survey_declaration():
    ps1 = SURVEYS["panstarrs"]
    assert reference_exptime().tolist() == [ps1.typical_exptime[b] for b in BANDS]


def test_exposure_scale_and_unknown_values():
    ref = reference_exptime()
    exptime = np.array([[2 * ref[0], ref[1] / 2, np.nan, 0.0, -5.0]])
    scale, known = exposure_scale(exptime)
    assert scale.dtype == np.float32 and scale.shape == (1, 5)
    np.testing.assert_allclose(scale[0], [0.5, 2.0, 1.0, 1.0, 1.0])
    assert known.tolist() == [[True, True, False, False, False]]
    # the zero points 25 + 2.5 log10(EXPTIME) give the same factors
    zp = 25 + 2.5 * np.log10(np.where(known, exptime, np.nan))
    np.testing.assert_allclose(exposure_scale(zeropoint_exptime(zp))[0], scale, rtol=1e-6)
    with pytest.raises(ValueError, match="g r i z y"):
        exposure_scale(np.ones((3, 4)))


def test_stacks_of_any_depth_give_the_same_reference_counts():
    """Counts scale with EXPTIME; rescaled, two stacks of one galaxy agree."""
    rng = np.random.default_rng(1)
    sky = rng.uniform(0, 1, (1, 5, 20, 20)).astype(np.float32)  # counts per second
    t1 = np.array([[800.0, 900.0, 1000.0, 1100.0, 600.0]])
    t2 = 1.3 * t1
    a, fa = to_reference_exposure(sky * t1[:, :, None, None], t1)
    b, fb = to_reference_exposure(sky * t2[:, :, None, None], t2)
    np.testing.assert_allclose(a, b, rtol=1e-5)
    np.testing.assert_allclose(a, sky * reference_exptime()[None, :, None, None], rtol=1e-5)
    assert fa.tolist() == fb.tolist() == [0]
    with pytest.raises(ValueError, match="shape"):
        to_reference_exposure(sky, np.ones((2, 5)))


def test_unknown_exposure_flags_only_rows_with_pixels():
    data = np.ones((3, 5, 4, 4), np.float32)
    data[2] = np.nan                                    # no PS1 image in row 2
    exptime = np.array([reference_exptime(), [np.nan] * 5, [np.nan] * 5])
    counts, flags = to_reference_exposure(data, exptime)
    assert flags.tolist() == [0, int(MantisFlag.EXPTIME_UNKNOWN), 0]
    np.testing.assert_array_equal(counts[:2], data[:2])  # unknown: counts kept
    _, flags = to_reference_exposure(data, None)
    assert flags.tolist() == [int(MantisFlag.EXPTIME_UNKNOWN)] * 2 + [0]


def _cutout(ps1, exptime):
    base = fixed_cutout(0)
    return MultiSurveyCutout(COORD, {"galex": base.surveys["galex"],
                                     "panstarrs": image("panstarrs", ps1, exptime=exptime),
                                     "unwise": base.surveys["unwise"]})


def test_early_fusion_reads_the_stack_zero_points():
    ps1 = fixed_cutout(0).surveys["panstarrs"].data
    deep = {b: 2.0 * SURVEYS["panstarrs"].typical_exptime[b] for b in BANDS}
    typical = _cutout(ps1, None)
    twice = _cutout(2.0 * ps1, deep)                    # the same sky, twice the exposure
    ref = early_fusion([typical, twice], panstarrs_exposure="reference")
    np.testing.assert_allclose(ref.x[1], ref.x[0], atol=1e-6)
    assert ref.flags.tolist() == [int(MantisFlag.DUST_UNKNOWN)] * 2
    stack = early_fusion([typical, twice])              # the published recipe: counts as served
    np.testing.assert_array_equal(stack.x[0], ref.x[0])  # typical depth: nothing changes
    assert not np.allclose(stack.x[1, 2:7], stack.x[0, 2:7])
    np.testing.assert_array_equal(stack.x[1, [0, 1, 7, 8]], stack.x[0, [0, 1, 7, 8]])
    # a stack without its zero point keeps its counts and is flagged
    bare = fixed_cutout(0)
    bare.surveys["panstarrs"].zeropoints[:] = np.nan
    out = early_fusion([bare], panstarrs_exposure="reference")
    assert out.flags[0] & MantisFlag.EXPTIME_UNKNOWN
    np.testing.assert_array_equal(out.x[0], stack.x[0])
    with pytest.raises(ValueError, match="panstarrs_exposure"):
        early_fusion([typical], panstarrs_exposure="calibrated")


def test_predict_follows_the_network():
    """A reference network gets rescaled counts from cutouts and from native arrays."""
    ps1 = fixed_cutout(0).surveys["panstarrs"].data
    exptime = {b: t for b, t in zip(BANDS, (700.0, 1300.0, 1000.0, 800.0, 900.0))}
    cut = _cutout(ps1, exptime)
    arrays = {"galex": cut.surveys["galex"].data[None], "panstarrs": ps1[None],
              "unwise": cut.surveys["unwise"].data[None]}
    times = np.array([[exptime[b] for b in BANDS]])
    net = tiny("reference")
    from_cutout = predict([cut], model=net, precision="float32")
    from_arrays = predict(dict(arrays, panstarrs_exptime=times), model=net, precision="float32")
    np.testing.assert_allclose(from_arrays.pdf, from_cutout.pdf, rtol=1e-4, atol=1e-7)
    scaled, _ = to_reference_exposure(ps1[None], times)
    fused = fuse_arrays(arrays["galex"], scaled, arrays["unwise"])
    from_fused = predict(fused.x, model=net, dust=np.zeros((1, 2)), precision="float32")
    np.testing.assert_allclose(from_fused.pdf, from_cutout.pdf, rtol=1e-4, atol=1e-7)
    assert not from_cutout.meta["flags"][0] & MantisFlag.EXPTIME_UNKNOWN
    # without exposure times: counts as served, and the flag says so
    blind = predict(arrays, model=net, precision="float32")
    assert blind.meta["flags"][0] & MantisFlag.EXPTIME_UNKNOWN
    assert not np.allclose(blind.pdf, from_cutout.pdf, rtol=1e-4, atol=1e-7)
    # a stack network ignores the exposure times
    plain = tiny("stack")
    np.testing.assert_allclose(predict([cut], model=plain, precision="float32").pdf,
                               predict(arrays, model=plain, precision="float32").pdf,
                               rtol=1e-4, atol=1e-7)
    with pytest.raises(ValueError, match="panstarrs_exptime"):
        predict(dict(arrays, panstarrs_exptime=np.ones((2, 5))), model=net)


def test_networks_declare_what_they_take(tmp_path):
    from astro_mantis.models import load_model, save_model
    from astro_mantis.training.loop import model_exposure

    assert build_model("mantis-mini").panstarrs_exposure == "reference"
    assert model_exposure("mantis-mini") == "reference"
    assert model_exposure("mantis-mini", {"panstarrs_exposure": "stack"}) == "stack"
    assert model_exposure(torch.nn.Linear(2, 2)) == "stack"
    with pytest.raises(ValueError, match="panstarrs_exposure"):
        build_model("mantis-mini", panstarrs_exposure="counts")
    # a card written before the setting existed means the published recipe
    net = tiny("reference")
    path, card_path = save_model(net, tmp_path / "old.safetensors")
    import json

    card = json.loads(card_path.read_text())
    assert card["architecture"]["panstarrs_exposure"] == "reference"
    del card["architecture"]["panstarrs_exposure"]
    card_path.write_text(json.dumps(card))
    assert load_model("mantis-mini", weights=path).panstarrs_exposure == "stack"


def test_cutouts_from_the_services_carry_what_the_rescaling_needs(server):
    """Through real HTTP: fitscut's EXPTIME becomes the zero points the fusion reads."""
    from astropy.coordinates import SkyCoord

    from astro_mantis import Mantis

    coords = SkyCoord([150.1, 150.2], [2.2, 2.25], unit="deg")
    cuts = Mantis.get_cutouts(coords)
    ps1 = cuts[0].surveys["panstarrs"]
    exptime = np.array([[c.surveys["panstarrs"].meta[f"EXPTIME{b.upper()}"] for b in BANDS]
                        for c in cuts])
    assert not np.allclose(exptime, reference_exptime())  # stacks of other depths
    ref = early_fusion(cuts, panstarrs_exposure="reference")
    assert not (ref.flags & MantisFlag.EXPTIME_UNKNOWN).any()
    scaled, _ = to_reference_exposure(np.stack([c.surveys["panstarrs"].data for c in cuts]),
                                      exptime)
    expect = fuse_arrays(panstarrs=scaled)
    np.testing.assert_allclose(ref.x[:, 2:7], expect.x[:, 2:7], atol=1e-6)
    assert np.isfinite(ps1.zeropoints).all()


class _Wrapper(torch.nn.Module):
    """A user's wrapper module that holds the network as ``module``."""

    def __init__(self, net):
        super().__init__()
        self.module = net

    def forward(self, x, dust):
        return self.module(x, dust)


def test_wrappers_take_what_the_network_inside_takes():
    net = tiny("reference")
    assert model_panstarrs_exposure(net) == "reference"
    assert model_panstarrs_exposure(torch.nn.DataParallel(net)) == "reference"
    assert model_panstarrs_exposure(_Wrapper(_Wrapper(net))) == "reference"
    compiled = torch.compile(net)  # not run: wrapping only
    assert model_panstarrs_exposure(compiled) == "reference"
    # a wrapper that declares its own setting wins; nothing declared means the published recipe
    outer = _Wrapper(net)
    outer.panstarrs_exposure = "stack"
    assert model_panstarrs_exposure(outer) == "stack"
    assert model_panstarrs_exposure(torch.nn.Linear(2, 2)) == "stack"
    assert model_panstarrs_exposure(None) == "stack"
    bad = _Wrapper(net)
    bad.panstarrs_exposure = "counts"
    with pytest.raises(ValueError, match="panstarrs_exposure must be one of"):
        model_panstarrs_exposure(bad)
    # predict fuses for the network inside the wrapper: same PDFs as the network itself
    ps1 = fixed_cutout(0).surveys["panstarrs"].data
    cut = _cutout(ps1, {b: t for b, t in zip(BANDS, (700.0, 1300.0, 1000.0, 800.0, 900.0))})
    direct = predict([cut], model=net, precision="float32")
    wrapped = predict([cut], model=_Wrapper(net), precision="float32")
    np.testing.assert_allclose(wrapped.pdf, direct.pdf, rtol=1e-5, atol=1e-8)
