"""Inference and fusion at the hardware's limit: every model × precision × batch size.

Run from the repository root::

    python benchmarks/bench_inference.py                   # CPU, every batch size
    python benchmarks/bench_inference.py --quick           # CPU, fewer sizes and repeats
    python benchmarks/bench_inference.py --device cuda     # on a GPU (large batches)
    python benchmarks/bench_inference.py --data mock_data12k   # accuracy on its test split

What it prints, all measured in the same run (the machine may be shared and noisy:
compare the ratios, which are measured side by side, rather than absolute rates):

1. The machine: CPU model and the instruction-set features that matter (AMX-BF16,
   AVX512-BF16, VNNI), torch's thread count, the GPU if any.
2. The peak rate the cores (or the GPU) reach for this arithmetic, in multiply-adds
   per second, in float32 and bfloat16 (and float16 on a GPU): the larger of a large
   matrix product (2048³ on a CPU, 1024³ with ``--quick``, 8192³ on a GPU) and a
   large 3×3 convolution in channels-last layout (batch 64, 128 → 128 channels,
   16×16 on a CPU; batch 512, 256 → 256 channels, 32×32 on a GPU, where float32
   convolutions run as the networks' do, in TF32 where torch allows it), each the best
   of a few calls. Both are printed. This is the *measured* dense peak, not a data-sheet
   number (a virtual machine hides clock and turbo state); the convolution is there
   because on some CPUs (e.g. an AMD EPYC, where torch's matrix product is slower than
   oneDNN's convolutions) the networks' convolutions beat any matrix product. It is
   still only the best of what was measured: where a network runs faster than it, the
   fraction is not printed and the line says the peak is not a ceiling here.
3. For ``mantis-mini`` and the ``mantis-shrimp-v1`` architecture (random weights:
   nothing is downloaded; speed does not depend on weight values) × precision ×
   batch size: galaxies/s of the network on pre-fused arrays through
   `astro_mantis.models.predict_logits` (channels-last, inference mode, autocast),
   the ratio to float32, and the fraction of the measured peak (multiply-adds per
   galaxy counted with `torch.utils.flop_counter.FlopCounterMode` × galaxies/s ÷
   peak of that precision; never printed above 100 %, see 2.). The large network is
   timed on a few batches only. Then ``mantis-mini`` alone on input already in its
   type and channels-last layout (as the fusion writes it in ``predict``; what issue
   18's figures measured), eager and, with ``--compile``, compiled.
4. Fusion alone, 512 galaxies of native pixels (256 on a GPU run: 2,048): the NumPy
   reference (`astro_mantis.fusion.fuse_arrays`), the threaded twin
   (`~astro_mantis.fusion.fuse_arrays_batched`, same bits), the same also writing
   the network's bfloat16 channels-last input (``copy_to``), the one-pass recipe
   in C (`~astro_mantis.fusion.fuse_arrays_fast`, bfloat16 out, in batches of 64 as
   ``predict`` runs it), with ``--compile`` its torch recipe compiled
   (``native=False``), and on a GPU the torch recipe on the device; then fusion + network end to end
   from native arrays (`astro_mantis.models.predict` with a dict of arrays) for
   ``mantis-mini`` in each precision, and with ``--compile`` the compiled path
   (``compile=True``). The ratio printed for each precision is its fastest fusion
   over the network: the bit-exact fusion for float32, any for the others.
5. Accuracy per precision for the bundled ``mantis-mini``: on the test split of a
   mock data set (``--data``) when given, else on the bundled sample sky's 300
   galaxies served by the loopback server (SIMULATED galaxies either way: not a
   result on the real sky): NMAD, outliers, CRPS, PIT KS, 68 % coverage (bootstrap
   errors) and the mean PDF total-variation distance to float32; with ``--data``
   also bfloat16 from native arrays (the one-pass fusion, in C where it was built:
   "native"); with ``--compile``
   also bfloat16 through the compiled network ("compiled") and, with ``--data``,
   the whole compiled path from native arrays (``fuse_arrays_fast`` + compiled
   network: "fast path").
"""
import argparse
import contextlib
import os
import sys
import tempfile
import time
import warnings

