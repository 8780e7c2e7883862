"""Stage 1 of CARP alone, for choosing the tokenizer's size: train a MultiScaleActionTokenizer on every
action window of a store and print its reconstruction RMSE per action dimension (normalised units).

    python experiments/carp_tokenizer_sweep.py --store data/mt10.zarr --lr 1e-3 --steps 1500 --widths 16,32

One torch thread, fixed seeds; AdamW betas (0.5, 0.9), weight decay 0.005, 30 warmup steps then cosine,
gradient clip 10 (CARP's stage-1 settings), no EMA. The figures in BENCHMARKS.md and in the CARP `cpu`
preset's comment come from this script.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from visuomotor.datasets import EpisodeStore, SequenceSampler, WindowSpec
from visuomotor.datasets.normalize import Normalizer
from visuomotor.datasets.stats import load_stats
from visuomotor.policies.carp.tokenizer import MultiScaleActionTokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--codebook", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--widths", default="16,32", help="VAE channels per level, comma-separated")
    parser.add_argument("--horizon", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(1)

    store = EpisodeStore.open(args.store)
    spec = WindowSpec(n_obs_steps=2, horizon=args.horizon, obs_keys=(), pad_after=7)
    sampler = SequenceSampler(store, spec)
    actions = torch.from_numpy(sampler.sample(np.arange(len(sampler)))["action"]).float()
    norm = Normalizer.from_stats(load_stats(store, ["action"]), {"action": "min_max"})
    x = norm.normalize_key("action", actions)  # (N, H, A)
    widths = tuple(int(w) for w in args.widths.split(","))

    torch.manual_seed(0)
    tok = MultiScaleActionTokenizer(x.shape[-1], args.horizon, codebook_size=args.codebook, widths=widths)
    opt = torch.optim.AdamW(tok.parameters(), lr=args.lr, betas=(0.5, 0.9), weight_decay=0.005)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1.0, (i + 1) / 30) * 0.5 * (1 + math.cos(math.pi * i / args.steps))
    )
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        batch = x[torch.randint(0, len(x), (args.batch_size,), generator=g)]
        recon, vq_loss, _ = tok(batch)
        loss = F.mse_loss(recon, batch) + vq_loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tok.parameters(), 10.0)
        opt.step()
        sched.step()
    tok.eval()
    with torch.no_grad():
        recon, _, _ = tok(x)
    rmse = (recon - x).pow(2).mean((0, 1)).sqrt()
    print(
        f"windows={len(x)} lr={args.lr} steps={args.steps} codebook={args.codebook} widths={widths} "
        f"params={sum(p.numel() for p in tok.parameters())} rmse_per_dim={[round(v, 4) for v in rmse.tolist()]} "
        f"mean_rmse={rmse.mean():.4f} train_s={time.perf_counter() - t0:.0f}"
    )


if __name__ == "__main__":
    main()
