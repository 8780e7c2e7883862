"""Transitions for the online learner: the offline store's, the online replay buffer, and the 50/50
minibatches drawn from both (RLPD's symmetric sampling, notes §1.5).

Everything here is in raw units (float32, as the store holds them). Features and normalised actions are
computed per minibatch, so a resumed run, which rebuilds the replay buffer from the replay store, feeds
the networks bit-identical inputs.

Masks: a transition whose episode *terminated* (Metaworld: success) has mask 0; one cut by the time
limit (a truncation) keeps mask 1 and bootstraps from the observation after it (notes §1.5 treat
Robomimic timeouts as terminal; Metaworld's limit is not part of the task, so we bootstrap through it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from visuomotor.errors import InvalidInputError

REWARD_KEY = "next.reward"
TERMINATED_KEY = "next.terminated"
SUCCESS_KEY = "next.success"
FINAL_OBS_META = "final_observation"
"""Episode metadata of the replay store: the observation after the last action, for bootstrapping a
truncated episode's last transition."""


@dataclass
class Transitions:
    """(s, a, r, s', mask) rows: obs and next_obs map each observation key to (N, ...) arrays."""

    obs: dict[str, np.ndarray]
    action: np.ndarray
    reward: np.ndarray
    next_obs: dict[str, np.ndarray]
    mask: np.ndarray

    def __len__(self) -> int:
        return len(self.action)

    def rows(self, idx: np.ndarray) -> Transitions:
        return Transitions(
            {k: v[idx] for k, v in self.obs.items()},
            self.action[idx],
            self.reward[idx],
            {k: v[idx] for k, v in self.next_obs.items()},
            self.mask[idx],
        )

    @staticmethod
    def concat(parts: Sequence[Transitions]) -> Transitions:
        keys = parts[0].obs.keys()
        return Transitions(
            {k: np.concatenate([p.obs[k] for p in parts]) for k in keys},
            np.concatenate([p.action for p in parts]),
            np.concatenate([p.reward for p in parts]),
            {k: np.concatenate([p.next_obs[k] for p in parts]) for k in keys},
            np.concatenate([p.mask for p in parts]),
        )


def episode_transitions(
    obs: Mapping[str, np.ndarray],
    actions: np.ndarray,
    rewards: np.ndarray,
    terminated: np.ndarray,
    final_obs: Mapping[str, np.ndarray] | None,
) -> Transitions:
    """The transitions of one episode of T frames. The last one bootstraps from `final_obs`; without it
    (a demonstration store records no observation after the last action) it is kept only when it
    terminated (its s' is then never read, mask 0) and dropped otherwise."""
    T = len(actions)
    keep = T if final_obs is not None or bool(terminated[-1]) else T - 1
    last = {k: (final_obs[k] if final_obs is not None else v[-1])[None] for k, v in obs.items()}
    next_obs = {k: np.concatenate([v[1:], last[k]]).astype(np.float32)[:keep] for k, v in obs.items()}
    return Transitions(
        {k: np.asarray(v, np.float32)[:keep] for k, v in obs.items()},
        np.asarray(actions, np.float32)[:keep],
        np.asarray(rewards, np.float32)[:keep],
        next_obs,
        (1.0 - np.asarray(terminated, np.float32))[:keep],
    )


class ReplayBuffer:
    """The online transitions, preallocated to `capacity` rows (the run's env steps)."""

    def __init__(self, shapes: Mapping[str, Sequence[int]], action_dim: int, capacity: int) -> None:
        self.size = 0
        self.data = Transitions(
            {k: np.zeros((capacity, *s), np.float32) for k, s in shapes.items()},
            np.zeros((capacity, action_dim), np.float32),
            np.zeros(capacity, np.float32),
            {k: np.zeros((capacity, *s), np.float32) for k, s in shapes.items()},
            np.zeros(capacity, np.float32),
        )

    def __len__(self) -> int:
        return self.size

    def add(self, t: Transitions) -> None:
        n, d = len(t), self.data
        if self.size + n > len(d.action):
            raise RuntimeError(f"replay buffer full ({len(d.action)} transitions)")
        rows = slice(self.size, self.size + n)
        for key in d.obs:
            d.obs[key][rows] = t.obs[key]
            d.next_obs[key][rows] = t.next_obs[key]
        d.action[rows], d.reward[rows], d.mask[rows] = t.action, t.reward, t.mask
        self.size += n

    def rows(self, idx: np.ndarray) -> Transitions:
        return self.data.rows(idx)


