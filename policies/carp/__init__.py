"""The carp policy. Its config imports without torch; the policy class is imported on first use, so
reading a checkpoint's config (the CLI's parent process) stays fast."""

from typing import Any

from visuomotor.policies.carp.config import PRESETS, CarpConfig

__all__ = ["PRESETS", "CarpConfig", "CarpPolicy"]


def __getattr__(name: str) -> Any:
    if name == "CarpPolicy":
        from visuomotor.policies.carp.policy import CarpPolicy

        return CarpPolicy
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
