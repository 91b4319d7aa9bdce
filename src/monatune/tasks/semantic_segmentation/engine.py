"""Engine wiring of the semantic segmentation task (see monatune.engine.run.TASKS)."""

from monatune.engine.config import ExperimentConfig
from monatune.tasks.semantic_segmentation.data import SemanticSegmentationData
from monatune.tasks.semantic_segmentation.module import SemanticSegmentationModule, build_segmenter


def builders():
    """(cfg -> LightningModule, cfg -> LightningDataModule)."""

    def build_module(cfg: ExperimentConfig) -> SemanticSegmentationModule:
        return SemanticSegmentationModule(build_segmenter(cfg), cfg)

    return build_module, SemanticSegmentationData
