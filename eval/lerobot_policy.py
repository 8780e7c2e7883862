"""A LeRobot-trained policy behind our rollout interface (`reset`, `select_action`), through LeRobot's
own API, so one evaluator compares both toolkits on the same seeds (architecture.md §Evaluation).

Built in each rollout worker by `eval.policies.build_policy`. Loading: the directory is checked first
(`eval/lerobot_checkpoint.py`: JSON and safetensors only, registered processor steps only), then
LeRobot reads it: `PreTrainedConfig.from_pretrained` (draccus, with inference-time overrides as its
command-line arguments, so LeRobot's own validation applies), the policy class's `from_pretrained`
(strict: every weight must be in `model.safetensors`) and `make_pre_post_processors` (normalisation
statistics from the processors' safetensors state files).

Acting mirrors LeRobot's `lerobot_eval.py`: env observation -> LeRobot batch (images uint8 (B, H, W, 3)
-> float (B, 3, H, W) in [0, 1], low-dim as float32, the task text) -> preprocessor -> policy.select_action
-> postprocessor -> (B, action_dim). LeRobot keeps the observation queue and action chunk inside the
policy, as ours do, so `reset` per episode is all the runner needs.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

from visuomotor.errors import InvalidInputError
from visuomotor.eval.lerobot_checkpoint import PROCESSOR_FILES, inspect_lerobot_checkpoint, match_inputs
from visuomotor.keys import image_key


class LeRobotPolicy:
    """A loaded LeRobot policy with its processors and the env key that feeds each of its inputs."""

    def __init__(self, policy: Any, preprocessor: Any, postprocessor: Any, sources: dict[str, str]) -> None:
        self.policy = policy
        self.preprocessor = preprocessor
        self.postprocessor = postprocessor
        self.sources = sources
        """LeRobot input key -> our observation key."""

    def reset(self) -> None:
        self.policy.reset()
        self.preprocessor.reset()
        self.postprocessor.reset()

    def select_action(self, obs: dict[str, Any]) -> Any:
        action = self.policy.select_action(self.preprocessor(to_lerobot_batch(obs, self.sources)))
        return self.postprocessor(action)


def to_lerobot_batch(obs: dict[str, Any], sources: dict[str, str]) -> dict[str, Any]:
    """Our batched observation (B=1 torch tensors, images uint8 HWC) -> LeRobot's policy batch."""
    import torch

    from visuomotor.datasets.images import to_float_chw

    batch: dict[str, Any] = {"task": list(obs.get("task") or [""])}
    for key, source in sources.items():
        x = torch.as_tensor(obs[source])
        batch[key] = to_float_chw(x) if x.dtype == torch.uint8 else x.float()
    return batch


def load_lerobot_policy(directory: str, env: Any, overrides: dict[str, str]) -> LeRobotPolicy:
    """Check the checkpoint against `env` (its observation space, rendered cameras and action space),
    then load it on the CPU in eval mode."""
    ckpt = inspect_lerobot_checkpoint(directory, overrides)
    observations = {k: tuple(space.shape) for k, space in env.observation_space.spaces.items()}
    cameras = getattr(env, "camera_names", ())
    single = image_key(cameras[0]) if cameras else None
    sources = match_inputs(ckpt, observations, int(env.action_space.shape[0]), env.env_id, single)
    config = _load_config(ckpt.directory, overrides)
    return LeRobotPolicy(*_load_policy_and_processors(ckpt.directory, config), sources)


def _load_config(directory: Path, overrides: dict[str, str]) -> Any:
    """LeRobot's config with overrides applied by draccus (so LeRobot's own checks run)."""
    import lerobot.policies  # noqa: F401  (registers the policy config types draccus resolves)
    from draccus.utils import DraccusException
    from lerobot.configs.policies import PreTrainedConfig

    args = [f"--{k}={v}" for k, v in overrides.items()] + ["--device=cpu"]
    try:
        config = PreTrainedConfig.from_pretrained(directory, cli_overrides=args, local_files_only=True)
    except (DraccusException, ValueError, NotImplementedError) as exc:
        # draccus wraps the config's own ValueError (ACT: n_action_steps > chunk_size; NotImplementedError
        # for temporal ensembling with n_action_steps > 1): report the innermost reason.
        cause: BaseException = exc
        while cause.__cause__ is not None:
            cause = cause.__cause__
        where = f" with {', '.join(f'{k}={v}' for k, v in overrides.items())}" if overrides else ""
        raise InvalidInputError(f"{directory / 'config.json'}{where}: {cause}") from exc
    # Backbone weights from torchvision would be downloaded (and unpickled) only to be overwritten by
    # the checkpoint's own weights: build the backbone empty instead.
    if hasattr(config, "pretrained_backbone_weights"):
        config.pretrained_backbone_weights = None
    return config


def _load_policy_and_processors(directory: Path, config: Any) -> tuple[Any, Any, Any]:
    from lerobot.policies.factory import get_policy_class, make_pre_post_processors

    policy_cls = get_policy_class(config.type)
    with contextlib.redirect_stdout(io.StringIO()):  # it prints "Loading weights from local directory"
        try:
            policy = policy_cls.from_pretrained(directory, config=config, strict=True, local_files_only=True)
        except RuntimeError as exc:  # missing or unexpected weights, wrong shapes
            raise InvalidInputError(
                f"{directory / 'model.safetensors'} does not match config.json: {exc}"
            ) from exc
    pre, post = PROCESSOR_FILES
    preprocessor, postprocessor = make_pre_post_processors(
        config,
        pretrained_path=str(directory),
        preprocessor_config_filename=pre,
        postprocessor_config_filename=post,
        preprocessor_overrides=_cpu_overrides(directory / pre),
        postprocessor_overrides=_cpu_overrides(directory / post),
    )
    return policy.eval(), preprocessor, postprocessor


def _cpu_overrides(path: Path) -> dict[str, Any]:
    """Run a pipeline's device step on the CPU, as LeRobot's eval does for its device (an override for
    a step the pipeline lacks would be an error, so only when there is one)."""
    import json

    steps = json.loads(path.read_text())["steps"]
    has_device = any(s.get("registry_name") == "device_processor" for s in steps)
    return {"device_processor": {"device": "cpu"}} if has_device else {}
