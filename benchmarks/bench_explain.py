"""Explain and trust on the mock sky: attribution cost, OOD AUROC, shift tests, surrogate fidelity.

Everything runs on SIMULATED data (the package's mock sky) with the bundled
``mantis-mini``: the figures describe the tools on the mock sky, not the real sky.

Sections (``--only`` picks some):

``bands``      exact Shapley values (512 coalitions) against integrated gradients on
               ``--n-bands`` test galaxies: seconds per galaxy (ratio IG / Shapley, same
               run), mean survey shares in redshift bins, and how often IG ranks the
               bands like the exact values (Kendall τ per galaxy).
``ood``        the reference embedding of the train split; AUROC (against held-out test
               galaxies) and flagged fraction for galaxies at 1.6 < z < 1.7, stars,
               blank sky, and corrupted test galaxies (a missing survey, a saturated or
               shifted band), with what each corruption does to the network's
               redshifts (NMAD and outliers of the PDF means, float32, beside the
               same galaxies intact): the score should rise where they are harmed.
``shift``      MMD shift tests: random halves of the test split (p-values over seeds),
               and a sample with a different n(z).
``surrogate``  conjugate-kernel and projected-NTK surrogates fitted on ``--n-train`` train
               galaxies: Kendall τ against the network on ``--n-test`` test galaxies,
               seconds and memory.
``spectra``    outliers and tail exponents of the bundled weights against a random
               initialisation.
``probes``     layer-wise PCA probes on the test split.

``shift`` also tests the held-out sample against a sample of the training randomisation
with every PSF 1.5× wider and, with ``--shifted-data``, against the shifted-simulator
set.

Usage::

    python benchmarks/bench_explain.py [--data DIR] [--figures docs/_static]

For the bundled model (trained by the recipe on the randomised sky; its reference embedding
ships beside the weights), with the recipe's test and shifted sets::

    python benchmarks/bench_explain.py --only ood,shift --reference bundled --randomised \
        --data WORKDIR/data/test --shifted-data WORKDIR/data/shifted

Without ``--data``, a 2,400-galaxy mock dataset (seed 11; 60/20/20 split; about a
minute to render) is made in a temporary directory. It is a fresh draw from the same
mock-sky configuration the bundled model was trained on, not its training set.
"""
import argparse
import json
import os
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch

from _machine import cpu_model  # benchmarks/ is on the path of a script run from it

from astro_mantis.fusion.exposure import model_panstarrs_exposure


def save_small(fig, path, dpi=90):
    """Save a figure as a small PNG: 256-colour palette (Pillow), then close it."""
    import matplotlib.pyplot as plt
    from PIL import Image

    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    Image.open(path).convert("RGB").quantize(256).save(path, optimize=True)


def fused_split(data, split, n=None, net=None):
    """Fused galaxies of a split, as ``net`` takes them (the published recipe if None)."""
    from astro_mantis.training.data import read_fused

    return read_fused(data, split, n, model_panstarrs_exposure(net))


def render_fused(sky, ra, dec, net=None):
    from astro_mantis.fusion import fuse_arrays
    from astro_mantis.fusion.exposure import to_reference_exposure

    parts = {"galex": [], "panstarrs": [], "unwise": []}
    exptime = []
    for a, b in zip(ra, dec):
        r = sky.render_arrays((float(a), float(b)))
        for s, (arr, info) in r.items():
            shape = (5, 170, 170) if s == "panstarrs" else (2, 32, 32)
            parts[s].append(np.full(shape, np.nan, np.float32) if arr is None else arr)
            if s == "panstarrs":
                exptime.append(info.get("exptime", [np.nan] * 5))
    arrays = {s: np.array(parts[s]) for s in parts}
    if model_panstarrs_exposure(net) == "reference":
        arrays["panstarrs"], _ = to_reference_exposure(arrays["panstarrs"], np.array(exptime))
    return fuse_arrays(arrays["galex"], arrays["panstarrs"], arrays["unwise"],
                       ebv=np.zeros((len(ra), 2)))


