"""visuomotor: train, evaluate and deploy visuomotor robot policies."""

__version__ = "0.1.0"
