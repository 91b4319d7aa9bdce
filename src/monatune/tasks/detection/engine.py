"""Engine wiring of the detection task (see monatune.engine.run.TASKS)."""

from monatune.engine.config import ExperimentConfig
from monatune.tasks.detection.data import DetectionData, detection_class_names
from monatune.tasks.detection.module import DetectionModule, build_detector


def builders():
    """(cfg -> LightningModule, cfg -> LightningDataModule)."""

    def build_module(cfg: ExperimentConfig) -> DetectionModule:
        return DetectionModule(build_detector(cfg), cfg, detection_class_names(cfg))

    return build_module, DetectionData
