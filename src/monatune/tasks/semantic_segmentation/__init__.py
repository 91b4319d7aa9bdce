"""Semantic segmentation models on a DenseSwin: UperNet + auxiliary FCN head (SPEC §5, ADE20K)."""

from monatune.tasks.semantic_segmentation.decode_heads import FCNHead, PyramidPoolingModule, UperHead
from monatune.tasks.semantic_segmentation.upernet import UperNet, build_upernet

__all__ = ["FCNHead", "PyramidPoolingModule", "UperHead", "UperNet", "build_upernet"]
