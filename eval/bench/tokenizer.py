"""`visuomotor bench tokenizer --checkpoint RUN --store STORE`: how well a CARP checkpoint's multi-scale
action tokenizer reconstructs the action chunks of a store, per action dimension.

Every action window of the store (horizon H, the training sampler's padding) is encoded, quantised and
decoded. Reported per dimension: RMSE and max |error| in normalised units (the tokenizer's [-1, 1] space)
and RMSE in the store's raw action units; plus the RMSE when decoding only the first k scales, which shows
the coarse-to-fine split of the information.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visuomotor.errors import InvalidInputError


def run_benchmark(
    json_path: str | None,
    quick: bool = False,
    store_path: str | None = None,
    checkpoint: str | None = None,
) -> dict[str, Any]:
    from visuomotor.datasets import EpisodeStore, SequenceSampler
    from visuomotor.policies import load_policy
    from visuomotor.policies.carp import CarpPolicy

    if not checkpoint or not store_path:
        raise InvalidInputError("bench tokenizer needs --checkpoint (a CARP run or checkpoint) and --store")
    policy = load_policy(checkpoint)
    if not isinstance(policy, CarpPolicy):
        raise InvalidInputError(
            f"{checkpoint}: a '{policy.name}' checkpoint; the tokenizer benchmark needs CARP"
        )
    c = policy.config
    store = EpisodeStore.open(store_path)
    if list(store.shape("action")) != [c.action_dim]:
        raise InvalidInputError(
            f"{store_path}: actions of shape {list(store.shape('action'))}, the checkpoint's are [{c.action_dim}]"
        )
    sampler = SequenceSampler(store, c.window_spec(obs_keys=()))  # the training windows' actions
    n = min(len(sampler), 512 if quick else len(sampler))
    tok = policy.tokenizer
    sq = torch.zeros(c.action_dim, dtype=torch.float64)
    sq_raw = torch.zeros(c.action_dim, dtype=torch.float64)
    worst = torch.zeros(c.action_dim, dtype=torch.float64)
    sq_scales = torch.zeros(len(c.scales), c.action_dim, dtype=torch.float64)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, n, 1024):
            raw = torch.from_numpy(sampler.sample(np.arange(start, min(n, start + 1024)))["action"]).float()
            x = policy.normalizer.normalize_key("action", raw)
            _, indices, _, _ = tok.quantize(tok.encode(x))
            recon = tok.decode_indices(indices)
            err = (recon - x).double()
            sq += err.pow(2).sum((0, 1))
            worst = torch.maximum(worst, err.abs().amax((0, 1)))
            sq_raw += (policy.normalizer.unnormalize("action", recon) - raw).double().pow(2).sum((0, 1))
            for k in range(len(c.scales)):
                partial = tok.decode_latent(tok.indices_to_latent(indices[: k + 1]))
                sq_scales[k] += (partial - x).double().pow(2).sum((0, 1))
    count = n * c.horizon
    out = {
        "benchmark": "tokenizer",
        "date": time.strftime("%Y-%m-%d"),
        "checkpoint": str(checkpoint),
        "store": str(Path(store_path)),
        "windows": n,
        "seconds": time.perf_counter() - t0,
        "per_dim": [
            {
                "dim": d,
                "rmse_normalised": float((sq[d] / count).sqrt()),
                "max_abs_normalised": float(worst[d]),
                "rmse_raw": float((sq_raw[d] / count).sqrt()),
            }
            for d in range(c.action_dim)
        ],
        "rmse_normalised_by_scales_used": {
            str(k + 1): [float(v) for v in (sq_scales[k] / count).sqrt()] for k in range(len(c.scales))
        },
    }
    if json_path:
        Path(json_path).write_text(json.dumps(out, indent=2))
    return out
