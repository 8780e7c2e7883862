"""PAD (predict future frames and actions with one diffusion transformer). Its config imports without
torch; the policy class is imported on first use."""

from typing import Any

from visuomotor.policies.pad.config import PRESETS, PadConfig

__all__ = ["PRESETS", "PadConfig", "PadPolicy"]


def __getattr__(name: str) -> Any:
    if name == "PadPolicy":
        from visuomotor.policies.pad.policy import PadPolicy

        return PadPolicy
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