def section_bands(net, data, n, out, figures):
    from scipy.stats import kendalltau

    from astro_mantis.explain import BANDS, SURVEYS, band_attribution, survey_shares_by_redshift

    x, d, z, _ = fused_split(data, "test", n, net=net)
    t0 = time.perf_counter()
    sh = band_attribution(x, model=net, dust=d)
    t_sh = (time.perf_counter() - t0) / len(x)
    t0 = time.perf_counter()
    ig = band_attribution(x, model=net, dust=d, method="ig", n_steps=50)
    t_ig = (time.perf_counter() - t0) / len(x)
    phi_s = np.stack([sh[f"phi_{b}"] for b in BANDS], 1)
    phi_i = np.stack([ig[f"phi_{b}"] for b in BANDS], 1)
    taus = np.array([kendalltau(a, b)[0] for a, b in zip(phi_s, phi_i)])
    eff = np.abs(phi_s.sum(1) - (sh["v_all"] - sh["v_none"])).max()
    rel_delta = np.median(np.abs(ig["ig_delta"]) / np.abs(ig["v_all"] - ig["v_none"]))
    binned = survey_shares_by_redshift(sh, z, bins=[0, 0.2, 0.4, 0.6, 0.9, 1.2, 1.6])
    print(f"[bands] {len(x)} test galaxies: exact Shapley {t_sh:.2f} s/galaxy (512 "
          f"coalitions), IG {t_ig:.3f} s/galaxy (50 steps): IG costs {t_ig / t_sh:.1%} of "
          "Shapley")
    print(f"[bands] efficiency max |sum phi - (v_all - v_none)| = {eff:.2e}; IG median "
          f"relative completeness error {rel_delta:.2%}; median Kendall tau(IG, Shapley) "
          f"over bands {np.median(taus):.2f}")
    for row in binned:
        print(f"[bands] {row['z_lo']:.1f} <= z < {row['z_hi']:.1f} (n={row['n']:3d}): "
              + ", ".join(f"{s} {row[f'share_{s}']:.2f}±{row[f'share_{s}_err']:.2f}"
                          for s in SURVEYS))
    mean_abs = np.abs(phi_s).mean(0)
    print("[bands] mean |phi| per band: " + ", ".join(f"{b} {v:.4f}"
                                                      for b, v in zip(BANDS, mean_abs)))
    out["bands"] = {"n": len(x), "s_per_galaxy_shapley": t_sh, "s_per_galaxy_ig": t_ig,
                    "ig_over_shapley": t_ig / t_sh, "efficiency_max_error": float(eff),
                    "ig_relative_delta_median": float(rel_delta),
                    "kendall_tau_ig_shapley_median": float(np.median(taus)),
                    "shares": {c: [float(v) for v in binned[c]] for c in binned.colnames},
                    "mean_abs_phi": dict(zip(BANDS, map(float, mean_abs)))}
    if figures:

        from astro_mantis.explain import plot_survey_shares

        ax = plot_survey_shares(sh, z, bins=[0, 0.2, 0.4, 0.6, 0.9, 1.2, 1.6])
        ax.set_title(f"mantis-mini, exact Shapley of the PDF mean, {len(x)} mock test "
                     "galaxies (simulated)", fontsize="x-small")
        save_small(ax.figure, Path(figures) / "explain_survey_shares.png", dpi=90)


