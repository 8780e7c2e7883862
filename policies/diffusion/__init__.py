"""The diffusion policy. Its config imports without torch; the policy class is imported on first use, so
reading a checkpoint's config (the CLI's parent process) stays fast."""

from typing import Any

from visuomotor.policies.diffusion.config import PRESETS, DiffusionConfig

__all__ = ["PRESETS", "DiffusionConfig", "DiffusionPolicy"]


def __getattr__(name: str) -> Any:
    if name == "DiffusionPolicy":
        from visuomotor.policies.diffusion.policy import DiffusionPolicy

        return DiffusionPolicy
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