import numpy as np
import torch

from astro_mantis.fusion import fuse_arrays, fuse_arrays_batched, fuse_arrays_torch
from astro_mantis.fusion.batched import fuse_arrays_fast, has_native_fusion
from astro_mantis.fusion.exposure import model_panstarrs_exposure
from astro_mantis.models import (build_model, load_model, native_precisions,
                                 pdf_total_variation, predict, predict_logits, quantize_int8,
                                 select_device)
from astro_mantis.models.precision import machine_summary


def fused_input(n, seed=0):
    """Values shaped like early-fusion output: mostly faint sky, in [0, 1]."""
    rng = np.random.default_rng(seed)
    x = rng.gamma(1.0, 0.05, size=(n, 9, 120, 120)).astype(np.float32)
    np.clip(x, 0, 1, out=x)
    dust = rng.uniform(0, 0.1, size=(n, 2)).astype(np.float32)
    return x, dust


def native_input(n, seed=0):
    rng = np.random.default_rng(seed)
    return {"galex": rng.gamma(1.0, 0.01, (n, 2, 32, 32)).astype(np.float32),
            "panstarrs": rng.normal(5.0, 20.0, (n, 5, 170, 170)).astype(np.float32),
            "unwise": rng.normal(1.0, 3.0, (n, 2, 32, 32)).astype(np.float32)}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def best_time(fn, device, repeats):
    """Best wall time of ``repeats`` calls after one warm-up call."""
    fn()
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


#: the convolution of the measured peak: batch, channels in = out, height = width (3×3,
#: stride 1, padding 1, channels-last)
PEAK_CONV = {"cpu": (64, 128, 16), "cuda": (512, 256, 32)}


def measured_peak(device, precisions, quick):
    """Multiply-adds per second in each precision: the larger of a large matrix product
    and a large 3×3 convolution (channels-last, as the networks run), each best of a few.

    Returns the matrix size, the peaks, and ``{precision: (matrix product rate,
    convolution rate)}``."""
    n = 8192 if device.type == "cuda" else (1024 if quick else 2048)
    cb, cc, hw = PEAK_CONV["cuda" if device.type == "cuda" else "cpu"]
    conv_macs = cb * cc * cc * 9 * hw * hw
    repeats = 3 if device.type == "cpu" else 10
    peaks, parts = {}, {}
    for p in precisions:
        if p == "int8":
            continue
        dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16,
                 "float16": torch.float16}[p]
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        mm = n ** 3 / best_time(lambda: a @ b, device, repeats)
        x = torch.randn(cb, cc, hw, hw, device=device).to(
            dtype, memory_format=torch.channels_last)
        w = torch.randn(cc, cc, 3, 3, device=device).to(
            dtype, memory_format=torch.channels_last)

        def conv():
            with torch.inference_mode():
                torch.nn.functional.conv2d(x, w, padding=1)
        cv = conv_macs / best_time(conv, device, repeats)
        peaks[p] = max(mm, cv)
        parts[p] = (mm, cv)
    # int8 products: no public torch CPU int8 GEMM to time; use 2 × bfloat16's as the
    # nominal ceiling (VNNI does twice bfloat16's multiply-adds per instruction)
    if "bfloat16" in peaks:
        peaks["int8"] = 2 * peaks["bfloat16"]
    return n, peaks, parts


def of_peak(frac):
    """The fraction of the peak as printed: never above 100 % (the peak is only the best
    of what was measured; a faster network shows it is not a ceiling here)."""
    if not np.isfinite(frac):
        return "  (no peak for this precision)"
    if frac > 1:
        return ("  above the measured peak: that peak is not a ceiling on this machine "
                "(or the load changed during the run)")
    return f"{100 * frac:5.1f} % of peak"


