"""Engine wiring of the instance segmentation task (see monatune.engine.run.TASKS)."""

from monatune.engine.config import ExperimentConfig
from monatune.tasks.instance_segmentation.data import InstanceSegmentationData
from monatune.tasks.instance_segmentation.module import InstanceSegmentationModule, build_instance_segmenter


def builders():
    """(cfg -> LightningModule, cfg -> LightningDataModule)."""

    def build_module(cfg: ExperimentConfig) -> InstanceSegmentationModule:
        return InstanceSegmentationModule(build_instance_segmenter(cfg), cfg)

    return build_module, InstanceSegmentationData
