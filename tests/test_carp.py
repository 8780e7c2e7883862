"""CARP: the multi-scale tokenizer, the coarse-to-fine transformer, and its two training stages."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from fixtures import TINY_CARP, make_store, torchrun_cli
from safetensors.torch import load_file

import visuomotor.train as train_module
from visuomotor.cli import main
from visuomotor.policies import load_policy, make_config
from visuomotor.policies.carp import CarpConfig, CarpPolicy
from visuomotor.policies.carp.model import CoarseToFineTransformer, block_causal_mask
from visuomotor.policies.carp.tokenizer import MultiScaleActionTokenizer

A, H = 3, 16


def tokenizer(**kw) -> MultiScaleActionTokenizer:
    torch.manual_seed(0)
    return MultiScaleActionTokenizer(A, H, codebook_size=32, **kw).double()


def chunks(batch: int = 5, seed: int = 1) -> torch.Tensor:
    """Smooth random action chunks in [-1, 1], (B, H, A)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, H, dtype=torch.float64).view(1, H, 1)
    freq = torch.rand(batch, 1, A, generator=g, dtype=torch.float64) * 3
    phase = torch.rand(batch, 1, A, generator=g, dtype=torch.float64) * 6
    return torch.sin(freq * t * 6.28 + phase) * 0.9


def test_quantiser_residuals_sum_back_to_the_latent():
    tok = tokenizer()
    f = tok.encode(chunks())
    f_hat, indices, residual, vq_loss = tok.quantize(f)
    assert [i.shape for i in indices] == [(5, A, p) for p in (1, 2, 3, 4)]
    # The scales' contributions, rebuilt from the indices alone, plus what is left, give the latent back.
    rebuilt = torch.stack([tok.scale_contribution(k, idx) for k, idx in enumerate(indices)]).sum(0)
    torch.testing.assert_close(rebuilt + residual, f)
    torch.testing.assert_close(f_hat, rebuilt)  # straight-through: the forward values are the quantised ones
    assert vq_loss > 0


def test_straight_through_gradients_reach_the_encoder_and_the_codebook():
    tok = tokenizer()
    recon, vq_loss, _ = tok(chunks())
    (torch.nn.functional.mse_loss(recon, chunks()) + vq_loss).backward()
    assert tok.encoder.net[0].weight.grad.abs().sum() > 0  # through the non-differentiable lookup
    assert tok.codebook.grad.abs().sum() > 0
    assert all(phi.weight.grad.abs().sum() > 0 for phi in tok.phis)


def test_tokens_round_trip_through_encode_and_decode():
    tok = tokenizer().eval()
    actions = chunks()
    recon, _, indices = tok(actions)
    seq = tok.to_sequence(indices)
    assert seq.shape == (5, tok.seq_len) and tok.seq_len == 10 * A
    # Position-major, dimension-minor: scale k starts after the coarser scales; then pos * A + dim.
    assert seq[0, A + 2] == indices[1][0, 2, 0] and seq[0, A + A + 1] == indices[1][0, 1, 1]
    back = tok.from_sequence(seq)
    assert all(torch.equal(a, b) for a, b in zip(back, indices, strict=True))
    torch.testing.assert_close(tok.decode_indices(back), recon)


def test_action_dimensions_are_tokenised_independently():
    tok = tokenizer().eval()
    actions = chunks()
    changed = actions.clone()
    changed[..., 0] = -changed[..., 0]
    a, b = tok(actions)[2], tok(changed)[2]
    for idx_a, idx_b in zip(a, b, strict=True):
        assert torch.equal(idx_a[:, 1:], idx_b[:, 1:])  # the other dimensions' tokens are untouched
    assert any(not torch.equal(x[:, 0], y[:, 0]) for x, y in zip(a, b, strict=True))


def test_tokenizer_learns_to_reconstruct():
    torch.manual_seed(0)
    tok = MultiScaleActionTokenizer(A, H, codebook_size=64)
    data = chunks(256, seed=3).float()
    opt = torch.optim.AdamW(tok.parameters(), lr=3e-3, betas=(0.5, 0.9))
    first = None
    for _ in range(300):
        batch = data[torch.randint(0, len(data), (64,))]
        recon, vq, _ = tok(batch)
        loss = torch.nn.functional.mse_loss(recon, batch) + vq
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    tok.eval()
    with torch.no_grad():
        mse = torch.nn.functional.mse_loss(tok(data)[0], data).item()
    assert mse < 0.1 * data.var().item(), (first, mse)


