"""The EXPO policy (architecture.md §EXPO). Its configs import without torch; the policy class is imported
on first use, so reading a checkpoint's config (the CLI's parent process) stays fast. The online learner
is `visuomotor.policies.expo.learner`."""

from typing import Any

from visuomotor.policies.expo.config import ONLINE_PRESETS, PRESETS, ExpoConfig, OnlineConfig

__all__ = ["ONLINE_PRESETS", "PRESETS", "ExpoConfig", "ExpoPolicy", "OnlineConfig"]


def __getattr__(name: str) -> Any:
    if name == "ExpoPolicy":
        from visuomotor.policies.expo.policy import ExpoPolicy

        return ExpoPolicy
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
