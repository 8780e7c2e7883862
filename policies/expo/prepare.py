"""What an online run is built from (architecture.md §EXPO): its configs (new, or read back from run.json
to resume), the offline store, the policy (from scratch on the store, from a BC checkpoint with --init, or
the saved config of a resumed run), and the checks that the store, the base checkpoint and the env agree:
each mismatch is one error naming the key (or 'action')."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from visuomotor.configs import apply_overrides, from_dict, to_dict
from visuomotor.datasets import EpisodeStore
from visuomotor.errors import InvalidInputError, MissingPathError, PathExistsError
from visuomotor.policies.expo.config import ONLINE_PRESETS, PRESETS, ExpoConfig, OnlineConfig
from visuomotor.policies.expo.policy import ExpoPolicy
from visuomotor.rundir import RunDir


def new_record(
    run_dir: RunDir,
    data: str | Path | None,
    env_id: str | None,
    init: str | Path | None,
    preset: str,
    policy_overrides: Mapping[str, str],
    online_overrides: Mapping[str, str],
) -> tuple[dict[str, Any], OnlineConfig]:
    """run.json of a new run (configs not yet adapted to the store) and its online config."""
    if run_dir.last.exists():
        raise PathExistsError(
            f"{run_dir.root} already holds a run; pass --resume to continue it or choose a new --out"
        )
    if not data or not env_id:
        raise InvalidInputError("online training needs --data (the offline store) and --env")
    if preset not in PRESETS:
        raise InvalidInputError(f"unknown preset {preset!r}; presets: {sorted(PRESETS)}")
    ocfg = apply_overrides(OnlineConfig(**ONLINE_PRESETS[preset]), dict(online_overrides))
    record = {
        "kind": "online",
        "policy": "expo",
        "preset": preset,
        "data": str(Path(data).resolve()),
        "env_id": env_id,
        "init": str(Path(init).resolve()) if init else None,
        "policy_overrides": dict(policy_overrides),
        "online_config": to_dict(ocfg),
    }
    return record, ocfg


def resumed_record(
    run_dir: RunDir, online_overrides: Mapping[str, str]
) -> tuple[dict[str, Any], OnlineConfig]:
    """run.json of the run in `run_dir`; online fields may be overridden (e.g. online_steps)."""
    if not run_dir.run_json.exists() or not run_dir.last.exists():
        raise MissingPathError(f"{run_dir.root}: nothing to resume (no run.json or checkpoints/last)")
    record = json.loads(run_dir.run_json.read_text())
    if record.get("kind") != "online":
        raise InvalidInputError(f"{run_dir.root} is not an online EXPO run")
    ocfg = from_dict(OnlineConfig, record["online_config"], where=f"{run_dir.run_json}:online_config")
    return record, apply_overrides(ocfg, dict(online_overrides))


def open_offline_store(data: str | Path) -> EpisodeStore:
    store = EpisodeStore.open(data)
    if store.num_episodes == 0 or "action" not in store.keys:
        raise InvalidInputError(f"{data}: the offline store needs episodes with actions")
    return store


def build_policy(
    record: dict[str, Any], store: EpisodeStore, init: str | Path | None, resume: bool
) -> tuple[ExpoPolicy, bool]:
    """The policy with its online heads, and whether its base policy is pretrained. A resumed run builds
    the saved config (its weights come from the checkpoint); --init starts from a BC checkpoint's base
    policy; otherwise everything starts from scratch on the store's shapes and statistics."""
    if resume:
        config = from_dict(ExpoConfig, record["policy_config"], where="run.json:policy_config")
        return ExpoPolicy(config), record["init"] is not None
    overrides = dict(record["policy_overrides"])
    if init:
        policy = policy_from_init(Path(init), overrides)
    else:
        from visuomotor.datasets.stats import load_stats

        config = apply_overrides(ExpoConfig(**PRESETS[record["preset"]], rl_heads=True), overrides)
        config.input_shapes = {k: list(store.shape(k)) for k in config.input_keys if k in store.keys}
        config.action_dim = int(store.shape("action")[0])
        check_online_inputs(config, store)
        policy = ExpoPolicy(config, load_stats(store, [*config.input_keys, "action"]))
        policy.prepare_training()
        policy.dataset = {k: store.attrs[k] for k in ("fps", "env_id", "action_space") if k in store.attrs}
    check_online_inputs(policy.config, store)
    record["policy_config"] = to_dict(policy.config)
    return policy, init is not None


def policy_from_init(path: Path, overrides: dict[str, str]) -> ExpoPolicy:
    """A policy with online heads whose base policy and normaliser come from a BC checkpoint."""
    from visuomotor.policies import inspect_checkpoint, load_policy

    info = inspect_checkpoint(path)
    if info.policy != "expo":
        raise InvalidInputError(
            f"--init {path}: holds a '{info.policy}' policy; EXPO fine-tunes an expo checkpoint"
        )
    base = load_policy(path)
    config = apply_overrides(dataclasses.replace(base.config, rl_heads=True), overrides)
    policy = ExpoPolicy(config)
    missing, unexpected = policy.load_state_dict(base.state_dict(), strict=False)
    heads = ("critics.", "edit.", "actor.")
    if unexpected or any(not k.startswith(heads) for k in missing):
        raise InvalidInputError(
            f"--init {path}: its base policy does not match the config (overrides may only change the online "
            f"heads): missing {[k for k in missing if not k.startswith(heads)]}, unexpected {unexpected}"
        )
    policy.dataset = dict(base.dataset)
    return policy


def check_online_inputs(config: ExpoConfig, store: EpisodeStore) -> None:
    """Online fine-tuning reads low-dim state of one task; the store must hold what the policy reads."""
    if config.image_keys or config.use_tasks:
        raise InvalidInputError(
            "online EXPO runs from low-dim state on one task: image_keys must be empty and the policy must "
            f"not be task-conditioned (image_keys={list(config.image_keys)}, tasks={config.tasks}); train the "
            "--init checkpoint with --cameras none on a one-task store"
        )
    for key in config.input_keys:
        if key not in store.keys:
            raise InvalidInputError(
                f"{store.path}: the policy reads '{key}' but the store has only {store.keys}"
            )
        if list(store.shape(key)) != list(config.input_shapes[key]):
            raise InvalidInputError(
                f"{store.path}: '{key}' has frame shape {list(store.shape(key))}, the policy expects "
                f"{list(config.input_shapes[key])}"
            )
    if tuple(store.shape("action")) != (config.action_dim,):
        raise InvalidInputError(
            f"{store.path}: 'action' has shape {list(store.shape('action'))}, the policy expects [{config.action_dim}]"
        )


def check_env(env: Any, config: ExpoConfig, env_id: str) -> None:
    """The env's observation and action spaces match what the policy was built for; else one error
    naming the key (or 'action')."""
    spaces = getattr(env.observation_space, "spaces", {})
    for key in config.input_keys:
        if key not in spaces:
            raise InvalidInputError(f"env {env_id}: has no observation '{key}' (it has {sorted(spaces)})")
        if list(spaces[key].shape) != list(config.input_shapes[key]):
            raise InvalidInputError(
                f"env {env_id}: observation '{key}' has shape {list(spaces[key].shape)}, the data and policy "
                f"have {list(config.input_shapes[key])}"
            )
    if tuple(env.action_space.shape) != (config.action_dim,):
        raise InvalidInputError(
            f"env {env_id}: 'action' has shape {list(env.action_space.shape)}, the data and policy have "
            f"[{config.action_dim}]"
        )
