"""Aligned RoIAlign for the R-CNN heads (SPEC §8.8): the FPN pooler and the mask targets as mmdet 2.x builds them.

torchvision's ``MultiScaleRoIAlign`` has no ``aligned`` flag and its ``project_masks_on_boxes`` samples
the masks unaligned and keeps them soft. The public Swin configs run mmcv's RoIAlign, whose default is
``aligned=True``: box corners are shifted by -0.5 px so that a sample at a pixel's centre reads that
pixel, and mask targets are the gt mask cropped and resized that way, then binarised at 0.5.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection.roi_heads import maskrcnn_loss
from torchvision.ops import roi_align

FINEST_SCALE = 56.0  # mmdet SingleRoIExtractor: RoIs with sqrt(area) < 112 go to the first (stride 4) level


def roi_levels(boxes: torch.Tensor, num_levels: int, finest_scale: float = FINEST_SCALE) -> torch.Tensor:
    """FPN level index (R,) of each xyxy box (R, 4): floor(log2(sqrt(w h) / finest_scale + 1e-6)) in [0, L-1].

    mmdet's mapping; with the first level at stride 4 it equals torchvision's LevelMapper
    (canonical scale 224 at level 4: floor(4 + log2(s / 224) + 1e-6) - 2) up to where the 1e-6 sits.
    """
    scale = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).sqrt()
    levels = torch.floor(torch.log2(scale / finest_scale + 1e-6))
    return levels.clamp(0, num_levels - 1).to(torch.int64)


class AlignedMultiScaleRoIAlign(nn.Module):
    """RoIAlign over several FPN maps with an explicit stride per map and mmdet's level mapping.

    A drop-in for torchvision's ``MultiScaleRoIAlign``: ``forward(features: dict[str, (B, C, h, w)],
    boxes: list[(R_i, 4) xyxy in image pixels], image_shapes) -> (sum R_i, C, S, S)``; ``image_shapes``
    is not needed (the strides are given) and only kept for the call signature.

    Args:
        featmap_names: the feature maps to pool from, finest first.
        strides: their strides (4, 8, 16, 32); ``spatial_scale`` of each level is 1 / stride.
        output_size: S.
        sampling_ratio: samples per bin side; 0 = adaptive (ceil(bin size)), as the Swin configs.
        aligned: half-pixel offset (mmcv's default, SPEC §8.8); False reproduces torchvision's pooling.
        finest_scale: level mapping, see ``roi_levels``.
    """

    def __init__(
        self,
        featmap_names: Sequence[str],
        strides: Sequence[int],
        output_size: int,
        *,
        sampling_ratio: int = 0,
        aligned: bool = True,
        finest_scale: float = FINEST_SCALE,
    ) -> None:
        super().__init__()
        if len(featmap_names) != len(strides) or not featmap_names:
            raise ValueError(f"need one stride per feature map, got {list(featmap_names)} and {list(strides)}")
        self.featmap_names = list(featmap_names)
        self.strides = tuple(int(s) for s in strides)
        self.output_size = (int(output_size), int(output_size))
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned
        self.finest_scale = finest_scale

    def forward(
        self,
        features: dict[str, torch.Tensor],
        boxes: list[torch.Tensor],
        image_shapes: list[tuple[int, int]] | None = None,
    ) -> torch.Tensor:
        maps = [features[name] for name in self.featmap_names]
        rois = torch.cat([torch.cat([b.new_full((len(b), 1), i), b], dim=1) for i, b in enumerate(boxes)])
        levels = roi_levels(rois[:, 1:], len(maps), self.finest_scale)
        result = maps[0].new_zeros((len(rois), maps[0].shape[1], *self.output_size))
        for level, (feature, stride) in enumerate(zip(maps, self.strides)):
            index = torch.where(levels == level)[0]
            if len(index) == 0:
                continue
            pooled = roi_align(
                feature, rois[index], self.output_size, 1.0 / stride, self.sampling_ratio, self.aligned
            )
            # Under autocast the levels may come back in different dtypes; index_put needs one.
            result[index] = pooled.to(result.dtype)
        return result

    def extra_repr(self) -> str:
        return f"featmap_names={self.featmap_names}, strides={self.strides}, output_size={self.output_size}, " \
            f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}"  # fmt: skip


def aligned_mask_targets(
    gt_masks: torch.Tensor, boxes: torch.Tensor, matched_idxs: torch.Tensor, size: int
) -> torch.Tensor:
    """Mask targets (R, size, size) in {0., 1.}: gt mask ``matched_idxs[r]`` of ``gt_masks`` (N, H, W),
    cropped to ``boxes[r]`` (clipped to the mask) and resized by aligned RoIAlign (adaptive sampling),
    then >= 0.5 -> 1 (mmdet's ``BitmapMasks.crop_and_resize(..., binarize=True)``)."""
    if len(boxes) == 0:
        return boxes.new_zeros((0, size, size), dtype=torch.float32)
    height, width = gt_masks.shape[-2:]
    boxes = boxes.float()
    x1, y1, x2, y2 = boxes.unbind(dim=1)
    clipped = torch.stack([x1.clamp(0, width), y1.clamp(0, height), x2.clamp(0, width), y2.clamp(0, height)], dim=1)
    rois = torch.cat([matched_idxs[:, None].to(clipped), clipped], dim=1)
    crops = roi_align(gt_masks[:, None].float(), rois, (size, size), 1.0, 0, True)[:, 0]
    return (crops >= 0.5).float()


def mask_loss(
    mask_logits: torch.Tensor,
    proposals: list[torch.Tensor],
    gt_masks: list[torch.Tensor],
    gt_labels: list[torch.Tensor],
    matched_idxs: list[torch.Tensor],
    *,
    aligned: bool = True,
) -> torch.Tensor:
    """Mean binary cross-entropy of the gt class's mask logits (R, K+1, M, M) against the targets of
    ``aligned_mask_targets``; ``aligned=False`` is torchvision's ``maskrcnn_loss`` (unaligned, soft targets).
    Per image: positive proposals (R_i, 4), gt masks (N_i, H, W), gt labels (N_i,), matched gt (R_i,)."""
    if not aligned:
        return maskrcnn_loss(mask_logits, proposals, gt_masks, gt_labels, matched_idxs)
    size = mask_logits.shape[-1]
    labels = torch.cat([lab[idx] for lab, idx in zip(gt_labels, matched_idxs)])
    targets = torch.cat(
        [aligned_mask_targets(m, p, i, size) for m, p, i in zip(gt_masks, proposals, matched_idxs)]
    )
    if targets.numel() == 0:
        return mask_logits.sum() * 0
    logits = mask_logits[torch.arange(len(labels), device=labels.device), labels]
    return F.binary_cross_entropy_with_logits(logits.float(), targets.to(logits.device))