def section_ood(net, data, n_case, out, figures, reference="train", test_data=None,
                randomised=False):
    import dataclasses

    from astro_mantis.explain import auroc, build_reference, load_reference, ood_score
    from astro_mantis.simulate import MockSky, PopulationConfig, training_randomisation
    from astro_mantis.simulate.dataset import dataset_config

    t0 = time.perf_counter()
    ref = load_reference(net) if reference == "bundled" else build_reference(net, data, "train")
    t_ref = time.perf_counter() - t0
    x, d, z, _ = fused_split(test_data or data, "test", net=net)
    held = ood_score(x, net, ref, dust=d)
    print(f"[ood] reference: {len(ref.points)} galaxies of the {ref.meta.get('split')} split"
          f"{' with ' + ', '.join(ref.statistics) if ref.statistics else ''}, "
          f"{len(ref.components)} axes "
          f"({ref.meta['explained_variance']:.1%} of the variance), k={ref.k}, "
          f"{t_ref:.1f} s; held-out test galaxies above 0.99: {np.mean(held > 0.99):.1%} "
          f"of {len(held)}")
    base = dataset_config(n_case,
                          randomisation=training_randomisation() if randomised else None)
    pop = PopulationConfig(frac_main=0.0, frac_lrg=1.0, frac_elg=0.0, lrg_z_mean=1.65,
                           lrg_z_sigma=0.05, lrg_z_min=1.6, lrg_z_max=1.7, lrg_mag_limit=23.0)
    hz = MockSky(dataclasses.replace(base, population=pop), seed=3)
    cases = {"1.6 < z < 1.7 (LRG-like, i < 23)": render_fused(hz, hz.catalog["ra"],
                                                              hz.catalog["dec"], net=net)}
    sky = MockSky(base, seed=4)
    src = sky.sources_near((185.0, 25.0), 1.0)
    stars = src[src["kind"] == "star"]
    stars = stars[np.argsort(stars["mag_r"])][: 4 * n_case: 4]
    cases[f"stars (r {np.min(stars['mag_r']):.0f}-{np.max(stars['mag_r']):.0f})"] = \
        render_fused(sky, stars["ra"], stars["dec"], net=net)
    rng = np.random.default_rng(0)
    cases["blank sky"] = render_fused(sky, 185 + rng.uniform(-0.5, 0.5, n_case),
                                      25 + rng.uniform(-0.5, 0.5, n_case), net=net)
    m = n_case
    harm = {}   # what each corruption does to the network's redshifts (the galaxies have z)
    for name, change in (("PS1 missing", lambda a: a.__setitem__((slice(None), slice(2, 7)), 0)),
                         ("unWISE missing", lambda a: a.__setitem__((slice(None), slice(7, 9)), 0)),
                         ("GALEX missing", lambda a: a.__setitem__((slice(None), slice(0, 2)), 0)),
                         ("r saturated (= 1)", lambda a: a.__setitem__((slice(None), 3), 1.0)),
                         ("r shifted 12 px", lambda a: a.__setitem__(
                             (slice(None), 3), np.roll(a[:, 3], 12, axis=-1)))):
        xc = x.copy()   # scored on the first m; the harm measured on the whole test split
        change(xc)
        cases[name] = (xc[:m], d[:m])
        harm[name] = _nmad_and_outliers(net, xc, d, z)
        del xc
    intact = _nmad_and_outliers(net, x, d, z)
    print(f"[ood] the {len(z)} test galaxies intact: NMAD {intact[0]:.4f}, outliers > 0.15 "
          f"{intact[1]:.1%} (below, each corrupted case's on the same galaxies)")
    res = {}
    scores = {"held-out galaxies": held}
    for name, c in cases.items():
        s = ood_score(c[0], net, ref, dust=c[1])
        scores[name] = s
        res[name] = {"auroc": auroc(held, s), "flagged": float(np.mean(s > 0.99)), "n": len(s)}
        extra = ""
        if name in harm:
            res[name]["nmad"], res[name]["outliers"] = harm[name]
            extra = f"  NMAD {harm[name][0]:.4f}, outliers > 0.15 {harm[name][1]:.1%}"
        print(f"[ood] {name:34s} AUROC {res[name]['auroc']:.3f}  flagged (score > 0.99) "
              f"{res[name]['flagged']:.1%}  (n={len(s)}){extra}")
    out["ood"] = {"reference_rows": len(ref.points), "held_flagged": float(np.mean(held > 0.99)),
                  "intact": {"nmad": intact[0], "outliers": intact[1]}, "cases": res}
    if figures:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.4))
        bins = np.linspace(0, 1, 21)
        for name, s in scores.items():
            ax.hist(s, bins=bins, histtype="step", density=True, label=name,
                    lw=2 if name.startswith("held") else 1)
        ax.axvline(0.99, color="k", ls="--", lw=0.8)
        ax.set_xlabel("OOD score (percentile among the reference galaxies)")
        ax.set_ylabel("density")
        ax.legend(fontsize="xx-small", ncol=2)
        ax.set_title("mantis-mini on the mock sky (simulated)", fontsize="x-small")
        save_small(fig, Path(figures) / "explain_ood_scores.png", dpi=90)
    return ref, x, d, z


