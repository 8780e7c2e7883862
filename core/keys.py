"""The observation and action key names every part shares (LeRobot's; architecture.md §Conventions).

A leaf module: it imports nothing, so any package may use it."""

from __future__ import annotations

STATE = "observation.state"
"""Proprioception, float32."""
ENVIRONMENT_STATE = "observation.environment_state"
"""Privileged simulator state (object and goal positions), float32."""
IMAGE_PREFIX = "observation.images."
"""Camera images are `observation.images.<camera>`, uint8 (H, W, C)."""
ACTION = "action"


def image_key(camera: str) -> str:
    """The key of a camera's images; a key that already is one is returned as is."""
    return camera if camera.startswith(IMAGE_PREFIX) else IMAGE_PREFIX + camera


def camera_of(key: str) -> str:
    """The camera name of an image key."""
    if not key.startswith(IMAGE_PREFIX):
        raise ValueError(f"{key!r} is not an image key ({IMAGE_PREFIX}<camera>)")
    return key[len(IMAGE_PREFIX) :]