def macs_per_galaxy(model, device):
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(2, 9, 120, 120, device=device)
    d = torch.zeros(2, 2, device=device)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x, d)
    return counter.get_total_flops() / 2 / 2  # flops → multiply-adds, per galaxy


def prepare(model, device):
    model = model.to(device).eval()
    if device.type in ("cpu", "cuda"):
        model = model.to(memory_format=torch.channels_last)
    return model


def v1_random(device):
    big = build_model("mantis-shrimp-v1", device="meta").to_empty(device=device)
    gen = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for p in big.parameters():
            p.normal_(0.0, 0.02, generator=gen)
    big.meta = {"name": "mantis-shrimp-v1"}
    return prepare(big, device)


def network_rates(name, model, precisions, batch_sizes, n_batches, device, peaks, macs,
                  repeats, int8_model=None):
    rows = []
    base = {}
    for bs in batch_sizes:
        x, d = fused_input(bs * n_batches, seed=bs)
        if device.type == "cuda":  # pinned host arrays: asynchronous transfers
            x = torch.from_numpy(x).pin_memory()
            d = torch.from_numpy(d).pin_memory()
        for p in precisions:
            net = int8_model if p == "int8" else model
            if net is None:
                continue
            t = best_time(lambda: predict_logits(net, x, d, batch_size=bs, device=device,
                                                 precision="auto" if p == "int8" else p),
                          device, repeats)
            r = len(x) / t
            if p == "float32":
                base[bs] = r
            frac = r * macs / peaks[p] if p in peaks else float("nan")
            rows.append((name, p, bs, r, r / base[bs] if bs in base else float("nan"), frac))
            print(f"  {name:17s} {p:9s} batch {bs:5d}: {r:10.1f} galaxies/s  "
                  f"x{rows[-1][4]:5.2f} vs float32  {of_peak(frac)}", flush=True)
    return rows


def network_alone(model, device, repeats, compile_too):
    """The network on its input as the fusion writes it (its type, channels-last)."""
    from astro_mantis.models.inference import _compiled
    from astro_mantis.models.precision import inference_network

    x, d = fused_input(64, seed=3)
    x, d = torch.from_numpy(x).to(device), torch.from_numpy(d).to(device)
    out = {}
    for p in ("float32", "bfloat16"):
        net, dtype = inference_network(model, p, device)
        xin = x.to(dtype, memory_format=torch.channels_last)
        runs = [("eager", net)]
        if compile_too:
            runs.append(("compiled", _compiled(net, device, freeze=net is not model)))
        for how, fn in runs:
            def call():
                with torch.inference_mode(), (torch.autocast(device.type, torch.bfloat16)
                                              if net is model and p != "float32"
                                              else contextlib.nullcontext()):
                    for _ in range(8):
                        fn(xin, d)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = 8 * len(x) / best_time(call, device, repeats)
            out[(p, how)] = r
            print(f"  mantis-mini alone, {how:8s} {p:9s} batch    64: {r:10.1f} galaxies/s "
                  f"(input already {str(dtype).replace('torch.', '')}, channels-last)",
                  flush=True)
    return out