def test_attention_mask_is_block_causal():
    mask = block_causal_mask([2, 4, 6])
    level = torch.tensor([0] * 2 + [1] * 4 + [2] * 6)
    for i in range(12):
        for j in range(12):
            assert (mask[i, j] == 0) == bool(level[j] <= level[i])
    assert torch.isinf(mask[0, 2]) and mask[5, 2] == 0  # a coarse token never sees a finer one


def test_coarse_logits_do_not_depend_on_finer_inputs():
    tok = tokenizer()
    net = CoarseToFineTransformer(7, tok, width=16, depth=2, heads=2).double().eval()
    cond = torch.randn(2, 7, dtype=torch.float64)
    inputs = torch.randn(2, tok.seq_len - A, tok.D, dtype=torch.float64)
    base = net(cond, inputs)
    changed = inputs.clone()
    changed[:, -4 * A :] += 1.0  # only the finest scale's inputs
    out = net(cond, changed)
    coarse = tok.seq_len - 4 * A
    torch.testing.assert_close(out[:, :coarse], base[:, :coarse])
    assert not torch.allclose(out[:, coarse:], base[:, coarse:])


@pytest.mark.parametrize("top_k", [1, 5])
def test_kv_cache_inference_gives_the_tokens_of_full_sequence_inference(top_k):
    tok = tokenizer()
    net = CoarseToFineTransformer(7, tok, width=32, depth=3, heads=4).double().eval()
    with torch.no_grad():  # a sharper head than the init's, so the argmax is not decided by rounding
        net.head.weight.normal_(0, 1.0)
        for block in net.blocks:
            block.ada[1].weight.normal_(0, 0.2)
    cond = torch.randn(6, 7, dtype=torch.float64)
    cached = net.generate(cond, tok, top_k, torch.Generator().manual_seed(0), use_cache=True)
    full = net.generate(cond, tok, top_k, torch.Generator().manual_seed(0), use_cache=False)
    assert [c.shape for c in cached] == [(6, A, p) for p in (1, 2, 3, 4)]
    assert all(torch.equal(c, f) for c, f in zip(cached, full, strict=True))
    assert all(block.attn.cache is None for block in net.blocks)  # the cache does not outlive a call
    # And the cached pass gives the teacher-forced logits' argmax when fed its own tokens.
    if top_k == 1:
        seq = tok.to_sequence(cached)
        inputs, f_hat = [], None
        for k in range(1, 4):
            h = tok.scale_contribution(k - 1, cached[k - 1])
            f_hat = h if f_hat is None else f_hat + h
            inputs.append(tok.scale_inputs(f_hat, k))
        assert torch.equal(net(cond, torch.cat(inputs, 1)).argmax(-1), seq)


def test_config_validation():
    with pytest.raises(ValueError, match="latent length"):
        CarpConfig(horizon=16, scales=(1, 2, 3))
    with pytest.raises(ValueError, match="strictly increasing"):
        CarpConfig(horizon=16, scales=(2, 1, 4))
    with pytest.raises(ValueError, match="divisible by heads"):
        CarpConfig(width=30, heads=8)
    cfg = make_config("carp", "cpu", input_shapes={"observation.state": [3]}, action_dim=2)
    with pytest.raises(ValueError, match=f"steps must exceed {cfg.tokenizer_steps}"):
        CarpPolicy(cfg).training_stages(cfg.tokenizer_steps)
    assert [s.name for s in CarpPolicy(cfg).training_stages(cfg.tokenizer_steps + 1)] == [
        "tokenizer",
        "transformer",
    ]


# ---------------------------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "s.zarr"
    make_store(path, episodes=3, lengths=[20, 16, 18], image_hw=16, tasks=["reach", "push", "reach"])
    return path


def carp_args(store, out, steps: int, *extra: str) -> list[str]:
    return [
        "train", "--policy", "carp", "--data", str(store), "--out", str(out), "--steps", str(steps),
        "--cameras", "none", *TINY_CARP, "-o", "tokenizer_steps=8",
        "-t", "save_every=4", "-t", "log_every=2", "-t", "warmup_steps=2", "--no-progress", *extra,
    ]  # fmt: skip