def mixed_indices(
    rng: np.random.Generator,
    n_offline: int,
    n_online: int,
    batch_size: int,
    minibatches: int,
    offline_ratio: float,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(offline rows, online rows) of each of `minibatches` minibatches, round(batch_size * ratio)
    offline rows in every one (RLPD interleaves, so each minibatch is itself 50/50)."""
    n_off = round(batch_size * offline_ratio)
    off = rng.integers(0, n_offline, (minibatches, n_off))
    on = rng.integers(0, n_online, (minibatches, batch_size - n_off))
    return list(zip(off, on, strict=True))


# ---------------------------------------------------------------------------------------------- offline
def resolve_reward_source(store: Any, source: str, needed: bool) -> str:
    """Where the offline rewards come from: "store", "success", or "none" when nothing reads them (the bc
    baseline). A store without rewards where they are needed is one error naming `reward_source`."""
    if not needed:
        return "none"
    has_rewards = REWARD_KEY in store.keys and TERMINATED_KEY in store.keys
    metas = [store.episode_meta(e) for e in range(store.num_episodes)]
    # Success at the last frame is a reward only if episodes end at their first success (collection
    # without settle steps), or we would reward frames after it.
    ends_at_success = all("success" in m and int(m.get("settle_steps", 0) or 0) == 0 for m in metas)
    if source == "store" or (source == "auto" and has_rewards):
        if not has_rewards:
            raise InvalidInputError(
                f"reward_source=store: {store.path} lacks '{REWARD_KEY}' or '{TERMINATED_KEY}' (has {store.keys})"
            )
        return "store"
    if ends_at_success:
        return "success"
    raise InvalidInputError(
        f"reward_source={source}: {store.path} holds no rewards ('{REWARD_KEY}', '{TERMINATED_KEY}') and its "
        "episodes do not all record 'success' in their metadata with episodes ending at the first success "
        "(settle_steps 0), so the critics have nothing to learn from; use a store with rewards or "
        "algorithm=bc"
    )


def offline_transitions(store: Any, keys: Sequence[str], source: str) -> Transitions:
    """Every usable transition of the offline store (raw units), episode by episode."""
    arrays = {k: store.load(k) for k in (*keys, "action")}
    if source == "store":
        arrays |= {k: store.load(k) for k in (REWARD_KEY, TERMINATED_KEY)}
    parts = []
    for e, (start, length) in enumerate(zip(store.episode_starts, store.episode_lengths, strict=True)):
        ep = {k: v[start : start + length] for k, v in arrays.items()}
        rewards, terminated = _episode_rewards(ep, store.episode_meta(e), source, int(length))
        final = store.episode_meta(e).get(FINAL_OBS_META)
        final_obs = {k: np.asarray(final[k], np.float32) for k in keys} if final else None
        if length > 1 or final_obs is not None or terminated[-1]:
            parts.append(
                episode_transitions({k: ep[k] for k in keys}, ep["action"], rewards, terminated, final_obs)
            )
    if not parts:
        raise InvalidInputError(f"{store.path}: no transitions (every episode has a single frame)")
    return Transitions.concat(parts)


def _episode_rewards(
    ep: Mapping[str, np.ndarray], meta: Mapping[str, Any], source: str, length: int
) -> tuple[np.ndarray, np.ndarray]:
    """(rewards, terminated) of one offline episode: the store's, or sparse success at the last frame
    (all zero for "none": the bc baseline reads no rewards)."""
    if source == "store":
        rewards = np.asarray(ep[REWARD_KEY], np.float32).reshape(length)
        return rewards, np.asarray(ep[TERMINATED_KEY]).reshape(length).astype(bool)
    rewards, terminated = np.zeros(length, np.float32), np.zeros(length, bool)
    if source == "success" and bool(meta.get("success", False)):
        rewards[-1], terminated[-1] = 1.0, True
    return rewards, terminated
