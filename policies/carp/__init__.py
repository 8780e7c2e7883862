from visuomotor.policies.carp.config import PRESETS, CarpConfig
from visuomotor.policies.carp.policy import CarpPolicy

__all__ = ["PRESETS", "CarpConfig", "CarpPolicy"]
