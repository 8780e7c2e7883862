"""EXPO (policies/expo): edit bound, OTF selection, TD targets and masks, 50/50 batches, the temperature
with the reachable entropy target, the baselines, checkpoints that act as the learner does, exact resume
after SIGKILL, and the errors for bad input. Tiny networks and the pure-numpy point mass throughout."""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from visuomotor.errors import InvalidInputError
from visuomotor.policies import load_policy, make_config
from visuomotor.policies.expo.config import OnlineConfig
from visuomotor.policies.expo.policy import ExpoPolicy, edit_actions, otf_select
from visuomotor.policies.expo.replay import (
    ReplayBuffer,
    Transitions,
    episode_transitions,
    mixed_indices,
    resolve_reward_source,
)
from visuomotor.policies.expo.toyenv import PointMassEnv, collect_demos
from visuomotor.policies.expo.updates import Batch, Learner, entropy_target, td_target

ENV_KEY = "observation.environment_state"
TINY = {
    "state_keys": (ENV_KEY,),
    "hidden_dim": 16,
    "num_blocks": 1,
    "block_expansion": 1,
    "time_dim": 8,
    "diffusion_steps": 3,
    "num_samples": 3,
    "edit_hidden": (16,),
    "actor_hidden": (16,),
    "critic_hidden": (16,),
    "num_qs": 3,
    "num_min_qs": 2,
}


@pytest.fixture(autouse=True)
def _one_thread():
    # The machine is shared; one thread also keeps float results independent of thread scheduling.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_policy(**over) -> ExpoPolicy:
    torch.manual_seed(0)
    config = make_config("expo", "cpu", **{**TINY, "rl_heads": True, **over})
    config.input_shapes, config.action_dim = {ENV_KEY: [6]}, 2
    config.validate_inputs()
    return ExpoPolicy(config).eval()