def test_train_runs_both_stages_and_the_checkpoint_holds_both(tmp_path, store_path):
    out = tmp_path / "run"
    assert main(carp_args(store_path, out, 16, "-t", "keep_checkpoints=5")) == 0
    history = json.loads((out / "metrics.json").read_text())
    stage1 = [h for h in history if h["step"] <= 8]
    stage2 = [h for h in history if h["step"] > 8]
    assert all("recon_mse" in h and h["stage"] == 0 for h in stage1)
    assert all("token_acc" in h and h["stage"] == 1 for h in stage2)
    weights = load_file(str(out / "checkpoints" / "last" / "pretrained_model" / "model.safetensors"))
    assert any(k.startswith("tokenizer.") for k in weights) and any(
        k.startswith("transformer.") for k in weights
    )
    # The saved (EMA) policy decodes with exactly the tokenizer stage 2 trained against: the live one.
    live = load_file(str(out / "checkpoints" / "last" / "training_state" / "model.safetensors"))
    for key in (k for k in weights if k.startswith("tokenizer.")):
        assert torch.equal(weights[key], live[key]), key
    # ... and stage 2 left the tokenizer alone: it is what stage 1 ended with.
    stage1_end = load_file(str(out / "checkpoints" / "step-0000008" / "training_state" / "model.safetensors"))
    assert all(torch.equal(live[k], stage1_end[k]) for k in live if k.startswith("tokenizer."))
    policy = load_policy(out)
    obs = {"observation.state": torch.rand(1, 4), "task": ["push"]}
    assert policy.select_action(obs).shape == (1, 2)

    # The tokenizer benchmark reads the same checkpoint and the store's action chunks.
    report = tmp_path / "tok.json"
    args = ["bench", "tokenizer", "--checkpoint", str(out), "--store", str(store_path), "--json", str(report)]
    assert main(args) == 0
    result = json.loads(report.read_text())
    assert [d["dim"] for d in result["per_dim"]] == [0, 1] and result["windows"] > 0
    all_scales = result["rmse_normalised_by_scales_used"][str(len(policy.config.scales))]
    assert all_scales == pytest.approx([d["rmse_normalised"] for d in result["per_dim"]])
    assert all(0 < d["rmse_normalised"] <= d["max_abs_normalised"] for d in result["per_dim"])


def test_latency_benchmark_measures_carp_beside_diffusion(tmp_path):
    report = tmp_path / "latency.json"
    assert main(["bench", "latency", "--quick", "--json", str(report)]) == 0
    policies = json.loads(report.read_text())["policies"]
    assert {"carp", "diffusion_ddpm100", "diffusion_ddim10"} <= set(policies)
    assert all(p["ms_per_chunk"] > 0 and p["params"] > 0 for p in policies.values())


@pytest.mark.parametrize("interrupt_at", [9, 14], ids=["at-stage-boundary", "inside-stage-2"])
def test_resume_across_stages_matches_an_uninterrupted_run(tmp_path, store_path, monkeypatch, interrupt_at):
    steps = 16
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    assert main(carp_args(store_path, full, steps)) == 0

    real = train_module.batch_indices

    def crash(n, batch_size, seed, step, rank):
        if step == interrupt_at:
            raise KeyboardInterrupt  # like a kill: checkpoints of steps 8 (boundary) or 12 remain
        return real(n, batch_size, seed, step, rank)

    monkeypatch.setattr(train_module, "batch_indices", crash)
    assert main(carp_args(store_path, resumed, steps)) == 130  # the CLI's exit code for an interrupt
    assert not (resumed / "summary.json").exists()
    monkeypatch.setattr(train_module, "batch_indices", real)
    assert main(["train", "--policy", "carp", "--out", str(resumed), "--resume", "--no-progress"]) == 0
    for part in ("training_state/model.safetensors", "pretrained_model/model.safetensors"):
        a = load_file(str(full / "checkpoints" / f"step-{steps:07d}" / part))
        b = load_file(str(resumed / "checkpoints" / f"step-{steps:07d}" / part))
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-7, msg=f"{part}:{key}")