def _nmad_and_outliers(net, x, d, z):
    """NMAD and the > 0.15 outlier fraction of the network's PDF means (float32)."""
    from astro_mantis.metrics import photoz_metrics
    from astro_mantis.models import predict

    m = photoz_metrics(None, z, pdf=predict(x, model=net, dust=d, precision="float32"),
                       n_bootstrap=0)
    return float(m["nmad"]), float(m["outlier_0.15"])


def section_shifted_sky(net, ref, f_plain, shifted_data, n, out):
    """Shift tests against samples of another simulator: the shifted set, a wider PSF."""
    from astro_mantis.explain import embed, shift_test
    from astro_mantis.simulate import MockSky, Randomisation
    from astro_mantis.simulate.dataset import dataset_config

    samples = {}
    if shifted_data:
        xs, ds, _, _ = fused_split(shifted_data, "test", n, net=net)
        samples["shifted-simulator set"] = embed(xs, net, dust=ds)
    # the training randomisation with every PSF 1.5x wider (outside its 0.8-1.3 range)
    wide = Randomisation(psf_scale={"galex": (1.5, 1.5), "panstarrs": (1.5, 1.5),
                                    "unwise": (1.5, 1.5)})
    sky = MockSky(dataset_config(n, randomisation=wide), seed=21)
    fused = render_fused(sky, sky.catalog["ra"], sky.catalog["dec"], net=net)
    samples["PSF 1.5x wider"] = embed(fused.x, net, dust=np.column_stack(
        [sky.catalog["ebv_csfd"], sky.catalog["ebv_planck"]]))
    res = {}
    for name, f in samples.items():
        mmd = shift_test(f_plain[:n], f[:n], reference=ref, n_permutations=199)
        cl = shift_test(f_plain[:n], f[:n], reference=ref, n_permutations=199,
                        method="classifier")
        res[name] = {"mmd_p": mmd.p_value, "classifier_auc": cl.statistic,
                     "classifier_p": cl.p_value, "n": int(min(n, len(f)))}
        print(f"[shift] test set vs {name} ({res[name]['n']} each): MMD p = {mmd.p_value:.3f}; "
              f"classifier AUC {cl.statistic:.2f}, p = {cl.p_value:.3f}")
    out["shift_simulator"] = res


def section_shift(net, ref, x, d, z, out, seeds):
    from astro_mantis.explain import embed, shift_test

    f = embed(x, net, dust=d)
    p_random = []
    for seed in range(seeds):
        perm = np.random.default_rng(100 + seed).permutation(len(f))
        half = len(f) // 2
        p_random.append(shift_test(f[perm[:half]], f[perm[half:]], reference=ref,
                                   n_permutations=199, seed=seed).p_value)
    # a different n(z): galaxies drawn with weight rising with z, against a random draw
    rng = np.random.default_rng(7)
    w = z / z.sum()
    shifted = rng.choice(len(f), 150, replace=False, p=w)
    plain = rng.choice(np.setdiff1d(np.arange(len(f)), shifted), 150, replace=False)
    r_nz = shift_test(f[plain], f[shifted], reference=ref, n_permutations=199)
    r_cl = shift_test(f[plain], f[shifted], reference=ref, n_permutations=199,
                      method="classifier")
    ok = np.mean(np.array(p_random) > 0.05)
    print(f"[shift] random halves of the test split: p > 0.05 in {ok:.0%} of {seeds} seeds "
          f"(p = {', '.join(f'{p:.2f}' for p in p_random)})")
    print(f"[shift] n(z) tilted towards high z (median z {np.median(z[shifted]):.2f} vs "
          f"{np.median(z[plain]):.2f}, 150 each): MMD p = {r_nz.p_value:.3f}; classifier "
          f"AUC {r_cl.statistic:.2f}, p = {r_cl.p_value:.3f}")
    out["shift"] = {"random_p": p_random, "random_frac_p_gt_0.05": float(ok),
                    "nz_mmd_p": r_nz.p_value, "nz_classifier_auc": r_cl.statistic,
                    "nz_classifier_p": r_cl.p_value}
    return f


