"""Which layer's embedding separates out-of-distribution inputs best (issue 15)?

Run from the repository root, on a data set made by the training recipe::

    python benchmarks/bench_ood_layers.py WORKDIR/data --n-case 200

For the bundled ``mantis-mini``, the image-averaged activations of every probed layer
(`astro_mantis.explain.layer_activations`: stem, the four stages, the pooled backbone
features and the penultimate ``hidden`` features that `astro_mantis.explain.ood_score`
uses) are computed for a reference set (the recipe's validation split, 4,096 galaxies),
held-out galaxies (its test split) and the out-of-distribution cases of
``bench_explain.py`` (galaxies at 1.6 < z < 1.7, stars, blank sky, a survey zeroed, the
r band saturated or shifted). For each layer alone, and for the whitened PCA
coordinates of several layers side by side (each layer weighted equally), it prints
the AUROC of the k-NN distance percentile (k = 10) of each case against the held-out
galaxies, and the fraction of held-out galaxies above 0.99. Every galaxy is simulated.
"""
import argparse
import dataclasses
import time

import numpy as np

from _machine import cpu_model  # benchmarks/ is on the path of a script run from it
from bench_explain import fused_split, render_fused

LAYER_SETS = (("stem", "stage0", "hidden"), ("stem", "stage0", "stage1", "stage2", "stage3",
                                              "hidden"))


def cases(xh, dh, n_case, net):
    from astro_mantis.simulate import MockSky, PopulationConfig
    from astro_mantis.simulate.dataset import dataset_config

    base = dataset_config(n_case)
    pop = PopulationConfig(frac_main=0.0, frac_lrg=1.0, frac_elg=0.0, lrg_z_mean=1.65,
                           lrg_z_sigma=0.05, lrg_z_min=1.6, lrg_z_max=1.7, lrg_mag_limit=23.0)
    hz = MockSky(dataclasses.replace(base, population=pop), seed=3)
    out = {"1.6 < z < 1.7": render_fused(hz, hz.catalog["ra"], hz.catalog["dec"], net)}
    sky = MockSky(base, seed=4)
    src = sky.sources_near((185.0, 25.0), 1.0)
    stars = src[src["kind"] == "star"]
    stars = stars[np.argsort(stars["mag_r"])][: 4 * n_case: 4]
    out["stars"] = render_fused(sky, stars["ra"], stars["dec"], net)
    rng = np.random.default_rng(0)
    out["blank sky"] = render_fused(sky, 185 + rng.uniform(-0.5, 0.5, n_case),
                                    25 + rng.uniform(-0.5, 0.5, n_case), net)
    out = {k: (v.x, v.dust) for k, v in out.items()}
    zero = {"PS1 missing": slice(2, 7), "unWISE missing": slice(7, 9),
            "GALEX missing": slice(0, 2)}
    for name, chans in zero.items():
        xc = xh[-n_case:].copy()
        xc[:, chans] = 0
        out[name] = (xc, dh[-n_case:])
    xc = xh[-n_case:].copy()
    xc[:, 3] = 1.0
    out["r saturated"] = (xc, dh[-n_case:])
    xc = xh[-n_case:].copy()
    xc[:, 3] = np.roll(xc[:, 3], 12, axis=-1)
    out["r shifted 12 px"] = (xc, dh[-n_case:])
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", help="the recipe's data directory (with validation/, test/)")
    parser.add_argument("--n-case", type=int, default=200)
    parser.add_argument("--n-held", type=int, default=1300)
    parser.add_argument("--components", type=int, default=16,
                        help="PCA axes per layer when layers are combined")
    args = parser.parse_args(argv)

    import torch

    from astro_mantis.explain import auroc, layer_activations
    from astro_mantis.explain.ood import ReferenceEmbedding

    print(f"CPU: {cpu_model()}; torch threads {torch.get_num_threads()}")
    from astro_mantis.models import load_model

    net = load_model("mantis-mini")
    xr, dr, _, _ = fused_split(f"{args.data}/validation", "validation", 4096, net)
    xh, dh, _, _ = fused_split(f"{args.data}/test", "test", args.n_held + args.n_case, net)
    all_cases = cases(xh, dh, args.n_case, net)
    t0 = time.perf_counter()
    feats = {"reference": layer_activations(net, xr, dust=dr),
             "held": layer_activations(net, xh[:args.n_held], dust=dh[:args.n_held])}
    feats.update({k: layer_activations(net, x, dust=d)
                  for k, (x, d) in all_cases.items()})
    print(f"activations of {len(xr)} + {args.n_held} + {len(all_cases)} x {args.n_case} "
          f"galaxies in {time.perf_counter() - t0:.0f} s (SIMULATED galaxies)\n")

    def scorer(layers, n_components):
        refs = [ReferenceEmbedding.from_features(
            feats["reference"][name], n_components=min(n_components,
                                                       feats["reference"][name].shape[1]))
            for name in layers]

        def coords(key):
            return np.concatenate([r.transform(feats[key][name]) / np.sqrt(len(r.components))
                                   for r, name in zip(refs, layers)], axis=1)

        ref = ReferenceEmbedding.from_features(coords("reference"), n_components=10**6)
        return lambda key: ref.score(coords(key))

    names = list(all_cases)
    print(f"{'embedding':42s} held>0.99  " + "  ".join(f"{n[:14]:>14s}" for n in names))
    rows = [((name,), 32) for name in feats["reference"]]
    rows += [(layers, args.components) for layers in LAYER_SETS]
    for layers, nc in rows:
        score = scorer(layers, nc)
        held = score("held")
        label = "+".join(layers) + ("" if len(layers) == 1 else f" ({nc} axes each)")
        print(f"{label:42s} {np.mean(held > 0.99):8.3f}   "
              + "  ".join(f"{auroc(held, score(k)):14.3f}" for k in names), flush=True)


if __name__ == "__main__":
    main()