def random_batch(B: int = 8, F: int = 6, A: int = 2, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(
        torch.randn(B, F, generator=g),
        torch.rand(B, A, generator=g) * 2 - 1,
        torch.zeros(B),
        torch.randn(B, F, generator=g),
        torch.ones(B),
    )


class LinearCritics(torch.nn.Module):
    """Q_i(s, a) = a . w_i: members disagree, so which subset is taken matters."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = w  # (E, A)

    def forward(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.w @ action.T  # (E, B)


# ---------------------------------------------------------------------------------------------- edit, OTF
def test_edits_stay_within_beta_of_the_base_action_and_inside_the_bounds():
    policy = tiny_policy(edit_scale=0.05)
    with torch.no_grad():  # push the Gaussian far out: tanh saturates, u -> +-1
        policy.edit.mean.bias.copy_(torch.tensor([50.0, -50.0]))
    cond, base = torch.randn(64, 6), torch.rand(64, 2) * 2 - 1
    edited, _ = edit_actions(policy.edit, cond, base, 0.05, clip=False)
    delta = edited - base
    assert delta.abs().max() <= 0.05 + 1e-6
    assert torch.allclose(
        delta, torch.tensor([0.05, -0.05]).expand_as(delta), atol=1e-4
    )  # the bound is reached
    clipped, _ = edit_actions(policy.edit, cond, torch.full((64, 2), 0.99), 0.05, clip=True)
    assert clipped.max() <= 1.0 and clipped[:, 0].eq(1.0).all()  # a + beta u past the bound is clamped
    wide, _ = edit_actions(policy.edit, cond, base, 0.5, clip=False)
    assert (wide - base).abs().max() > 0.45  # the bound scales with beta


def test_otf_picks_the_argmax_of_the_subset_minimum_over_all_2n_candidates():
    policy = tiny_policy(num_samples=4, num_qs=3, num_min_qs=2)
    with torch.no_grad():  # saturated edits: u = (+1, -1), so every edit is known exactly
        policy.edit.mean.bias.copy_(torch.tensor([50.0, -50.0]))
    critics = LinearCritics(torch.tensor([[1.0, 0.0], [1.0, 1.0], [-1.0, 0.0]]))
    cond, gen = torch.randn(32, 6), torch.Generator().manual_seed(3)
    sel = otf_select(cond, lambda c: policy.sample_base(c, gen), policy.edit, critics, policy.config, gen)
    assert sel.candidates.shape == (32, 8, 2)
    base = policy.sample_base(cond.repeat_interleave(4, 0), torch.Generator().manual_seed(3)).view(32, 4, 2)
    assert torch.equal(sel.candidates[:, :4], base)  # the N base samples, then their N edits
    edits = (base + 0.1 * torch.tensor([1.0, -1.0])).clamp(-1, 1)
    assert torch.allclose(sel.candidates[:, 4:], edits, atol=1e-4)
    q = critics(None, sel.candidates.reshape(-1, 2)).view(3, 32, 8)
    assert len(set(sel.subset.tolist())) == 2
    expected = q[sel.subset].min(0).values
    assert torch.allclose(sel.values, expected)
    assert not torch.allclose(expected, q.mean(0))  # a minimum over the subset, not the ensemble mean
    assert torch.equal(sel.action, sel.candidates[torch.arange(32), expected.argmax(1)])
    # The policy's own selection (its real critics) keeps the same contract.
    sel2 = policy.select(cond, torch.Generator().manual_seed(5))
    q2 = policy.critics(cond.repeat_interleave(8, 0), sel2.candidates.reshape(-1, 2)).view(3, 32, 8)
    assert torch.allclose(sel2.values, q2[sel2.subset].min(0).values)
    assert torch.equal(sel2.action, sel2.candidates[torch.arange(32), sel2.values.argmax(1)])


def test_otf_prefers_the_edits_when_every_critic_does():
    policy = tiny_policy(num_samples=4)
    with torch.no_grad():
        policy.edit.mean.bias.copy_(torch.tensor([50.0, 50.0]))
    critics = LinearCritics(torch.tensor([[1.0, 1.0], [2.0, 1.0], [1.0, 3.0]]))
    base = torch.full((16 * 4, 2), -0.5)  # edits lie strictly above every base sample
    sel = otf_select(torch.randn(16, 6), lambda c: base[: len(c)], policy.edit, critics, policy.config)
    assert (sel.values.argmax(1) >= 4).all()
    assert torch.allclose(sel.action, torch.full((16, 2), -0.4), atol=1e-4)


def test_the_selection_diagnostic_counts_edited_winners_and_the_critics_preference():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "experiments" / "expo_selection.py"
    spec = importlib.util.spec_from_file_location("expo_selection", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    obs = {ENV_KEY: torch.randn(16, 1, 6)}
    for sign, share in ((1.0, 1.0), (-1.0, 0.0)):
        policy = tiny_policy(num_samples=4, clip_edited=False)
        with torch.no_grad():  # every edit is +beta (or -beta) on both axes
            policy.edit.mean.bias.copy_(torch.tensor([50.0, 50.0]) * sign)
        policy.critics = LinearCritics(torch.tensor([[1.0, 1.0], [2.0, 1.0], [1.0, 3.0]]))
        stats = module.selection_stats(policy, obs, draws=2)
        assert stats["states"] == 16 and stats["candidates"] == 8
        assert stats["edited_winner_share"] == share  # every critic ranks the edits above (below) the base
        assert (stats["best_edited_minus_best_base_median"] > 0) == (sign > 0)
        assert stats["ensemble_std_median"] > 0  # the members disagree
    best_of_n = tiny_policy(num_samples=4, algorithm="best_of_n")
    assert "edited_winner_share" not in module.selection_stats(best_of_n, obs, draws=1)


# ---------------------------------------------------------------------------------------------- TD targets
def test_masks_are_zero_at_terminal_ends_and_one_at_time_limit_ends():
    obs = {"s": np.arange(4, dtype=np.float32)[:, None]}
    a, r = np.zeros((4, 1), np.float32), np.array([0, 0, 0, 1], np.float32)
    done = episode_transitions(obs, a, r, np.array([0, 0, 0, 1], bool), {"s": np.array([9.0], np.float32)})
    assert done.mask.tolist() == [1, 1, 1, 0]
    assert done.next_obs["s"][:, 0].tolist() == [1, 2, 3, 9]
    cut = episode_transitions(obs, a, r * 0, np.zeros(4, bool), {"s": np.array([9.0], np.float32)})
    assert cut.mask.tolist() == [1, 1, 1, 1]  # a time limit is bootstrapped through
    assert cut.next_obs["s"][-1, 0] == 9.0
    unknown = episode_transitions(obs, a, r * 0, np.zeros(4, bool), None)
    assert len(unknown) == 3  # no observation after a cut demonstration: its last step is dropped
    terminal = episode_transitions(obs, a, r, np.array([0, 0, 0, 1], bool), None)
    assert len(terminal) == 4 and terminal.mask[-1] == 0  # ... unless it terminated (s' never read)


def test_td_target_bootstraps_from_the_subset_minimum_only_where_the_mask_allows():
    r, mask = torch.tensor([0.0, 1.0, 0.0]), torch.tensor([1.0, 0.0, 1.0])
    assert torch.allclose(
        td_target(r, mask, 0.9, torch.tensor([2.0, 2.0, 5.0])), torch.tensor([1.8, 1.0, 4.5])
    )
    learner = Learner(tiny_policy(), OnlineConfig(batch_size=4))
    with torch.no_grad():  # target critics with constant values 3, 1, 2 whatever the input
        for p in learner.target_critics.parameters():
            p.zero_()
        learner.target_critics.head.bias.copy_(torch.tensor([3.0, 1.0, 2.0]).view(3, 1, 1))
    values = learner.next_value(torch.randn(4, 6))
    assert set(values.tolist()) <= {1.0, 2.0} and len(set(values.tolist())) == 1  # min over 2 of {3, 1, 2}
    batch = random_batch(B=4)
    batch.reward, batch.mask = torch.tensor([0.0, 1.0, 0.0, 1.0]), torch.tensor([1.0, 0.0, 1.0, 1.0])
    target_before = {k: v.clone() for k, v in learner.target_critics.state_dict().items()}
    torch.manual_seed(1)
    logs = learner.critic_step(batch)  # computes y, then soft-updates the target critics
    learner.target_critics.load_state_dict(target_before)
    torch.manual_seed(1)
    v = learner.next_value(batch.next_feat)  # the same subset draw as inside critic_step
    assert not torch.equal(learner.target_critics.head.bias, learner.policy.critics.head.bias)
    assert logs["target"] == pytest.approx((batch.reward + 0.99 * batch.mask * v).mean().item(), abs=1e-5)


# ---------------------------------------------------------------------------------------------- batches
def test_every_minibatch_is_half_offline_half_online():
    rng = np.random.default_rng(0)
    parts = mixed_indices(rng, n_offline=500, n_online=7, batch_size=128, minibatches=5, offline_ratio=0.5)
    assert len(parts) == 5
    for off, on in parts:
        assert len(off) == len(on) == 64
        assert off.max() < 500 and on.max() < 7
    assert len(np.unique(np.concatenate([p[1] for p in parts]))) == 7  # the online rows are all drawn
    offline = _marked(100, reward=7.0)
    online = ReplayBuffer({ENV_KEY: (6,)}, 2, 50)
    online.add(_marked(30, reward=3.0))
    from visuomotor.policies.expo.learner import _batch

    run = type("Run", (), {"offline": offline, "replay": online, "policy": tiny_policy()})()
    off, on = mixed_indices(rng, len(offline), len(online), 16, 1, 0.5)[0]
    batch = _batch(run, off, on)
    assert batch.reward.tolist() == [7.0] * 8 + [3.0] * 8


def _marked(n: int, reward: float) -> Transitions:
    obs = {ENV_KEY: np.random.default_rng(0).normal(size=(n, 6)).astype(np.float32)}
    return Transitions(
        obs, np.zeros((n, 2), np.float32), np.full(n, reward, np.float32), obs, np.ones(n, np.float32)
    )


# ---------------------------------------------------------------------------------------------- temperature
@pytest.mark.parametrize("target", ["reachable", "code"])
def test_temperature_stays_bounded_with_the_reachable_target_and_runs_away_with_the_code_target(target):
    policy = tiny_policy(edit_scale=0.05)
    ocfg = OnlineConfig(lr=1e-2, entropy_target=target)  # a large step makes 150 updates show the trend
    learner = Learner(policy, ocfg)
    A = 2
    assert entropy_target(policy.config, ocfg) == pytest.approx(
        -A / 2 + (A * math.log(0.05) if target == "reachable" else 0)
    )
    batch, log_alphas = random_batch(B=32), []
    for _ in range(150):
        learner.temperature_step(learner.edit_step(batch))
        log_alphas.append(learner.log_alpha.item())
    if target == "reachable":
        assert max(log_alphas) < 0.1  # alpha never grows past its start
    else:
        # The largest entropy of beta * u is |A| (log 2 + log beta) = -4.6 < -1: alpha rises at every step.
        assert log_alphas[-1] > 1.2 and all(b > a for a, b in itertools.pairwise(log_alphas))


# ---------------------------------------------------------------------------------------------- baselines
@pytest.mark.parametrize("algorithm", ["expo", "rlpd", "bc", "best_of_n"])
def test_each_algorithm_updates_what_it_owns_and_acts_as_its_checkpoint_does(tmp_path, algorithm):
    policy = tiny_policy(algorithm=algorithm, edit_scale=0.0 if algorithm == "best_of_n" else 0.1)
    assert (policy.critics is None) == (algorithm == "bc")
    assert (policy.edit is not None) == (algorithm == "expo")
    assert (policy.actor is not None) == (algorithm == "rlpd")
    learner = Learner(policy, OnlineConfig(utd=3))
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    calls = []
    original = learner.critic_step
    learner.critic_step = lambda b: calls.append(1) or original(b)  # type: ignore[method-assign]
    learner.update([random_batch(seed=s) for s in range(3)])
    assert len(calls) == (0 if algorithm == "bc" else 3)  # UTD critic updates, then one of the rest
    changed = {k.split(".")[0] for k, v in policy.state_dict().items() if not torch.equal(v, before[k])}
    expected = {
        "bc": {"denoiser"},
        "best_of_n": {"denoiser", "critics"},
        "expo": {"denoiser", "critics", "edit"},
    }
    assert changed == expected.get(algorithm, {"critics", "actor"})
    learner.export().save_pretrained(tmp_path / "c")
    loaded = load_policy(tmp_path / "c")
    obs = {ENV_KEY: torch.randn(5, 1, 6)}
    mine = learner.act(
        policy.features({ENV_KEY: obs[ENV_KEY][:, 0]}), False, torch.Generator().manual_seed(2)
    )
    theirs = loaded.predict_action_chunk(obs, generator=torch.Generator().manual_seed(2))[:, 0]
    assert torch.allclose(mine, theirs)  # the checkpoint acts with the EMA base and target critics
    if algorithm != "bc":
        assert not torch.equal(loaded.critics.head.bias, policy.critics.head.bias)  # target, not online


@pytest.mark.parametrize("algorithm", ["expo", "best_of_n"])
def test_during_the_critic_warmup_the_ema_base_policy_acts_and_is_exported_then_otf_takes_over(
    tmp_path, algorithm
):
    policy = tiny_policy(algorithm=algorithm, edit_scale=0.0 if algorithm == "best_of_n" else 0.1)
    learner = Learner(policy, OnlineConfig(utd=1, critic_warmup=2))
    feat = torch.randn(4, 6)
    critic_before = {k: v.clone() for k, v in policy.critics.state_dict().items()}

    # The learner's two ways of acting, each from one generator seeded alike (as `act` draws them).
    def act() -> torch.Tensor:
        return learner.act(feat, False, torch.Generator().manual_seed(3))

    def base() -> torch.Tensor:
        return policy.sample_base(feat, torch.Generator().manual_seed(3), denoiser=learner.ema_denoiser)

    def otf() -> torch.Tensor:
        g = torch.Generator().manual_seed(3)
        sample = lambda c: policy.sample_base(c, g, denoiser=learner.ema_denoiser)  # noqa: E731
        return otf_select(feat, sample, policy.edit, learner.target_critics, policy.config, g).action

    assert not torch.equal(base(), otf())  # the two ways of acting differ here
    assert torch.equal(act(), base())
    learner.update([random_batch(seed=0)])  # warm-up step 1 of 2: the critics train all the same
    assert any(not torch.equal(v, critic_before[k]) for k, v in policy.critics.state_dict().items())
    assert torch.equal(act(), base())
    exported = learner.export()
    assert exported.critics is None and exported.edit is None and not exported.config.rl_heads
    exported.save_pretrained(tmp_path / "warm")
    obs = {ENV_KEY: torch.randn(3, 1, 6)}
    loaded = load_policy(tmp_path / "warm")
    cond = loaded.condition(obs)
    assert torch.equal(  # the warm-up checkpoint acts with the EMA base samples alone
        loaded.predict_action_chunk(obs, generator=torch.Generator().manual_seed(0))[:, 0],
        learner.act(cond, False, torch.Generator().manual_seed(0)),
    )
    learner.update([random_batch(seed=1)])  # the warm-up is over: OTF selection acts and is exported
    assert learner.export().critics is not None
    assert torch.equal(act(), otf())


def test_a_bc_checkpoint_acts_with_base_samples():
    policy = tiny_policy(rl_heads=False)
    assert policy.critics is None and policy.edit is None
    obs = {ENV_KEY: torch.randn(3, 1, 6)}
    a = policy.predict_action_chunk(obs, generator=torch.Generator().manual_seed(0))
    cond = policy.condition(obs)
    assert torch.equal(a[:, 0], policy.sample_base(cond, torch.Generator().manual_seed(0)))


# ---------------------------------------------------------------------------------------------- runs
def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "visuomotor.cli", *args]


ONLINE_STEPS = 80


def _online_args(root: Path, out: str) -> list[str]:
    args = ["train", "--policy", "expo", "--data", str(root / "demos.zarr"), "--env", "toy/pointmass"]
    args += [
        "--online-steps",
        str(ONLINE_STEPS),
        "--init",
        str(root / "bc"),
        "--out",
        str(root / out),
        "--no-progress",
    ]
    args += ["--eval-every", str(ONLINE_STEPS), "--eval-episodes", "1"]
    # The critic warm-up ends between checkpoints, so a resumed run crosses from base acting to OTF.
    tune = (
        "utd=2",
        "batch_size=16",
        "save_every=30",
        "log_every=20",
        "max_episode_steps=30",
        "critic_warmup=40",
    )
    for t in tune:
        args += ["-t", t]
    return args


@pytest.fixture(scope="module")
def toy_runs(tmp_path_factory):
    """Demonstrations of the point mass and a base-policy checkpoint to start from (--init). The base is
    saved untrained: the offline loop that would BC-train it is the registry-wide loop of test_policies."""
    from visuomotor.datasets.stats import load_stats

    root = tmp_path_factory.mktemp("expo")
    demos = collect_demos(root / "demos.zarr", 12, max_steps=30)
    config = make_config("expo", "cpu", **TINY)
    config.input_shapes, config.action_dim = {ENV_KEY: [6]}, 2
    ExpoPolicy(config, load_stats(demos, [ENV_KEY, "action"])).save_pretrained(root / "bc")
    return root


def test_resume_after_sigkill_gives_the_weights_of_an_uninterrupted_run(toy_runs):
    """A real `visuomotor train` subprocess is SIGKILLed after its first checkpoint and resumed; the
    uninterrupted run (in this process, like the resume, to spare two more torch start-ups) runs
    meanwhile. Both run on one thread, so float results do not depend on scheduling."""
    from visuomotor.cli import main
    from visuomotor.datasets import EpisodeStore

    root = toy_runs
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    killed = subprocess.Popen(_cli(*_online_args(root, "killed")), env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)  # fmt: skip
    assert main(_online_args(root, "full")) == 0
    last = root / "killed" / "checkpoints" / "last"
    deadline = time.time() + 60
    while not last.exists() and killed.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)  # somewhere in the next episode: mid-update, mid-commit or mid-checkpoint
    killed.send_signal(signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL, killed.stderr.read().decode()[-2000:]
    state = json.loads((last.resolve() / "training_state" / "state.json").read_text())
    assert 0 < state["env_steps"] < ONLINE_STEPS
    replay = EpisodeStore.open(root / "killed" / "replay.zarr", mode="a")
    # As if killed between committing an episode and checkpointing: the resume must cut the store back.
    replay.append_episode(replay.episode(0), task=replay.task(0), meta=replay.episode_meta(0))
    assert replay.num_episodes > state["episodes"]
    assert (
        main(["train", "--policy", "expo", "--out", str(root / "killed"), "--resume", "--no-progress"]) == 0
    )

    a, b = (
        load_file(str(root / r / "checkpoints" / "last" / "training_state" / "learner.safetensors"))
        for r in ("full", "killed")
    )
    assert a.keys() == b.keys() and any(k.startswith("policy.critics.") for k in a)
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different[:5]
    curves = [json.loads((root / r / "curves.json").read_text()) for r in ("full", "killed")]
    assert [c["success_rate"] for c in curves[0]] == [c["success_rate"] for c in curves[1]]
    assert [c["env_steps"] for c in curves[0]] == [0, ONLINE_STEPS]
    assert (root / "full" / "curves.png").exists()
    _check_replay_stores(root / "full" / "replay.zarr", root / "killed" / "replay.zarr")
    obs = {ENV_KEY: torch.from_numpy(PointMassEnv().reset(seed=0)[0][ENV_KEY])[None]}
    last = load_policy(root / "full" / "checkpoints" / "last")  # after the warm-up: OTF with the heads
    assert last.config.rl_heads and last.critics is not None and last.edit is not None
    best = load_policy(root / "full")  # the run's best evaluation, as `visuomotor eval` loads it
    for policy in (last, best):
        policy.reset()
        assert policy.select_action(obs).shape == (1, 2)


def _check_replay_stores(full: Path, resumed: Path) -> None:
    """Both runs committed the same episodes, in the store format, with masks as the ends dictate."""
    from visuomotor.datasets import EpisodeStore

    a, b = EpisodeStore.open(full), EpisodeStore.open(resumed)
    assert a.num_episodes == b.num_episodes and a.num_frames == b.num_frames == ONLINE_STEPS
    for key in a.keys:
        assert np.array_equal(a.load(key), b.load(key)), key
    for e in range(a.num_episodes):
        meta, ep = a.episode_meta(e), a.episode(e)
        assert meta["end"] == ("terminated" if ep["next.terminated"][-1] else meta["end"])
        assert ep["next.terminated"].sum() == (meta["end"] == "terminated")  # only a success ends one
        assert len(meta["final_observation"][ENV_KEY]) == 6
        assert meta["end"] != "time_limit" or len(ep["action"]) == 30


# ---------------------------------------------------------------------------------------------- bad input
def test_out_of_range_beta_and_utd_are_named():
    with pytest.raises(InvalidInputError, match=r"edit_scale \(beta\) must be in \(0, 1\]"):
        make_config("expo", "cpu", edit_scale=1.5)
    with pytest.raises(InvalidInputError, match=r"edit_scale.*best_of_n"):
        make_config("expo", "cpu", edit_scale=0.0)
    assert make_config("expo", "cpu", algorithm="best_of_n", edit_scale=0.0).edit_scale == 0.0
    with pytest.raises(
        InvalidInputError, match=r"utd \(updates per env step\) must be in \[1, 1000\], got 0"
    ):
        OnlineConfig(utd=0)
    with pytest.raises(InvalidInputError, match="horizon must be 1"):
        make_config("expo", "cpu", horizon=16, n_action_steps=8)


def test_an_env_that_does_not_match_the_policy_is_named():
    from visuomotor.policies.expo.prepare import check_env

    config = tiny_policy().config
    config.input_shapes = {ENV_KEY: [39]}
    with pytest.raises(
        InvalidInputError, match=r"observation 'observation.environment_state' has shape \[6\].* \[39\]"
    ):
        check_env(PointMassEnv(), config, "toy/pointmass")
    config.input_shapes, config.action_dim = {ENV_KEY: [6]}, 4
    with pytest.raises(InvalidInputError, match=r"'action' has shape \[2\], the data and policy have \[4\]"):
        check_env(PointMassEnv(), config, "toy/pointmass")


def test_bad_input_to_an_online_run_is_one_error_naming_the_field(toy_runs, tmp_path, capsys):
    """Through the CLI: exit code 2 and a message that names the field, the key or 'action'."""
    from visuomotor.cli import main

    args = ["train", "--policy", "expo", "--data", str(toy_runs / "demos.zarr"), "--env", "toy/pointmass",
            "--online-steps", "10", "--out", str(tmp_path / "r"), "--no-progress"]  # fmt: skip
    assert main([*args, "-t", "utd=0"]) == 2
    assert "utd (updates per env step) must be in [1, 1000], got 0" in capsys.readouterr().err
    assert main([*args, "-o", "edit_scale=2"]) == 2
    assert "edit_scale (beta) must be in (0, 1]" in capsys.readouterr().err
    init = tmp_path / "other_bc"  # a base checkpoint built for a 5-d state, against the 6-d demonstrations
    other = tiny_policy(rl_heads=False).config
    other.input_shapes = {ENV_KEY: [5]}
    ExpoPolicy(other).save_pretrained(init)
    assert main([*args, "--init", str(init)]) == 2
    assert (
        "'observation.environment_state' has frame shape [6], the policy expects [5]"
        in capsys.readouterr().err
    )
    five = collect_demos(tmp_path / "five.zarr", 0)  # demonstrations whose environment state is 5-d
    five.append_episode({ENV_KEY: np.zeros((3, 5), np.float32), "action": np.zeros((3, 2), np.float32)},
                        meta={"success": True})  # fmt: skip
    args[args.index("--data") + 1] = str(five.path)
    assert main([*args, "-o", f'state_keys=["{ENV_KEY}"]']) == 2  # the 6-d env against 5-d data
    assert (
        "env toy/pointmass: observation 'observation.environment_state' has shape [6]"
        in capsys.readouterr().err
    )
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_a_store_without_rewards_is_refused_where_rewards_are_needed(tmp_path):
    from visuomotor.datasets import EpisodeStore

    store = EpisodeStore.create(tmp_path / "s.zarr", fps=10)
    for _ in range(2):  # no rewards, no success in the metadata (e.g. teleoperated demonstrations)
        store.append_episode({ENV_KEY: np.zeros((5, 6), np.float32), "action": np.zeros((5, 2), np.float32)})
    with pytest.raises(InvalidInputError, match=r"reward_source=auto: .* holds no rewards \('next.reward'"):
        resolve_reward_source(store, "auto", needed=True)
    with pytest.raises(InvalidInputError, match=r"reward_source=store: .* lacks 'next.reward'"):
        resolve_reward_source(store, "store", needed=True)
    assert resolve_reward_source(store, "auto", needed=False) == "none"  # the bc baseline reads none
    demos = collect_demos(tmp_path / "d.zarr", 2, max_steps=10)
    assert resolve_reward_source(demos, "auto", needed=True) == "success"