def fusion_rates(device, n, repeats, precisions, mini, compile_too=False):
    native = native_input(n)
    out = {}
    if device.type == "cpu":
        out["NumPy reference (fuse_arrays)"] = n / best_time(
            lambda: fuse_arrays(**native), device, max(1, repeats // 2))
        buf = np.empty((n, 9, 120, 120), np.float32)
        out["threaded, same bits (fuse_arrays_batched)"] = n / best_time(
            lambda: fuse_arrays_batched(**native, out=buf), device, repeats)
        low = torch.empty((n, 9, 120, 120), dtype=torch.bfloat16,
                          memory_format=torch.channels_last)
        out["threaded, same bits + bfloat16 copy (copy_to)"] = n / best_time(
            lambda: fuse_arrays_batched(**native, out=buf, copy_to=low), device, repeats)
        # batches of 64 into one reused buffer, as predict runs them
        parts = [{k: v[s:s + 64] for k, v in native.items()} for s in range(0, n, 64)]
        fast_out = torch.empty((64, 9, 120, 120), dtype=torch.bfloat16,
                               memory_format=torch.channels_last)
        if has_native_fusion():
            out["one pass in C into bfloat16 (fuse_arrays_fast)"] = n / best_time(
                lambda: [fuse_arrays_fast(**part, out=fast_out) for part in parts], device,
                repeats)
        else:
            print("  (the C fusion module was not built: fuse_arrays_fast runs torch)")
        if compile_too:
            t0 = time.perf_counter()
            fuse_arrays_fast(**parts[0], out=fast_out, native=False)
            print(f"  (fuse_arrays_fast, torch recipe: first call, compiling: "
                  f"{time.perf_counter() - t0:.0f} s)")
            out["one compiled torch pass into bfloat16 (native=False)"] = n / best_time(
                lambda: [fuse_arrays_fast(**part, out=fast_out, native=False)
                         for part in parts], device, repeats)
    else:
        pinned = {k: torch.from_numpy(np.ascontiguousarray(v[..., 25:145, 25:145]
                                                           if k == "panstarrs"
                                                           else v[..., 5:27, 5:27])
                                      ).pin_memory() for k, v in native.items()}
        out["torch on the device, crops from pinned memory"] = n / best_time(
            lambda: fuse_arrays_torch(**{k: v.to(device, non_blocking=True)
                                         for k, v in pinned.items()}, device=device),
            device, repeats)
        dev = {k: v.to(device) for k, v in pinned.items()}
        out["torch on the device, data already there"] = n / best_time(
            lambda: fuse_arrays_torch(**dev, device=device), device, repeats)
        few = {k: v[:64].copy() for k, v in native.items()}
        for v in few.values():
            v[np.random.default_rng(1).random(v.shape) < 0.01] = np.nan
        ref, gpu = fuse_arrays(**few), fuse_arrays_torch(**few, device=device)
        diff = np.abs(gpu.x.cpu().numpy() - ref.x)
        print(f"  torch fusion on {device} vs NumPy reference (64 galaxies, 1 % NaN): max "
              f"|diff| {diff.max():.2e}, {np.mean(diff > 0):.2%} of values differ; flags "
              f"equal: {np.array_equal(gpu.flags, ref.flags)}, valid equal: "
              f"{np.array_equal(gpu.valid, ref.valid)}")
    for name, r in out.items():
        print(f"  fusion {name:48s} {r:10.1f} galaxies/s", flush=True)
    e2e = {}
    bs = 64 if device.type == "cpu" else 1024
    for p in precisions:
        if p == "int8":
            continue
        e2e[p] = n / best_time(lambda: predict(native, model=mini, batch_size=bs,
                                               device=device, precision=p, compile=False),
                               device, max(1, repeats // 2))
        print(f"  fusion + mantis-mini end to end, {p:9s} {e2e[p]:10.1f} galaxies/s "
              f"(predict on native arrays, batch {bs})", flush=True)
        if compile_too and device.type == "cpu" and p != "float32":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t0 = time.perf_counter()
                predict(native, model=mini, batch_size=bs, device=device, precision=p,
                        compile=True)
                first = time.perf_counter() - t0
                r = n / best_time(lambda: predict(native, model=mini, batch_size=bs,
                                                  device=device, precision=p, compile=True),
                                  device, max(1, repeats // 2))
            e2e[p + " compiled"] = r
            print(f"  fusion + mantis-mini end to end, {p:9s} {r:10.1f} galaxies/s "
                  f"(compile=True: fuse_arrays_fast + compiled network; first call "
                  f"{first:.0f} s)", flush=True)
    return out, e2e


def sample_sky_inputs(exposure="stack"):
    """Fused inputs, dust and true z of the 300 sample-sky galaxies (loopback HTTP), with
    the Pan-STARRS counts ``exposure`` says (the model's ``panstarrs_exposure``)."""
    from astropy.coordinates import SkyCoord

    from astro_mantis import Mantis, conf
    from astro_mantis.fusion import early_fusion
    from astro_mantis.simulate import SampleSky
    from astro_mantis.testing import SurveyServer

    sky = SampleSky()
    cat = sky.catalog
    with tempfile.TemporaryDirectory() as tmp, SurveyServer(sky=sky) as srv, \
            srv.configure(conf), conf.set_temp("cache_dir", tmp):
        cuts = Mantis.get_cutouts(SkyCoord(cat["ra"], cat["dec"], unit="deg"), progress=False)
    fused = early_fusion(cuts, ebv=np.column_stack([cat["ebv_csfd"], cat["ebv_planck"]]),
                         panstarrs_exposure=exposure)
    return fused.x, fused.dust, np.asarray(cat["z"], float)


def split_inputs(data, split, exposure="stack"):
    """Fused inputs, dust and true z of one split, with the Pan-STARRS counts
    ``exposure`` says (the model's ``panstarrs_exposure``)."""
    from astro_mantis.fusion.exposure import to_reference_exposure
    from astro_mantis.simulate.dataset import load_shard, shard_paths

    xs, ds, zs = [], [], []
    for path in shard_paths(data, split):
        s = load_shard(path)
        ps1 = s.get("panstarrs")
        if exposure == "reference" and ps1 is not None:
            ps1, _ = to_reference_exposure(ps1, s.get("panstarrs_exptime"))
        f = fuse_arrays_batched(s.get("galex"), ps1, s.get("unwise"),
                                ebv=np.column_stack([s["ebv_csfd"], s["ebv_planck"]]))
        xs.append(f.x)
        ds.append(f.dust)
        zs.append(np.asarray(s["z"], float))
    return np.concatenate(xs), np.concatenate(ds), np.concatenate(zs)


def split_native(data, split):
    """Native per-survey arrays (with the stacks' ``panstarrs_exptime``) and E(B-V) of
    one split: what predict fuses itself."""
    from astro_mantis.simulate.dataset import load_shard, shard_paths

    parts = {"galex": [], "panstarrs": [], "unwise": [], "panstarrs_exptime": []}
    ebv = []
    for path in shard_paths(data, split):
        s = load_shard(path)
        for k in parts:
            parts[k].append(s.get(k))
        ebv.append(np.column_stack([s["ebv_csfd"], s["ebv_planck"]]))
    native = {k: (None if any(a is None for a in v) else np.concatenate(v))
              for k, v in parts.items()}
    if native["panstarrs_exptime"] is None:
        del native["panstarrs_exptime"]
    return native, np.concatenate(ebv).astype(np.float32)


def accuracy(args, device, precisions):
    from astro_mantis.metrics import photoz_metrics

    mini = load_model("mantis-mini", device=device)
    exposure = model_panstarrs_exposure(mini)
    if args.data:
        x, d, z = split_inputs(args.data, "test", exposure)
        cal = args.validation_data or args.data
        xc, _, _ = split_inputs(cal, "validation", exposure)
        label = f"test split of {args.data} ({len(z)} SIMULATED galaxies; int8 calibrated " \
                f"on the validation split of {cal})"
    else:
        x, d, z = sample_sky_inputs(exposure)
        xc, x, d, z = x[::2], x[1::2], d[1::2], z[1::2]
        label = (f"bundled sample sky, odd rows ({len(z)} SIMULATED galaxies; int8 "
                 "calibrated on the even rows)")
    print(f"\nAccuracy of mantis-mini per precision on the {label}:")
    keys = ("nmad", "outlier_0.15", "crps", "pit_ks", "coverage_68")
    print("  precision  " + "  ".join(f"{k:>17s}" for k in keys) + "   TV to float32")
    ref = None
    for p in precisions:
        if p == "int8":
            if device.type != "cpu":
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                net = quantize_int8(mini, xc)
            pdf = predict(x, model=net, dust=d)
        else:
            pdf = predict(x, model=mini, dust=d, precision=p, device=device)
        rows = [(p, pdf)]
        if args.data and p == "bfloat16" and device.type == "cpu":
            # from native arrays: the one-pass fusion (in C where built) and the network
            native, ebv = split_native(args.data, "test")
            rows.append(("native", predict(native, model=mini, dust=ebv, precision=p,
                                           compile=False)))
        if args.compile and p == "bfloat16" and device.type == "cpu":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rows.append(("compiled", predict(x, model=mini, dust=d, precision=p,
                                                 compile=True)))
                if args.data:  # the whole fast path: compiled fusion from native arrays
                    native, ebv = split_native(args.data, "test")
                    rows.append(("fast path", predict(native, model=mini, dust=ebv,
                                                      precision=p, compile=True)))
        for name, pdf in rows:
            m = photoz_metrics(None, z, pdf=pdf, n_bootstrap=200)
            ref = pdf if p == "float32" else ref
            tv = pdf_total_variation(ref, pdf)
            print(f"  {name:9s}  " + "  ".join(f"{m[k]:8.4f} ± {m.errors[k]:6.4f}"
                                              for k in keys) + f"   {tv:.4f}", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, mps")
    parser.add_argument("--quick", action="store_true",
                        help="fewer batch sizes and repeats (a smoke run)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--skip-v1", action="store_true",
                        help="leave out the mantis-shrimp-v1 architecture")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--data", default=None,
                        help="mock data directory whose test split scores the precisions")
    parser.add_argument("--validation-data", default=None,
                        help="directory whose validation split calibrates int8 (default "
                             "--data; e.g. the recipe's WORKDIR/data/validation)")
    parser.add_argument("--compile", action="store_true",
                        help="also time mantis-mini under torch.compile")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    print(f"machine: {machine_summary()}; {os.cpu_count()} logical CPUs; load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print(f"device: {device}{' (' + gpu + ')' if gpu else ''}; native precisions "
          f"{native_precisions(device)}; python {sys.version.split()[0]}")
    precisions = ["float32", "bfloat16"]
    if device.type != "cpu":
        precisions.append("float16")
    else:
        precisions.append("int8")
    quick = args.quick
    if device.type == "cpu":
        mini_batches = [64] if quick else [16, 64, 256]
        v1_batches, v1_n = [8] if quick else [16], 1
        n_batches, repeats = (4, 3) if quick else (8, 5)
    else:
        mini_batches = [256, 1024] if quick else [256, 1024, 4096]
        v1_batches, v1_n = ([64] if quick else [64, 256]), 2
        n_batches, repeats = (4, 3) if quick else (8, 5)

    size, peaks, parts = measured_peak(device, precisions, quick)
    cb, cc, hw = PEAK_CONV["cuda" if device.type == "cuda" else "cpu"]
    print(f"\nmeasured peak (the larger of a {size}^3 matrix product and a 3x3 convolution, "
          f"batch {cb}, {cc} -> {cc} channels, {hw}x{hw}, channels-last; each best of a few): "
          + ", ".join(f"{p} {peaks[p] / 1e9:.0f} G multiply-adds/s (matrix product "
                      f"{mm / 1e9:.0f} G, convolution {cv / 1e9:.0f} G)"
                      for p, (mm, cv) in parts.items())
          + ("; int8 taken as 2x bfloat16 (VNNI's nominal rate; not measured)"
             if "int8" in peaks else ""))

    torch.manual_seed(0)
    mini = prepare(load_model("mantis-mini"), device)
    macs_mini = macs_per_galaxy(mini, device)
    print("\nnetworks (pre-fused input; multiply-adds per galaxy from FlopCounterMode):")
    print(f"  mantis-mini: {macs_mini / 1e6:.1f} M multiply-adds per galaxy")
    int8 = None
    if device.type == "cpu":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            int8 = quantize_int8(mini, fused_input(64, seed=9)[0])
    rows = network_rates("mantis-mini", mini, precisions, mini_batches, n_batches, device,
                         peaks, macs_mini, repeats, int8_model=int8)
    compiled_net = {}
    if args.compile:
        for p in precisions[:2]:
            x, d = fused_input(64 * n_batches)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t0 = time.perf_counter()
                predict_logits(mini, x[:64], d[:64], batch_size=64, device=device,
                               precision=p, compile=True)
                first = time.perf_counter() - t0
                t = best_time(lambda: predict_logits(mini, x, d, batch_size=64, device=device,
                                                     precision=p, compile=True),
                              device, repeats)
            compiled_net[p + " compiled"] = len(x) / t
            print(f"  mantis-mini compiled {p:9s} batch    64: {len(x) / t:10.1f} galaxies/s "
                  f"(first call, compiling: {first:.0f} s)", flush=True)
    alone = network_alone(mini, device, repeats, args.compile) if device.type == "cpu" else {}
    v1_rows = []
    if not args.skip_v1:
        big = v1_random(device)
        macs_big = macs_per_galaxy(big, device)
        print(f"  mantis-shrimp-v1: {macs_big / 1e9:.2f} G multiply-adds per galaxy")
        v1_rows = network_rates("mantis-shrimp-v1", big, [p for p in precisions
                                                          if p != "int8"],
                                v1_batches, v1_n, device, peaks, macs_big,
                                1 if device.type == "cpu" else 3)
        del big
    if v1_rows:
        print("\n  mantis-mini / mantis-shrimp-v1, same precision (best batch of each, "
              "both through predict_logits; in brackets mantis-mini alone, eager):")
        for p in precisions:
            a = [r[3] for r in rows if r[1] == p]
            b = [r[3] for r in v1_rows if r[1] == p]
            if a and b:
                extra = (f" ({alone[(p, 'eager')] / max(b):.0f}x)" if (p, "eager") in alone
                         else "")
                print(f"    {p:9s} {max(a) / max(b):8.0f}x{extra}")

    print("\nfusion (native pixels; GALEX 2x32x32, PS1 5x170x170, unWISE 2x32x32):")
    fusion, e2e = fusion_rates(device, 512 if device.type == "cpu" else 2048,
                               repeats, precisions, mini, compile_too=args.compile)
    exact = [v for k, v in fusion.items() if "same bits" in k or "torch on" in k]
    for p in precisions:
        net = [r[3] for r in rows if r[1] == p]
        if not net or p not in e2e:
            continue
        # the fusion a precision gets: the bit-exact one for float32, any for the others
        fus = max(exact) if p == "float32" else max(fusion.values())
        print(f"  {p:9s}: its fastest fusion / best network rate = {fus / max(net):.2f}; "
              f"end to end {e2e[p]:.0f}/s = {e2e[p] / max(net):.2f} of the network alone")
        if (p, "eager") in alone:
            print(f"  {p:9s}: its fastest fusion / network alone = "
                  f"{fus / alone[(p, 'eager')]:.2f}")
        if p + " compiled" in compiled_net:
            c = compiled_net[p + " compiled"]
            # end to end compiled is timed for the precisions below float32 only
            end = (f"; end to end {e2e[p + ' compiled']:.0f}/s" if p + " compiled" in e2e
                   else "")
            print(f"  {p:9s} compiled: fastest fusion / compiled network = {fus / c:.2f}{end}")
    if not args.skip_accuracy:
        accuracy(args, device, precisions)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