def section_surrogate(net, data, n_train, n_test, out, figures, test_data=None):
    from astro_mantis.explain import explain_by_example, fidelity, fit_surrogate, plot_examples

    xt, dt, zt, idt = fused_split(data, "train", n_train, net=net)
    xq, dq, zq, _ = fused_split(test_data or data, "test", n_test, net=net)
    res = {}
    for kernel in ("ck", "ntk"):
        tracemalloc.start()
        t0 = time.perf_counter()
        sur = fit_surrogate(net, xt, kernel=kernel, dust=dt, ids=idt, z=zt)
        t_fit = time.perf_counter() - t0
        t0 = time.perf_counter()
        tau, _, _ = fidelity(sur, xq, net, dust=dq)
        t_q = (time.perf_counter() - t0) / len(xq)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        res[kernel] = {"tau": tau, "fit_s": t_fit, "s_per_query": t_q,
                       "feature_dim": int(sur.features.shape[1]),
                       "numpy_peak_MB": peak / 2 ** 20}
        print(f"[surrogate] {kernel:3s}: Kendall tau {tau:.3f} on {len(xq)} test galaxies; "
              f"fit {t_fit:.1f} s on {len(xt)} train galaxies, {t_q * 1e3:.0f} ms per query; "
              f"{sur.features.shape[1]} features; numpy peak {peak / 2 ** 20:.0f} MB")
        if kernel == "ntk":
            n_par = sum(p.numel() for p in net.parameters())
            print(f"[surrogate] ntk per-galaxy gradients: {n_par:,} parameters, "
                  f"{4 * n_par / 2 ** 20:.1f} MB each, batch bounded by 512 MB")
            ntk = sur
    out["surrogate"] = res
    print(f"[surrogate] NTK costs {res['ntk']['fit_s'] / res['ck']['fit_s']:.0f}x the "
          "conjugate kernel to fit")
    if figures:

        q = int(np.argmin(np.abs(zq - 0.7)))
        t = explain_by_example(xq[q], ntk, net, k=4, dust=dq[q])
        fig = plot_examples(xq[q], xt, t)
        fig.suptitle(f"projected-NTK surrogate: query z_true={zq[q]:.2f} (simulated)",
                     fontsize="small")
        save_small(fig, Path(figures) / "explain_examples.png", dpi=80)


def section_spectra(net, out, figures):
    from astro_mantis.explain import plot_weight_spectra, weight_spectra
    from astro_mantis.models import build_model

    torch.manual_seed(0)
    fresh = weight_spectra(build_model("mantis-mini"))
    trained = weight_spectra(net)
    print(f"[spectra] singular values above the Marchenko-Pastur edge: trained "
          f"{trained['n_outliers'].sum()} in {len(trained)} layers, random init "
          f"{fresh['n_outliers'].sum()}; median tail alpha trained "
          f"{np.median(trained['alpha']):.1f}, random {np.median(fresh['alpha']):.1f}")
    for row in trained:
        print(f"[spectra]   {row['layer']:28s} {str(tuple(row['shape'])):12s} "
              f"outliers {row['n_outliers']:3d}  alpha {row['alpha']:5.1f}  "
              f"sv_max/edge {row['sv_max'] / row['mp_edge']:.1f}")
    out["spectra"] = {"trained_outliers": int(trained["n_outliers"].sum()),
                      "random_outliers": int(fresh["n_outliers"].sum()),
                      "trained_alpha_median": float(np.median(trained["alpha"])),
                      "random_alpha_median": float(np.median(fresh["alpha"]))}
    if figures:

        ax = plot_weight_spectra(trained)
        ax.set_title("mantis-mini (bundled weights)", fontsize="x-small")
        save_small(ax.figure, Path(figures) / "explain_spectra.png", dpi=90)


