"""The Policy interface every policy implements (architecture.md §Conventions), with the parts they
all share: normalisation, observation preprocessing, the observation history / action queue of
`select_action`, and checkpoints as `config.json` + `model.safetensors` (no pickle anywhere).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from huggingface_hub import ModelHubMixin
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import Tensor, nn

from visuomotor.configs import to_dict
from visuomotor.datasets.images import to_float_chw
from visuomotor.datasets.normalize import Normalizer
from visuomotor.errors import InvalidInputError, MissingKeyError
from visuomotor.policies.common.config import PolicyConfig
from visuomotor.policies.common.differences import DIFFERENCES_KEY, difference_stats, state_differences
from visuomotor.policies.common.ensembling import TemporalEnsemble
from visuomotor.policies.common.mixup import mix_with_nearest
from visuomotor.policies.common.saved import (
    CHECKPOINT_FORMAT,
    CONFIG_NAME,
    WEIGHTS_NAME,
    CheckpointInfo,
    file_sha256,
    inspect_checkpoint,
    verify_weights,
)


@dataclass(frozen=True)
class TrainStage:
    """One phase of a run: which submodules learn, for how many steps, with which optimiser settings.
    Fields left None take the run's TrainConfig value. Most policies train in one stage; CARP in two."""

    name: str
    steps: int
    modules: tuple[str, ...] = ()
    """Names of the submodules whose parameters this stage optimises; () = all parameters."""
    lr: float | None = None
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float | None = None
    warmup_steps: int | None = None
    batch_size: int | None = None


