"""Evaluate a policy in simulation: N episodes per task on fixed evaluation seeds, in parallel workers.

Prints a per-task table of success rates with Wilson 95% intervals; optionally writes a JSON summary
(env, episodes, success_rate, ci95, per_task, mean_inference_ms), mp4 videos of the first episodes of
every task (border green = success, red = failure) and a PNG bar plot of per-task success.
Evaluation seeds are 1_000_000 + seed offset + episode index, disjoint from collection seeds (0, 1, ...).

    visuomotor eval --policy scripted --env metaworld/reach-v3 --episodes 20 --json out.json --video vids/

A LeRobot-trained policy (`--lerobot-checkpoint DIR`, a directory LeRobot's `save_pretrained` wrote with
its processors) runs through LeRobot's own API on the same seeds, so the two toolkits compare in one
evaluator; its inputs and action size must match the env's (our keys are LeRobot's).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any, NamedTuple

from visuomotor.commands import add_policy_override
from visuomotor.errors import InvalidInputError

logger = logging.getLogger(__name__)

REFERENCE_POLICY_NAMES = ("scripted", "random")  # keep in sync with visuomotor.eval.policies (tested)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--policy",
        choices=REFERENCE_POLICY_NAMES,
        help="a built-in reference policy (scripted expert / random)",
    )
    which.add_argument("--checkpoint", metavar="DIR", help="a trained policy's checkpoint directory")
    which.add_argument(
        "--lerobot-checkpoint",
        metavar="DIR",
        help="a LeRobot-trained policy (act, diffusion): config.json, model.safetensors and its processors",
    )
    parser.add_argument(
        "--env", required=True, help="env id or task set, e.g. metaworld/pick-place-v3, metaworld/MT10"
    )
    parser.add_argument("--episodes", type=int, default=10, help="episodes per task (default 10)")
    parser.add_argument("--json", metavar="PATH", help="write the summary as JSON here")
    parser.add_argument(
        "--video", metavar="DIR", help="write mp4 videos of the first episodes of each task here"
    )
    parser.add_argument(
        "--videos-per-task", type=int, default=2, metavar="K", help="videos per task (default 2)"
    )
    parser.add_argument(
        "--plot",
        metavar="PATH",
        help="per-task success bar plot (PNG); default: next to --json as <name>.png",
    )
    parser.add_argument(
        "--image-size", type=int, help="camera image size in pixels (default: the checkpoint's, else 64)"
    )
    parser.add_argument(
        "--camera", action="append", metavar="NAME", help="camera to render (repeatable; default: the env's)"
    )
    parser.add_argument(
        "--camera-pose",
        metavar="POSE",
        help="Metaworld's corner2 pose (lerobot, dp3, metaworld; default: the checkpoint's training data's)",
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2, one per core)")
    parser.add_argument(
        "--seed-offset", type=int, default=0, help="first eval seed is 1_000_000 + this (default 0)"
    )
    parser.add_argument("--max-steps", type=int, help="episode step limit (default: the env's)")
    parser.add_argument(
        "--n-action-steps",
        type=int,
        metavar="TA",
        help="actions executed from each predicted chunk before predicting again "
        "(default: the checkpoint's; at most horizon - n_obs_steps + 1)",
    )
    add_policy_override(parser, "-o top_k=5 (CARP), -o num_inference_steps=100 (Diffusion Policy)")


def run(args: argparse.Namespace) -> int:
    from visuomotor.eval.rollout import EnvConfig, evaluate, plot_success, write_json
    from visuomotor.sim.registry import check_camera_pose

    views = _policy_and_views(args)
    if args.videos_per_task < 0:
        raise InvalidInputError(f"--videos-per-task must be >= 0, got {args.videos_per_task}")
    videos = args.videos_per_task if args.video else 0
    check_camera_pose(args.env, views.camera_pose)
    cfg = EnvConfig(
        cameras=views.cameras,
        image_size=views.image_size or 64,
        # Reference policies read state only: render just for the videos.
        render=views.needs_images or videos > 0,
        max_episode_steps=args.max_steps,
        camera_pose=views.camera_pose,
    )
    report = evaluate(
        args.env,
        views.spec,
        args.episodes,
        env_cfg=cfg,
        workers=args.workers,
        seed_offset=args.seed_offset,
        video_dir=args.video,
        videos_per_task=videos,
        progress=True,
    )
    print(report.table())
    o = report.overall
    print(
        f"{report.policy} on {report.env}: success {o.success_rate:.1%} "
        f"(95% CI [{o.ci95[0]:.3f}, {o.ci95[1]:.3f}], {o.successes}/{o.episodes} episodes), "
        f"mean inference {o.mean_inference_ms:.2f} ms, {report.wall_s:.1f} s"
    )
    plot_path = args.plot
    if plot_path is None and args.json:
        plot_path = str(Path(args.json).with_suffix(".png"))
    if plot_path is None and args.video:
        plot_path = str(Path(args.video) / "success.png")
    if args.json:
        logger.info("wrote %s", write_json(report, args.json))
    if plot_path:
        logger.info("wrote %s", plot_success(report, plot_path))
    if args.video:
        logger.info("videos in %s", args.video)
    return 0


class _Views(NamedTuple):
    """The policy to evaluate, whether it needs images, and the cameras, image size and pose to render."""

    spec: Any
    needs_images: bool
    cameras: tuple[str, ...] | None
    image_size: int | None
    camera_pose: str | None = None


def _policy_and_views(args: argparse.Namespace) -> _Views:
    """What to evaluate and how to render for it; a checkpoint is checked here, before any worker starts."""
    from visuomotor.eval.policies import PolicySpec

    cameras = tuple(args.camera) if args.camera else None
    overrides, flag = _inference_overrides(args)
    if args.lerobot_checkpoint is not None:
        return _lerobot_views(args, overrides, flag)
    if args.checkpoint is None:
        if overrides:
            raise InvalidInputError(f"{flag} applies to --checkpoint, not to a reference policy")
        return _Views(PolicySpec(name=args.policy), False, cameras, args.image_size, args.camera_pose)
    from visuomotor.policies import inspect_checkpoint

    info = inspect_checkpoint(args.checkpoint, overrides, flag)  # fails here, before any worker starts
    spec = PolicySpec(checkpoint=args.checkpoint, overrides=tuple(overrides.items()))
    # Render what the policy was trained on, unless told otherwise; a state-only policy needs no rendering.
    cameras = cameras or tuple(info.cameras) or None
    image_size = args.image_size or info.image_size
    _check_views(args.checkpoint, info, args.env, cameras, image_size)
    return _Views(spec, bool(info.cameras), cameras, image_size, _trained_pose(args, info))


def _lerobot_views(args: argparse.Namespace, overrides: dict[str, str], flag: str) -> _Views:
    """A LeRobot checkpoint's spec and views: its cameras at its image size (LeRobot's single
    `observation.image` is the first --camera, else the env's default camera), each input and the
    action size checked against every task of --env (one error naming the key)."""
    from visuomotor.eval.lerobot_checkpoint import env_observations, inspect_lerobot_checkpoint, match_inputs
    from visuomotor.eval.policies import PolicySpec
    from visuomotor.keys import image_key
    from visuomotor.sim.registry import expand_env_id, get_spec

    directory = args.lerobot_checkpoint
    ckpt = inspect_lerobot_checkpoint(directory, overrides, flag)
    specs = [get_spec(env_id) for env_id in expand_env_id(args.env)]
    size = ckpt.image_size
    if size is not None and args.image_size is not None and args.image_size != size:
        raise InvalidInputError(
            f"{directory} takes {size}x{size} images; --image-size {args.image_size} renders "
            f"{args.image_size}x{args.image_size}"
        )
    single = args.camera[0] if args.camera else specs[0].default_cameras[0]
    cameras = tuple(args.camera) if args.camera else tuple(ckpt.cameras(single)) or None
    for camera in ckpt.cameras(single):
        if camera not in (cameras or ()):
            raise InvalidInputError(
                f"{directory} sees camera '{camera}', but --camera renders only {list(cameras or ())}"
            )
    for env in specs:
        observations = env_observations(env.state_dim, env.env_state_dim, env.valid_cameras, size)
        match_inputs(ckpt, observations, env.action_dim, env.env_id, image_key(single))
    spec = PolicySpec(lerobot=directory, overrides=tuple(overrides.items()))
    return _Views(spec, bool(ckpt.image_keys), cameras, size or args.image_size, args.camera_pose)


def _trained_pose(args: argparse.Namespace, info: Any) -> str | None:
    """The corner2 pose an image policy was trained from (rendered the same); --camera-pose may only
    repeat it, since another view is another input distribution."""
    trained = info.camera_pose if info.cameras else None
    if args.camera_pose is not None and trained is not None and args.camera_pose != trained:
        raise InvalidInputError(
            f"{args.checkpoint} was trained on images from camera pose {trained!r}; "
            f"--camera-pose {args.camera_pose} renders another view"
        )
    return args.camera_pose or trained


def _inference_overrides(args: argparse.Namespace) -> tuple[dict[str, str], str]:
    """The checkpoint's inference-time changes, `--n-action-steps TA` being `-o n_action_steps=TA`, and
    the option(s) they came from (for error messages)."""
    from visuomotor.configs import parse_overrides

    overrides = parse_overrides(args.policy_override)
    flags = ["-o/--policy-override"] if overrides else []
    if args.n_action_steps is not None:
        if "n_action_steps" in overrides:
            raise InvalidInputError("give n_action_steps once: --n-action-steps or -o n_action_steps=...")
        overrides["n_action_steps"] = str(args.n_action_steps)
        flags.append("--n-action-steps")
    return overrides, "/".join(flags) or "-o"


def _check_views(
    checkpoint: str, info: Any, env: str, cameras: tuple[str, ...] | None, size: int | None
) -> None:
    """An image policy gets the cameras it was trained on, at its image size, from every env it runs in;
    otherwise one error naming the camera key and both sizes, before any worker starts."""
    from visuomotor.keys import image_key
    from visuomotor.sim.registry import expand_env_id, get_spec

    for camera in info.cameras:
        key = image_key(camera)
        if camera not in (cameras or ()):
            raise InvalidInputError(
                f"{checkpoint} sees '{key}', but --camera renders only {list(cameras or ())}"
            )
        for env_id in expand_env_id(env):
            if camera not in get_spec(env_id).valid_cameras:
                raise InvalidInputError(f"{checkpoint} sees '{key}', which {env_id} does not have")
        trained = info.config.input_shapes[key][:2]
        if size is not None and [size, size] != list(trained):
            raise InvalidInputError(
                f"{checkpoint} was trained on {trained[0]}x{trained[1]} '{key}' images; --image-size {size} "
                f"renders {size}x{size}"
            )
