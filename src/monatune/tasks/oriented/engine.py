"""Engine wiring of the oriented detection task (see monatune.engine.run.TASKS)."""

from monatune.engine.config import ExperimentConfig
from monatune.tasks.oriented.datamodule import OrientedData, oriented_class_names
from monatune.tasks.oriented.module import OrientedModule, build_oriented


def builders():
    """(cfg -> LightningModule, cfg -> LightningDataModule)."""

    def build_module(cfg: ExperimentConfig) -> OrientedModule:
        return OrientedModule(build_oriented(cfg), cfg, oriented_class_names(cfg))

    return build_module, OrientedData
