"""Train a policy on an episode store, with the one training loop every policy shares.

Config fields can be overridden with `-o FIELD=VALUE` (policy config) and `-t FIELD=VALUE` (training
config), or the common ones below; `--list-fields` prints every field with its documentation.
Distributed: `torchrun --nproc_per_node N -m visuomotor.cli train ...` (gloo on CPU).

Online fine-tuning (EXPO, architecture.md §EXPO): `--policy expo --env ENV --online-steps N [--init RUN]`
runs the online learner instead of the offline loop; `-o` sets policy fields, `-t` the learner's
(`OnlineConfig`), and `--resume` continues a killed online run exactly.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from visuomotor.configs import parse_overrides
from visuomotor.errors import InvalidInputError
from visuomotor.keys import ENVIRONMENT_STATE, image_key


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", required=True, help="policy name (see --list-fields for its config)")
    parser.add_argument("--data", help="episode store to train on")
    parser.add_argument("--out", help="run directory (checkpoints, logs, plots)")
    parser.add_argument("--preset", default="cpu", help="cpu (minutes on this machine) or paper")
    parser.add_argument("--steps", type=int, help="total gradient steps")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--seed", type=int)
    parser.add_argument(
        "--cameras",
        help="comma-separated cameras to train on, or 'none' for low-dim state only (default: every camera "
        "of the store, except with --relative-state)",
    )
    parser.add_argument("--eval-episodes", type=int, help="rollout episodes per task when evaluating")
    parser.add_argument("--eval-every", type=int, help="evaluate every N steps (and at the end)")
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last checkpoint"
    )
    parser.add_argument(
        "--relative-state",
        action="store_true",
        help="Metaworld stores: condition on observation.environment_state with positions relative to each "
        "other (goal - hand, object - hand, ...) instead of absolute; -o fields still win",
    )
    parser.add_argument(
        "--video-data", metavar="STORE", help="action-free video to co-train frame prediction on (PAD)"
    )
    parser.add_argument(
        "--env",
        help="online fine-tuning (expo): the env to learn in, e.g. metaworld/reach-v3 (or toy/pointmass)",
    )
    parser.add_argument(
        "--online-steps", type=int, help="online fine-tuning (expo): environment steps in total"
    )
    parser.add_argument(
        "--init", metavar="RUN", help="online fine-tuning (expo): start from this BC checkpoint"
    )
    parser.add_argument("-o", "--policy-override", action="append", default=[], metavar="FIELD=VALUE")
    parser.add_argument("-t", "--train-override", action="append", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--list-fields", action="store_true", help="print the config fields and exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from visuomotor.configs import describe
    from visuomotor.policies import get_policy_entry

    if args.list_fields:
        from visuomotor.train import TrainConfig

        _, config_cls, presets = get_policy_entry(args.policy).load()
        print(f"policy config ({config_cls.__name__}; presets {sorted(presets)}):\n{describe(config_cls)}")
        print(f"\ntraining config (TrainConfig):\n{describe(TrainConfig)}")
        if args.policy == "expo":
            from visuomotor.policies.expo.config import OnlineConfig

            print(f"\nonline config (OnlineConfig, -t with --env/--online-steps):\n{describe(OnlineConfig)}")
        return 0
    if not args.out or (not args.data and not args.resume):
        raise InvalidInputError("--out is required, and --data unless --resume")
    policy_over = parse_overrides(args.policy_override)
    train_over = parse_overrides(args.train_override)
    if _is_online(args):  # before importing the offline loop, which an online run does not need
        return _run_online(args, policy_over, train_over)
    from visuomotor.train import train

    for flag, field in (
        ("steps", "steps"),
        ("batch_size", "batch_size"),
        ("lr", "lr"),
        ("seed", "seed"),
        ("eval_episodes", "eval_episodes"),
        ("eval_every", "eval_every"),
    ):
        if getattr(args, flag) is not None:
            train_over[field] = str(getattr(args, flag))
    if args.video_data:
        train_over["video_data"] = str(Path(args.video_data).resolve())  # a resumed run finds it anywhere
    if args.relative_state:
        policy_over = relative_state_overrides(args.data) | policy_over
    policy_over = _low_dim_state(args, policy_over)
    cams = _cameras(args, policy_over)
    if cams is not None:
        policy_over["image_keys"] = json.dumps([image_key(c) for c in cams])
    summary = train(
        args.policy,
        args.data,
        args.out,
        preset=args.preset,
        policy_overrides=policy_over,
        train_overrides=train_over,
        resume=args.resume,
        progress=not args.no_progress,
    )
    print(json.dumps(summary, indent=2))
    return 0


def _is_online(args: argparse.Namespace) -> bool:
    """An online run: one of the online flags, or --resume of a run the online learner started."""
    if args.env or args.online_steps is not None or args.init:
        return True
    run_json = Path(args.out) / "run.json"
    return bool(
        args.resume and run_json.exists() and json.loads(run_json.read_text()).get("kind") == "online"
    )


def _run_online(args: argparse.Namespace, policy_over: dict[str, str], online_over: dict[str, str]) -> int:
    """The online learner (policies/expo/learner.py), with the env built here: policies never import sim."""
    from visuomotor.policies.expo.learner import train_online

    if args.policy != "expo":
        raise InvalidInputError("--env/--online-steps/--init train online, which only --policy expo does")
    if not args.resume and (not args.env or args.online_steps is None):
        raise InvalidInputError("online training needs --env and --online-steps (and --data)")
    if args.steps is not None or args.video_data or args.cameras or (args.relative_state and args.init):
        raise InvalidInputError(
            "--steps, --video-data and --cameras belong to offline training: an online run counts --online-steps "
            "and reads low-dim state, the state its --init checkpoint reads (so no --relative-state with --init)"
        )
    if args.relative_state and not args.resume:
        policy_over = relative_state_overrides(args.data) | policy_over
    policy_over = _low_dim_state(args, policy_over)
    for name in ("online_steps", "batch_size", "lr", "seed", "eval_episodes", "eval_every"):
        if getattr(args, name) is not None:
            online_over[name] = str(getattr(args, name))
    summary = train_online(
        args.data,
        args.out,
        args.env,
        online_env,
        preset=args.preset,
        policy_overrides=policy_over,
        online_overrides=online_over,
        init=args.init,
        resume=args.resume,
        progress=not args.no_progress,
    )
    print(json.dumps(summary, indent=2))
    return 0


def online_env(env_id: str, max_episode_steps: int | None):
    """A state-only env for online training: the toy point mass or a simulator's env (no rendering)."""
    if env_id.startswith("toy/"):
        from visuomotor.policies.expo.toyenv import make_toy_env

        return make_toy_env(env_id, max_episode_steps)
    from visuomotor.sim import make_env

    return make_env(env_id, render=False, max_episode_steps=max_episode_steps)


