"""The named dense layer: what detection, instance segmentation, semantic segmentation and oriented
detection share (builder, data module, FPN, detector module base). Each task folder keeps only its
heads and what is its own."""

from monatune.tasks.dense.build import build_dense_model, builder_options, dense_backbone, input_stats, tune_dense_model
from monatune.tasks.dense.data import DenseDataModule, list_collate
from monatune.tasks.dense.fpn import ExtraConvsOnInput, SwinFPN, fpn_strides
from monatune.tasks.dense.module import DetectorModule, gather_objects

__all__ = [
    "DenseDataModule",
    "DetectorModule",
    "ExtraConvsOnInput",
    "SwinFPN",
    "build_dense_model",
    "builder_options",
    "dense_backbone",
    "fpn_strides",
    "gather_objects",
    "input_stats",
    "list_collate",
    "tune_dense_model",
]
