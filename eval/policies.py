"""What the rollout runner drives: the Policy protocol, built-in reference policies and how to build one.

The runner only calls `reset()` and `select_action(obs)` (architecture.md §Conventions): observation
history and action chunking live inside the policy, so a learned Policy with an action queue plugs in
unchanged. `obs` is a dict of batched torch tensors (B=1) with the standard keys plus `"task": list[str]`;
images stay uint8 (B, H, W, C), exactly as stored, and the policy normalises them itself.

Reference policies (registry `REFERENCE_POLICIES`, name -> factory taking the env):
- `scripted`: the simulator's scripted expert (`visuomotor.sim.make_expert`), the collection policy;
  its eval success rate is the ceiling a policy trained on its demonstrations can reach.
- `random`: uniform in the action space; the floor.

A policy is described to the worker processes by a picklable `PolicySpec` and built there, next to the
env, because a policy may need the env (the scripted expert does) and weights should not be pickled.
The parent checks a checkpoint first with `visuomotor.policies.inspect_checkpoint`, the same function
each worker's `load_policy` reads it with. A LeRobot-trained checkpoint (`PolicySpec(lerobot=DIR)`) runs
through LeRobot's own policy API (`eval/lerobot_policy.py`), checked the same way in the parent and in
each worker (`eval/lerobot_checkpoint.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from visuomotor.errors import InvalidInputError


@runtime_checkable
class RolloutPolicy(Protocol):
    """The part of the Policy API (architecture.md §Conventions) a rollout needs."""

    def reset(self) -> None: ...

    def select_action(self, obs: dict[str, Any]) -> Any:
        """One action, shape (B, action_dim) (or (action_dim,)), as a torch tensor or numpy array."""
        ...


def unbatch(obs: dict[str, Any]) -> dict[str, Any]:
    """Batched (B=1) torch observation -> the env's own numpy observation (for non-torch policies)."""
    out: dict[str, Any] = {}
    for key, value in obs.items():
        if key == "task":
            out[key] = value[0]
        elif hasattr(value, "detach"):
            out[key] = value[0].detach().cpu().numpy()
        else:
            out[key] = value[0]
    return out


class ScriptedPolicy:
    """The simulator's scripted expert behind the Policy interface."""

    def __init__(self, env: Any, sim: Any) -> None:
        self.expert = sim.make_expert(env)

    def reset(self) -> None:
        self.expert.reset()

    def select_action(self, obs: dict[str, Any]) -> Any:
        import numpy as np
        import torch

        action = np.asarray(self.expert.act(unbatch(obs)), dtype=np.float32)
        return torch.from_numpy(action)[None]  # (1, action_dim)


class RandomPolicy:
    """Uniform actions in the (bounded) action space, drawn from torch's global RNG.

    The runner seeds torch per episode, so random rollouts are reproducible from the episode seed.
    """

    def __init__(self, env: Any, sim: Any = None) -> None:
        import numpy as np
        import torch

        space = env.action_space
        low, high = np.asarray(space.low, np.float32), np.asarray(space.high, np.float32)
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise ValueError(f"random policy needs a bounded action space, got {space}")
        self._low, self._high = torch.from_numpy(low), torch.from_numpy(high)

    def reset(self) -> None:
        pass

    def select_action(self, obs: dict[str, Any]) -> Any:
        import torch

        u = torch.rand(self._low.shape)
        return (self._low + u * (self._high - self._low))[None]  # (1, action_dim)


PolicyFactory = Callable[[Any, Any], RolloutPolicy]

# name -> factory(env, sim_module). Explicit registry (architecture.md §Layout).
REFERENCE_POLICIES: dict[str, PolicyFactory] = {
    "scripted": ScriptedPolicy,
    "random": RandomPolicy,
}


@dataclass(frozen=True)
class PolicySpec:
    """Picklable recipe for a policy, built inside each worker: a reference policy name, a checkpoint or
    a LeRobot checkpoint."""

    name: str | None = None
    """A key of `REFERENCE_POLICIES`."""
    checkpoint: str | None = None
    """A directory written by `Policy.save_pretrained` (config.json + model.safetensors)."""
    overrides: tuple[tuple[str, str], ...] = ()
    """(field, value) pairs for the checkpoint's inference-time config fields (`INFERENCE_FIELDS`; for a
    LeRobot checkpoint `lerobot_checkpoint.INFERENCE_FIELDS`), e.g. ("n_action_steps", "3")."""
    lerobot: str | None = None
    """A directory written by LeRobot's `PreTrainedPolicy.save_pretrained` and its processors'."""

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.name, self.checkpoint, self.lerobot)) != 1:
            raise InvalidInputError(
                "give exactly one of a reference policy name, a checkpoint or a LeRobot checkpoint directory"
            )
        if self.overrides and self.name is not None:
            raise InvalidInputError(
                "config overrides (n_action_steps included) apply to a trained policy's checkpoint, "
                "not a reference policy"
            )
        if self.name is not None and self.name not in REFERENCE_POLICIES:
            raise InvalidInputError(
                f"unknown policy {self.name!r}; reference policies: {', '.join(sorted(REFERENCE_POLICIES))}"
            )

    @property
    def label(self) -> str:
        if self.name is not None:
            return self.name
        where = str(self.checkpoint) if self.lerobot is None else f"lerobot:{self.lerobot}"
        if self.overrides:
            return f"{where} ({', '.join(f'{k}={v}' for k, v in self.overrides)})"
        return where


def build_policy(spec: PolicySpec, env: Any, sim: Any) -> RolloutPolicy:
    """Build the policy a spec describes (called in the worker, once per task's env)."""
    if spec.name is not None:
        return REFERENCE_POLICIES[spec.name](env, sim)
    if spec.lerobot is not None:
        from visuomotor.eval.lerobot_policy import load_lerobot_policy

        return load_lerobot_policy(spec.lerobot, env, dict(spec.overrides))
    from visuomotor.policies import load_policy

    # CPU workers; a loaded policy is already in eval mode.
    return load_policy(str(spec.checkpoint), device="cpu", overrides=dict(spec.overrides))