def test_ddp_trains_the_weights_one_process_trains_on_both_ranks_windows(tmp_path, store_path, monkeypatch):
    """DDP splits the work without changing the optimisation: two ranks averaging their gradients end, in
    both stages, with the weights of one process whose every batch is the two ranks' batches together
    (same initial weights: rank 0 draws them and DDP broadcasts them; without drop-path CARP's losses
    draw no noise). One process on rank 0's windows alone ends elsewhere, so the comparison can fail."""
    no_noise = ("-o", "drop_path=0")
    ddp = tmp_path / "ddp"
    proc = torchrun_cli(carp_args(store_path, ddp, 12, *no_noise))
    assert proc.returncode == 0, proc.stderr[-3000:]
    alone = tmp_path / "alone"
    assert main(carp_args(store_path, alone, 12, *no_noise)) == 0

    real = train_module.batch_indices

    def both_ranks(n_windows: int, size: int, seed: int, step: int, rank: int):
        assert rank == 0
        return np.concatenate([real(n_windows, size // 2, seed, step, r) for r in (0, 1)])

    monkeypatch.setattr(train_module, "batch_indices", both_ranks)
    union = tmp_path / "union"
    doubled = ("-t", "batch_size=128", "-o", "tokenizer_batch_size=32")  # carp_args: 64 and 16 per rank
    assert main(carp_args(store_path, union, 12, *no_noise, *doubled)) == 0

    def weights(run):
        return load_file(str(run / "checkpoints" / "step-0000012" / "training_state" / "model.safetensors"))

    reference, together, rank0 = weights(ddp), weights(union), weights(alone)
    for key in reference:
        torch.testing.assert_close(together[key], reference[key], rtol=1e-5, atol=1e-6, msg=key)
    assert any(not torch.allclose(rank0[k], reference[k], rtol=1e-5, atol=1e-6) for k in reference)


def test_reusing_a_tokenizer_skips_stage_one(tmp_path, store_path, capsys):
    first = tmp_path / "first"
    assert main(carp_args(store_path, first, 12)) == 0
    second = tmp_path / "second"
    assert main(carp_args(store_path, second, 6, "-o", f"tokenizer_from={first}")) == 0
    history = json.loads((second / "metrics.json").read_text())
    assert all("token_acc" in h for h in history if "loss" in h)  # transformer steps only
    a, b = load_policy(first), load_policy(second)
    for key, value in a.tokenizer.state_dict().items():
        assert torch.equal(value, b.tokenizer.state_dict()[key]), key
    assert torch.equal(a.normalizer.scale("action"), b.normalizer.scale("action"))

    bad = tmp_path / "bad"
    assert main(carp_args(store_path, bad, 6, "-o", f"tokenizer_from={first}", "-o", "codebook_size=32")) == 2
    assert "codebook_size is 16, this run's is 32" in capsys.readouterr().err
    missing = tmp_path / "nowhere"
    assert main(carp_args(store_path, tmp_path / "lost", 6, "-o", f"tokenizer_from={missing}")) == 2
    assert f"tokenizer_from='{missing}': {missing}: not found" in capsys.readouterr().err


def test_both_stages_under_ddp_and_an_exact_resume(tmp_path, store_path):
    """Each stage leaves the other's parameters out of the graph; DDP must accept that. Two processes:
    a run killed in stage 2 and resumed (each rank gets its own RNG stream back) ends with the weights of
    the uninterrupted run; the replicas agree (every DDP run checks it at its end)."""
    from test_train import KILLER

    out, resumed = tmp_path / "ddp", tmp_path / "resumed"
    proc = torchrun_cli(carp_args(store_path, out, 12))
    assert proc.returncode == 0, proc.stderr[-3000:]
    history = json.loads((out / "metrics.json").read_text())
    assert {h["stage"] for h in history if "stage" in h} == {0, 1}
    assert load_policy(out).config.action_dim == 2
    assert json.loads((out / "run.json").read_text())["world_size"] == 2

    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    killed = torchrun_cli(
        carp_args(store_path, resumed, 12), script=script, env={"KILL_AT_OPTIMIZER_STEP": "10"}
    )
    assert killed.returncode != 0
    assert os.readlink(resumed / "checkpoints" / "last") == "step-0000008"
    rng = load_file(str(resumed / "checkpoints" / "step-0000008" / "training_state" / "rng.safetensors"))
    assert sorted(rng) == ["torch.rank0", "torch.rank1"] and not torch.equal(
        rng["torch.rank0"], rng["torch.rank1"]
    )
    proc = torchrun_cli(["train", "--policy", "carp", "--out", str(resumed), "--resume", "--no-progress"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    for part in ("training_state/model.safetensors", "pretrained_model/model.safetensors"):
        a = load_file(str(out / "checkpoints" / "step-0000012" / part))
        b = load_file(str(resumed / "checkpoints" / "step-0000012" / part))
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-7, msg=f"{part}:{key}")