def section_probes(net, data, n, out, figures):
    from astro_mantis.explain import layer_probes

    x, d, z, _ = fused_split(data, "test", n, net=net)
    t = layer_probes(net, x, z, dust=d, n_components=(1, 2, 4, 8, 16, 32))
    for layer in dict.fromkeys(t["layer"]):
        sub = t[t["layer"] == layer]
        print(f"[probes] {layer:7s} width {sub['width'][0]:4d}: R2 "
              + " ".join(f"{c}:{r:.2f}" for c, r in zip(sub["n_components"], sub["r2"]))
              + f"; NMAD with 8 axes {sub['nmad'][list(sub['n_components']).index(8)]:.3f}")
    out["probes"] = {f"{r['layer']}/{r['n_components']}": {"r2": r["r2"], "nmad": r["nmad"]}
                     for r in t}
    if figures:

        from astro_mantis.explain import plot_layer_probes

        ax = plot_layer_probes(t)
        ax.set_title(f"mantis-mini, {len(x)} mock test galaxies (simulated)",
                     fontsize="x-small")
        save_small(ax.figure, Path(figures) / "explain_probes.png", dpi=90)


#: the sections ``--only`` picks from, in the order they run
SECTIONS = ("bands", "ood", "shift", "surrogate", "spectra", "probes")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=None, help="mock dataset directory (made if absent)")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--n-bands", type=int, default=96)
    parser.add_argument("--n-case", type=int, default=150)
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--n-test", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections to run (default all: "
                             f"{','.join(SECTIONS)})")
    parser.add_argument("--figures", default=None, help="write the guide's PNGs here")
    parser.add_argument("--json", default=None, help="write the figures as JSON here")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reference", choices=("train", "bundled"), default="train",
                        help="OOD reference: built from --data's train split, or the one "
                             "shipped beside the weights")
    parser.add_argument("--test-data", default=None,
                        help="directory whose test split is the held-out sample of every "
                             "section (default --data; --data then gives the train split)")
    parser.add_argument("--randomised", action="store_true",
                        help="render the OOD cases with the training randomisation (for a "
                             "model trained on it)")
    parser.add_argument("--shifted-data", default=None,
                        help="directory whose test split is a shifted-simulator set; with "
                             "'shift', it and a 1.5x-wider-PSF sample are tested against "
                             "the held-out sample")
    args = parser.parse_args(argv)
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    unknown = sorted(only - set(SECTIONS))
    if unknown or not only:
        parser.error(f"--only: unknown section(s) {', '.join(unknown) or '(none given)'}; "
                     f"known: {', '.join(SECTIONS)}")
    torch.set_num_threads(args.threads)
    from astro_mantis.models import load_model

    print(f"CPU: {cpu_model()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{args.threads} threads")
    data = args.data
    if data is None or not (Path(data) / "manifest.json").exists():
        from astro_mantis.simulate.dataset import make_dataset

        data = data or str(Path(tempfile.gettempdir()) / "astro_mantis_bench_explain")
        make_dataset(2400, data, seed=11, split=(0.6, 0.2, 0.2), shard_size=200,
                     progress=False)
    net = load_model("mantis-mini", weights=args.weights)
    out = {"cpu": cpu_model(), "data": str(data), "test_data": args.test_data}
    if "bands" in only:
        section_bands(net, args.test_data or data, args.n_bands, out, args.figures)
    if "ood" in only or "shift" in only:
        ref, x, d, z = section_ood(net, data, args.n_case, out, args.figures,
                                   reference=args.reference, test_data=args.test_data,
                                   randomised=args.randomised)
        if "shift" in only:
            f = section_shift(net, ref, x, d, z, out, args.seeds)
            section_shifted_sky(net, ref, f, args.shifted_data, args.n_case, out)
    if "surrogate" in only:
        section_surrogate(net, data, args.n_train, args.n_test, out, args.figures,
                          test_data=args.test_data)
    if "spectra" in only:
        section_spectra(net, out, args.figures)
    if "probes" in only:
        section_probes(net, args.test_data or data, 480, out, args.figures)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
