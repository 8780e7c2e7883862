"""Observation encoders shared by every policy: images, low-dim state, task text -> one feature vector.

Images go through one encoder per camera (Diffusion Policy keeps separate encoders per camera): a small
GroupNorm CNN for the `cpu` presets or a timm model (ResNet-18 with GroupNorm for `paper`, DP §3.2;
trained from scratch here since no weights can be downloaded). While training, a random crop (DP) and
optionally a random shift (DrQ) augment them; at inference the crop is the centre one. Low-dim state is
passed through as is (DP concatenates it to the image features), with the configured state differences
(`differences.py`) beside it. A learned embedding of the task index conditions multi-task policies.
"""

from __future__ import annotations

import itertools
import math

import torch
from einops import rearrange
from torch import Tensor, nn

from visuomotor.datasets.images import center_crop, random_crop, random_shift
from visuomotor.errors import InvalidInputError
from visuomotor.policies.common.config import PolicyConfig
from visuomotor.policies.common.differences import DIFFERENCES_KEY


class _GroupNorm(nn.GroupNorm):
    """GroupNorm with 16 channels per group, in the (channels, **kwargs) form timm's norm_layer expects."""

    def __init__(self, num_channels: int, **kwargs) -> None:
        super().__init__(max(1, num_channels // 16), num_channels, **kwargs)


class SpatialSoftmax(nn.Module):
    """Expected 2-D keypoint per channel (Levine et al. 2016; DP's robomimic encoder uses it)."""

    def forward(self, x: Tensor) -> Tensor:
        _B, _C, H, W = x.shape
        attn = x.flatten(2).softmax(-1)  # (B, C, H*W)
        ys = torch.linspace(-1, 1, H, device=x.device).repeat_interleave(W)
        xs = torch.linspace(-1, 1, W, device=x.device).repeat(H)
        return torch.cat([(attn * xs).sum(-1), (attn * ys).sum(-1)], dim=-1)  # (B, 2C)


class SmallCNN(nn.Module):
    """Four conv blocks with GroupNorm and ReLU, spatial-softmax keypoints, a linear head.

    Sized for the `cpu` presets: the first conv already has stride 2, and ReLU rather than Mish,
    because on a CPU the full-resolution layers dominate (measured here: Mish forward + backward took
    a third of a step, the stride-1 first conv most of the rest).
    """

    def __init__(self, out_dim: int, width: int = 32) -> None:
        super().__init__()
        chans = [3, width, width * 2, width * 2, width * 4]
        strides = [2, 2, 1, 2]
        layers: list[nn.Module] = []
        for (cin, cout), stride in zip(itertools.pairwise(chans), strides, strict=True):
            layers += [
                nn.Conv2d(cin, cout, 3, stride=stride, padding=1),
                _GroupNorm(cout),
                nn.ReLU(inplace=True),
            ]
        self.net = nn.Sequential(*layers)
        self.pool = SpatialSoftmax()
        self.head = nn.Linear(2 * chans[-1], out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.pool(self.net(x)))  # (B, out_dim)


def make_backbone(name: str, out_dim: int, cnn_width: int = 32) -> nn.Module:
    if name == "small_cnn":
        return SmallCNN(out_dim, cnn_width)
    import timm

    try:
        trunk = timm.create_model(name, pretrained=False, num_classes=0, norm_layer=_GroupNorm)
    except TypeError:  # models without a norm_layer argument keep their own normalisation
        trunk = timm.create_model(name, pretrained=False, num_classes=0)
    except RuntimeError as exc:
        raise InvalidInputError(f"unknown vision backbone {name!r}: {exc}") from exc
    return nn.Sequential(trunk, nn.Linear(trunk.num_features, out_dim))


class ObsEncoder(nn.Module):
    """Normalised observations (B, To, ...) and task indices (B,) -> global conditioning (B, out_dim)."""

    def __init__(self, config: PolicyConfig) -> None:
        super().__init__()
        config.validate_inputs()
        self.config = config
        self.cameras = nn.ModuleDict(
            {
                key.replace(".", "_"): make_backbone(
                    config.vision_backbone, config.vision_feature_dim, config.cnn_width
                )
                for key in config.image_keys
            }
        )
        kept = config.state_dim if config.state_dims is None else len(config.state_dims)
        self.state_dim = kept + config.differences_dim
        self.task_embedding = (
            nn.Embedding(len(config.tasks), config.task_embed_dim) if config.use_tasks else None
        )
        image_dim = len(config.image_keys) * config.vision_feature_dim
        aux = config.aux_target_key
        self.aux_head = nn.Linear(image_dim, math.prod(config.input_shapes[aux])) if aux else None
        """Predicts the auxiliary target from one frame's camera features (training only)."""
        per_step = self.state_dim + image_dim
        self.out_dim = per_step * config.n_obs_steps + (config.task_embed_dim if config.use_tasks else 0)

    def crop_size(self, key: str) -> tuple[int, int]:
        H, W = self.config.input_shapes[key][:2]
        r = self.config.crop_ratio
        return max(1, round(H * r)), max(1, round(W * r))

    def forward(self, obs: dict[str, Tensor], task_index: Tensor | None = None) -> Tensor:
        return self.encode(obs, task_index)[0]

    def encode(
        self, obs: dict[str, Tensor], task_index: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """The conditioning (B, out_dim) and the camera features (B, To, cameras * D), None without cameras."""
        B, To = obs[self.config.input_keys[0]].shape[:2]
        feats: list[Tensor] = []
        for key in self.config.image_keys:
            img = obs[key]  # (B, To, C, H, W), normalised
            if self.config.crop_ratio < 1.0:
                size = self.crop_size(key)
                img = random_crop(img, size) if self.training else center_crop(img, size)
            if self.training and self.config.shift_pad:
                img = random_shift(img, self.config.shift_pad)
            f = self.cameras[key.replace(".", "_")](rearrange(img, "b t c h w -> (b t) c h w"))
            feats.append(rearrange(f, "(b t) d -> b t d", b=B))  # (B, To, D)
        images = torch.cat(feats, dim=-1) if feats else None
        if self.config.state_keys:
            state = torch.cat(
                [obs[k].reshape(B, To, -1) for k in self.config.state_keys], dim=-1
            )  # (B, To, D)
            if self.config.state_dims is not None:
                state = state[..., list(self.config.state_dims)]
            if self.config.state_differences:
                state = torch.cat([state, obs[DIFFERENCES_KEY].reshape(B, To, -1)], dim=-1)
            if self.training and self.config.state_noise > 0:
                state = state + self.config.state_noise * torch.randn_like(state)
            feats.append(state)
        cond = torch.cat(feats, dim=-1).reshape(B, -1)  # (B, To * per_step)
        if self.task_embedding is not None:
            if task_index is None:
                raise InvalidInputError("this policy is task-conditioned: observations need a 'task'")
            cond = torch.cat([cond, self.task_embedding(task_index)], dim=-1)  # (B, out_dim)
        return cond, images
