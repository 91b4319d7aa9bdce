"""Engine wiring of the classification task (see monatune.engine.run.TASKS)."""

from monatune.engine.config import ExperimentConfig
from monatune.tasks.classification.data import ClassificationData
from monatune.tasks.classification.module import ClassificationModule, build_classifier


def builders():
    """(cfg -> LightningModule, cfg -> LightningDataModule)."""

    def build_module(cfg: ExperimentConfig) -> ClassificationModule:
        return ClassificationModule(build_classifier(cfg), cfg)

    return build_module, ClassificationData