def _cameras(args: argparse.Namespace, policy_over: dict[str, str]) -> list[str] | None:
    """The cameras a new run sees: --cameras as given ('none': none); by default every camera of the
    store, so a policy trained on a store with images sees them; none for a policy registered
    `low_dim_by_default` (EXPO). A privileged-state run (--relative-state) and an explicit `-o image_keys`
    keep their own choice. None = leave the config's."""
    if args.cameras is not None:
        return (
            [] if args.cameras.strip().lower() in ("", "none") else [c for c in args.cameras.split(",") if c]
        )
    if args.resume or args.relative_state or "image_keys" in policy_over:
        return None
    from visuomotor.policies import get_policy_entry

    if get_policy_entry(args.policy).low_dim_by_default:
        return []
    from visuomotor.datasets import EpisodeStore
    from visuomotor.keys import IMAGE_PREFIX, camera_of

    return [camera_of(k) for k in EpisodeStore.open(args.data).keys if k.startswith(IMAGE_PREFIX)]


def _low_dim_state(args: argparse.Namespace, policy_over: dict[str, str]) -> dict[str, str]:
    """A new run of a policy registered `low_dim_by_default` (EXPO: an RL agent on the simulator's
    low-dimensional state, as in its paper) reads the store's full low-dim state, the environment state
    (object and goal included), when the store has it and the inputs are not chosen otherwise (flags,
    `-o state_keys`, or the --init checkpoint an online run starts from): the proprio state alone cannot see
    the goal (a point-mass BC base on it reached 4%; docs/experiments.md §EXPO online)."""
    from visuomotor.policies import get_policy_entry

    chosen = args.resume or args.init or args.relative_state or args.cameras is not None
    chosen = chosen or "state_keys" in policy_over
    if chosen or not args.data or not get_policy_entry(args.policy).low_dim_by_default:
        return policy_over
    from visuomotor.datasets import EpisodeStore

    if ENVIRONMENT_STATE not in EpisodeStore.open(args.data).keys:
        return policy_over
    return policy_over | {"state_keys": json.dumps([ENVIRONMENT_STATE])}


def relative_state_overrides(data: str | None) -> dict[str, str]:
    """The policy overrides of `--relative-state` (sim.metaworld_env.RELATIVE_STATE), for a Metaworld store."""
    from visuomotor.datasets import EpisodeStore
    from visuomotor.sim.metaworld_env import RELATIVE_STATE

    if not data:
        raise InvalidInputError("--relative-state needs --data (it reads the store's layout)")
    store = EpisodeStore.open(data)
    env_id = str(store.attrs.get("env_id", ""))
    if not env_id.startswith("metaworld/"):
        raise InvalidInputError(
            f"--relative-state knows the layout of Metaworld's environment state only; {data} was "
            f"recorded from {env_id or 'an unknown environment'!r}. Use -o state_dims=... -o state_differences=..."
        )
    if ENVIRONMENT_STATE not in store.keys:
        raise InvalidInputError(f"--relative-state: {data} has no 'observation.environment_state'")
    over = {"state_keys": json.dumps([ENVIRONMENT_STATE])}
    return over | {k: json.dumps(v) for k, v in RELATIVE_STATE.items()}
