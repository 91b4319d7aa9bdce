"""Image classification: a Swin with a linear head on pooled features (the paper's classification setting)."""

from monatune.tasks.classification.module import ClassificationModule, build_classifier

__all__ = ["ClassificationModule", "build_classifier"]