class Policy(nn.Module, ModelHubMixin, ABC):
    """Base class. Subclasses set `name` and `config_class` and implement `compute_loss` and
    `predict_action_chunk`; everything else here is shared.

    `save_pretrained` / `from_pretrained` are ours (config.json + model.safetensors, the layout LeRobot
    uses on the Hugging Face Hub); `push_to_hub(repo_id)` comes from huggingface_hub's mixin and uploads
    what `save_pretrained` writes.
    """

    name: ClassVar[str]
    config_class: ClassVar[type[PolicyConfig]]

    def __init__(self, config: PolicyConfig, stats: dict[str, Any] | None = None) -> None:
        super().__init__()
        config.validate_inputs()
        self.config = config
        self.dataset: dict[str, Any] = {}
        """Facts of the training data a deployment must match (fps, env id, action space and semantics,
        cameras); saved in the checkpoint's config.json (`dataset_facts`)."""
        modes = {k: config.state_norm for k in config.state_keys}
        modes |= {k: config.image_norm for k in config.image_keys}
        modes["action"] = config.action_norm
        shapes = {k: tuple(config.input_shapes[k]) for k in config.state_keys}
        shapes |= {k: (config.input_shapes[k][-1],) for k in config.image_keys}  # per channel
        shapes["action"] = (config.action_dim,)
        if config.aux_target_key:
            modes[config.aux_target_key] = config.state_norm
            shapes[config.aux_target_key] = tuple(config.input_shapes[config.aux_target_key])
        if config.state_differences:
            modes[DIFFERENCES_KEY] = config.state_norm
            shapes[DIFFERENCES_KEY] = (config.differences_dim,)
            if stats is not None:
                stats = {
                    **stats,
                    DIFFERENCES_KEY: difference_stats(stats, config.state_keys, config.state_differences),
                }
        self.normalizer = (
            Normalizer.from_stats(stats, modes) if stats is not None else Normalizer(modes, shapes)
        )
        self._task_index = {t: i for i, t in enumerate(config.tasks)}
        self.reset()

    # ------------------------------------------------------------------ to implement
    @abstractmethod
    def compute_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """Training loss of a batch of windows (key -> (B, K, ...)) and scalars to log."""

    @abstractmethod
    def predict_action_chunk(self, obs: dict[str, Any]) -> Tensor:
        """(B, horizon, action_dim) unnormalised actions from observations (key -> (B, To, ...))."""

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """`compute_loss`, as `forward` so DistributedDataParallel can wrap the policy."""
        return self.compute_loss(batch)

    # ------------------------------------------------------------------ training stages
    def training_stages(self, total_steps: int) -> list[TrainStage]:
        """The phases of a run of `total_steps` steps (a pure function of the config: resume relies on it)."""
        return [TrainStage("policy", total_steps)]

    def set_stage(self, name: str) -> None:
        """Called by the training loop when a stage starts; `compute_loss` then trains that stage."""

    def prepare_training(self) -> None:
        """Called once at the start of a new run, after the normaliser is set from the store."""

    # ------------------------------------------------------------------ shared preprocessing
    def task_indices(self, obs: dict[str, Any], batch_size: int) -> Tensor | None:
        """Task index per sample from `task_index` (training batches) or `task` strings (rollouts)."""
        if not self.config.use_tasks:
            return None
        if "task_index" in obs:
            return torch.as_tensor(obs["task_index"], dtype=torch.long, device=self.device)
        tasks = obs.get("task")
        if tasks is None:
            raise InvalidInputError(
                f"this policy is conditioned on {len(self.config.tasks)} tasks: pass obs['task']"
            )
        tasks = [tasks] * batch_size if isinstance(tasks, str) else list(tasks)
        unknown = [t for t in tasks if t not in self._task_index]
        if unknown:
            raise InvalidInputError(f"unknown task {unknown[0]!r}; this policy knows {self.config.tasks}")
        return torch.tensor([self._task_index[t] for t in tasks], dtype=torch.long, device=self.device)

    def prepare_obs(self, obs: dict[str, Any]) -> dict[str, Tensor]:
        """Raw observations (B, To, ...) -> normalised float tensors; images become (B, To, C, H, W)."""
        out: dict[str, Tensor] = {}
        raw_state: list[Tensor] = []
        for key in self.config.input_keys:
            if key not in obs:
                raise MissingKeyError(
                    f"observation is missing '{key}'; this policy needs {list(self.config.input_keys)}"
                )
            x = torch.as_tensor(obs[key], device=self.device)
            frame = list(self.config.input_shapes[key])
            if list(x.shape[-len(frame) :]) != frame:
                raise InvalidInputError(
                    f"observation '{key}' has shape {list(x.shape)}; this policy expects frames of shape {frame}"
                )
            if key in self.config.image_keys:
                x = to_float_chw(x)
            if key in self.config.state_keys:
                raw_state.append(x.float().flatten(2))  # (B, To, Dk), before normalisation
            out[key] = self.normalizer.normalize_key(key, x.float())
        if self.config.state_differences:
            raw = torch.cat(raw_state, dim=-1)  # differences are taken in the state's own units
            diffs = state_differences(raw, self.config.state_differences)
            out[DIFFERENCES_KEY] = self.normalizer.normalize_key(DIFFERENCES_KEY, diffs)
        return out

    def current_state(self, windows: Mapping[str, Any]) -> Tensor:
        """The normalised low-dim state of each window's current step (B, D), state keys concatenated:
        the space in which mixup finds a window's nearest neighbour."""
        now = self.config.n_obs_steps - 1
        return torch.cat(
            [
                self.normalizer.normalize_key(k, torch.as_tensor(windows[k][:, now]).float()).flatten(1)
                for k in self.config.state_keys
            ],
            1,
        )

    def mix_demonstrations(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """While training with `config.mixup` > 0, the batch with each window mixed with a nearby window
        of another demonstration (`policies/common/mixup.py`); otherwise the batch itself."""
        c = self.config
        if not self.training or c.mixup == 0:
            return batch
        return mix_with_nearest(batch, self.current_state(batch), (*c.state_keys, "action"), c.mixup)

    def condition(self, obs: dict[str, Any]) -> Tensor:
        """Global conditioning (B, G) from the first To frames of `obs`, through `self.encoder`
        (an ObsEncoder, which every policy of this package has)."""
        return self._encode(obs)[0]

    def condition_for_training(self, batch: dict[str, Any]) -> tuple[Tensor, Tensor | None]:
        """`condition` of a training batch, and with `aux_target_key` the auxiliary loss: the squared error
        of the encoder's linear prediction of that key's normalised value at the current frame, from the
        current frame's camera features (None without a target)."""
        cond, images = self._encode(batch)
        key = self.config.aux_target_key
        if key is None or images is None:
            return cond, None
        raw = torch.as_tensor(batch[key][:, self.config.n_obs_steps - 1], device=self.device).float()
        target = self.normalizer.normalize_key(key, raw).flatten(1)
        return cond, F.mse_loss(self.encoder.aux_head(images[:, -1]), target)

    def with_aux_loss(
        self, loss: Tensor, aux_loss: Tensor | None, name: str
    ) -> tuple[Tensor, dict[str, float]]:
        """The policy's own training `loss` plus `aux_loss_weight` x the auxiliary loss (when there is one),
        and the scalars to log: the total as `loss`; with a target also the own loss as `name` and
        `aux_loss`."""
        if aux_loss is None:
            return loss, {"loss": loss.item()}
        total = loss + self.config.aux_loss_weight * aux_loss
        return total, {name: loss.item(), "aux_loss": aux_loss.item(), "loss": total.item()}

    def _encode(self, obs: dict[str, Any]) -> tuple[Tensor, Tensor | None]:
        B = obs[self.config.input_keys[0]].shape[0]
        To = self.config.n_obs_steps
        window = {k: obs[k][:, :To] for k in self.config.input_keys}  # the first To frames are observations
        return self.encoder.encode(self.prepare_obs(window), self.task_indices(obs, B))

    def policy_view(self, obs: Mapping[str, Any]) -> Any:
        """The images of one env observation as this policy sees them at inference, side by side (the
        centre crop of each camera, padded back to its frame size with grey); None without a crop."""
        if not self.config.image_keys or self.config.crop_ratio >= 1.0:
            return None
        views = []
        for key in self.config.image_keys:
            img = np.asarray(obs[key])
            H, W = img.shape[:2]
            h, w = self.encoder.crop_size(key)
            top, left = (H - h) // 2, (W - w) // 2
            view = np.full_like(img, 128)
            view[top : top + h, left : left + w] = img[top : top + h, left : left + w]
            views.append(view)
        return np.concatenate(views, axis=1)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # ------------------------------------------------------------------ acting
    def reset(self) -> None:
        """Clear the observation history and the action queue (call at every episode start). With temporal
        ensembling, the ensemble of recent chunks replaces the queue."""
        self._obs_history: deque[dict[str, Any]] = deque(maxlen=self.config.n_obs_steps)
        self._action_queue: deque[Tensor] = deque()
        m = self.config.temporal_ensemble
        self._ensemble = TemporalEnsemble(float(m)) if m is not None else None

    def executed_actions(self, chunk: Tensor) -> Tensor:
        """The part of a predicted chunk that is executed: Ta actions from the current step, which is
        index To-1 because the chunk starts at the first observation (Diffusion Policy)."""
        start = self.config.n_obs_steps - 1
        return chunk[:, start : start + self.config.n_action_steps]

    @torch.inference_mode()
    def chunk_from_window(self, window: Mapping[str, np.ndarray], task: str | None) -> np.ndarray:
        """Actions (n, action_dim) float32 from the newest frame on, for one observation window (key ->
        (To, ...), oldest first): what the deploy runtime and the policy server schedule."""
        batch: dict[str, Any] = {
            k: torch.from_numpy(np.ascontiguousarray(v))[None] for k, v in window.items()
        }
        if task is not None:
            batch["task"] = [task]
        chunk = self.predict_action_chunk(batch)  # (1, H, A), starting at the oldest frame
        return chunk[0, self.config.n_obs_steps - 1 :].float().cpu().numpy().astype(np.float32)

    @torch.no_grad()
    def select_action(self, obs: dict[str, Any]) -> Tensor:
        """One action (B, action_dim) from one step of observations (key -> (B, ...))."""
        step = {k: torch.as_tensor(obs[k]) for k in self.config.input_keys if k in obs}
        missing = [k for k in self.config.input_keys if k not in step]
        if missing:
            raise MissingKeyError(
                f"observation is missing {missing}; this policy needs {list(self.config.input_keys)}"
            )
        if not self._obs_history:  # first step of an episode: repeat it to fill the history
            self._obs_history.extend([step] * self.config.n_obs_steps)
        else:
            self._obs_history.append(step)
        if self._ensemble is not None:
            return self._ensemble.action(self.executed_actions(self._predict_from_history(obs, step)))
        if not self._action_queue:
            chunk = self.executed_actions(self._predict_from_history(obs, step))  # (B, Ta, A)
            self._action_queue.extend(chunk.transpose(0, 1))
        return self._action_queue.popleft()

    def _predict_from_history(self, obs: dict[str, Any], step: dict[str, Tensor]) -> Tensor:
        """A chunk (B, H, A) predicted from the observation history, with this step's task fields."""
        stacked: dict[str, Any] = {
            k: torch.stack([h[k] for h in self._obs_history], dim=1) for k in step
        }  # (B, To, ...)
        for key in ("task", "task_index"):
            if key in obs:
                stacked[key] = obs[key]
        return self.predict_action_chunk(stacked)

    # ------------------------------------------------------------------ checkpoints
    def save_pretrained(self, directory: str | Path, **_hub_kwargs: Any) -> Path:  # type: ignore[override]
        """Write `config.json` and `model.safetensors` (normalisation statistics included). Extra
        keyword arguments come from `push_to_hub` and are not needed: the config is ours."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_model(self, str(directory / WEIGHTS_NAME))
        meta = {
            "policy": self.name,
            "format": CHECKPOINT_FORMAT,
            "config": to_dict(self.config),
            "weights_sha256": file_sha256(directory / WEIGHTS_NAME),  # verified on load
            "dataset": self.dataset,
        }
        (directory / CONFIG_NAME).write_text(json.dumps(meta, indent=2))
        return directory

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls, directory: str | Path, device: str | None = None, overrides: Mapping[str, str] | None = None
    ) -> Policy:
        """Load a checkpoint directory written by `save_pretrained` of this policy class, optionally with
        some inference-time fields changed (`PolicyConfig.INFERENCE_FIELDS`, e.g. n_action_steps)."""
        info = inspect_checkpoint(directory, overrides)
        if info.policy != cls.name:
            raise InvalidInputError(f"{info.directory} holds a '{info.policy}' policy, not '{cls.name}'")
        return cls.from_checkpoint(info, device)

    @classmethod
    def from_checkpoint(cls, info: CheckpointInfo, device: str | None = None) -> Policy:
        """The policy `inspect_checkpoint` described, with its weights, in eval mode."""
        verify_weights(info)
        config = info.config
        if device:
            config.device = device
        try:
            policy = cls(config)
        except (RuntimeError, ValueError, ZeroDivisionError, IndexError, OverflowError, MemoryError) as exc:
            # Values of the right type that no network can be built from (a damaged or hand-edited file).
            raise InvalidInputError(
                f"{info.directory / 'config.json'}: cannot build the policy: {exc}"
            ) from exc
        policy.dataset = dict(info.dataset)
        try:
            load_model(policy, str(info.weights), strict=True)
        except (RuntimeError, KeyError) as exc:
            raise InvalidInputError(f"{info.weights} does not match the config: {exc}") from exc
        except SafetensorError as exc:  # truncated or overwritten file
            raise InvalidInputError(f"{info.weights}: not a readable safetensors file ({exc})") from exc
        return policy.to(config.device).eval()
