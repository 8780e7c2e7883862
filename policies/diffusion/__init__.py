from visuomotor.policies.diffusion.config import PRESETS, DiffusionConfig
from visuomotor.policies.diffusion.policy import DiffusionPolicy

__all__ = ["PRESETS", "DiffusionConfig", "DiffusionPolicy"]
