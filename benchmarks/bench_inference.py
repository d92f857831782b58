"""Inference throughput: ``mantis-mini`` against the published ``mantis-shrimp-v1`` architecture.

Run from the repository root::

    python benchmarks/bench_inference.py                  # CPU, batch 64
    python benchmarks/bench_inference.py --device cuda    # on a GPU, if there is one

Both networks get random weights (nothing is downloaded; the speed of a network does
not depend on its weight values) and the same precomputed early-fused input
(N, 9, 120, 120) plus dust (N, 2): fusion is not timed. Each is run through
`astro_mantis.models.predict_logits`, the loop behind `astro_mantis.models.predict`
(``torch.inference_mode``, batching, channels-last memory layout), and its rate is
printed in galaxies per second together with the ratio of the two.

``mantis-mini`` is timed on ``--mini-batches`` batches, in ``--rounds`` rounds before
and after the large network, and the best round is kept (the machine may be shared).
``mantis-shrimp-v1`` (200 million parameters, about 4 galaxies/s on two CPU cores) is
timed on only ``--v1-batches`` batches after a small warm-up batch; its weights are
allocated uninitialised and filled with normal values, because timm's own random
initialisation of 200 million weights takes longer than the timing itself.
"""
import argparse
import os
import platform
import time

import numpy as np
import torch

from astro_mantis.models import build_model, predict_logits, select_device


def fused_input(n, seed=0):
    """Values shaped like early-fusion output: mostly faint sky, in [0, 1]."""
    rng = np.random.default_rng(seed)
    x = rng.gamma(1.0, 0.05, size=(n, 9, 120, 120)).astype(np.float32)
    np.clip(x, 0, 1, out=x)
    dust = rng.uniform(0, 0.1, size=(n, 2)).astype(np.float32)
    return x, dust


def prepare(model, device):
    model = model.to(device).eval()
    if device.type in ("cpu", "cuda"):
        model = model.to(memory_format=torch.channels_last)
    return model


def rate(model, x, dust, batch_size, device):
    """Galaxies per second of one pass over ``x``."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    predict_logits(model, x, dust, batch_size=batch_size, device=device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return len(x) / (time.perf_counter() - t0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--mini-batches", type=int, default=10,
                        help="batches per timed round of mantis-mini (default 10)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="timed rounds of mantis-mini before and after v1 (default 3)")
    parser.add_argument("--v1-batches", type=int, default=2,
                        help="timed batches of mantis-shrimp-v1 (default 2)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, mps")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--skip-v1", action="store_true", help="time mantis-mini only")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    bs = args.batch_size
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    print(f"torch {torch.__version__} on {platform.machine()} / {platform.processor() or '?'}; "
          f"device {device}{' (' + gpu + ')' if gpu else ''}; {torch.get_num_threads()} CPU "
          f"threads of {os.cpu_count()} cores; batch {bs}; load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}")

    torch.manual_seed(0)
    mini = prepare(build_model("mantis-mini"), device)
    n_par = sum(p.numel() for p in mini.parameters())
    x, dust = fused_input(bs * args.mini_batches)
    rate(mini, x[:bs], dust[:bs], bs, device)                  # warm-up
    before = [rate(mini, x, dust, bs, device) for _ in range(args.rounds)]
    print(f"mantis-mini      {n_par / 1e6:7.2f} M params  rounds before: "
          + " ".join(f"{r:7.1f}" for r in before) + " galaxies/s", flush=True)

    if args.skip_v1:
        return
    big = build_model("mantis-shrimp-v1", device="meta").to_empty(device=device)
    gen = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for p in big.parameters():
            p.normal_(0.0, 0.02, generator=gen)
    big = prepare(big, device)
    n_big = sum(p.numel() for p in big.parameters())
    xb, db = fused_input(bs * args.v1_batches, seed=1)
    rate(big, xb[:8], db[:8], bs, device)                      # warm-up
    v1 = rate(big, xb, db, bs, device)
    print(f"mantis-shrimp-v1 {n_big / 1e6:7.2f} M params  {len(xb)} galaxies: "
          f"{v1:7.2f} galaxies/s", flush=True)
    del big

    after = [rate(mini, x, dust, bs, device) for _ in range(args.rounds)]
    print(f"mantis-mini      {n_par / 1e6:7.2f} M params  rounds after:  "
          + " ".join(f"{r:7.1f}" for r in after) + " galaxies/s")
    best = max(before + after)
    print(f"\nbest mantis-mini {best:.1f} galaxies/s, mantis-shrimp-v1 {v1:.2f} galaxies/s: "
          f"ratio {best / v1:.0f}x (median mini round: "
          f"{np.median(before + after) / v1:.0f}x)")


if __name__ == "__main__":
    main()
