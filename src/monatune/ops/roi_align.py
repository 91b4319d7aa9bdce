"""Rotated RoIAlign in pure PyTorch (bilinear ``grid_sample`` at rotated sampling points), single and FPN.

A RoI (cx, cy, w, h, theta) in image pixels is cut into ``output_size`` x ``output_size`` bins in its
own frame; each bin averages ``sampling_ratio``^2 bilinear samples at evenly spaced points (the
"aligned" convention: feature pixel i covers image [i, i+1) * stride, its centre at (i + 0.5) * stride).
Samples outside the map read zeros.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def rotated_roi_align(
    features: torch.Tensor,
    rois: torch.Tensor,
    output_size: int = 7,
    spatial_scale: float = 1.0,
    sampling_ratio: int = 2,
) -> torch.Tensor:
    """Pool rotated RoIs from one map.

    features (B, C, H, W); rois (K, 6) as (batch index, cx, cy, w, h, theta) in image coordinates;
    ``spatial_scale`` = 1 / stride. Returns (K, C, output_size, output_size).
    """
    num_rois, channels = rois.shape[0], features.shape[1]
    out = features.new_zeros((num_rois, channels, output_size, output_size))
    if num_rois == 0:
        return out
    s = output_size * sampling_ratio
    # Sampling positions in float32 even under fp16 autocast: half precision would misplace them
    # by up to half a pixel on a 1024-pixel patch.
    dtype = torch.promote_types(features.dtype, torch.float32)
    lin = (torch.arange(s, dtype=dtype, device=features.device) + 0.5) / s - 0.5  # in (-1/2, 1/2)
    _, cx, cy, w, h, theta = rois.to(dtype).unbind(1)
    lx = lin[None, None, :] * w[:, None, None]  # (K, 1, S): columns
    ly = lin[None, :, None] * h[:, None, None]  # (K, S, 1): rows
    cos, sin = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
    x = cx[:, None, None] + lx * cos - ly * sin  # (K, S, S)
    y = cy[:, None, None] + lx * sin + ly * cos
    height, width = features.shape[-2:]
    # grid_sample with align_corners=False: -1 and 1 are the outer edges of the map.
    grid = torch.stack((2 * x * spatial_scale / width - 1, 2 * y * spatial_scale / height - 1), dim=-1)
    batch_index = rois[:, 0].long()
    for b in torch.unique(batch_index).tolist():
        members = torch.nonzero(batch_index == b).squeeze(1)
        g = grid[members].reshape(1, -1, s, 2)  # (1, K_b * S, S, 2)
        sampled = F.grid_sample(features[b : b + 1].to(dtype), g, padding_mode="zeros", align_corners=False)
        sampled = sampled.view(channels, members.numel(), s, s).transpose(0, 1)
        out[members] = F.avg_pool2d(sampled, sampling_ratio).to(out.dtype)
    return out


def map_rois_to_levels(rois: torch.Tensor, num_levels: int, finest_scale: float = 56.0) -> torch.Tensor:
    """FPN level (K,) int64 of each RoI: floor(log2(sqrt(w h) / finest_scale)), clamped (mmdet's rule)."""
    scale = (rois[:, 3] * rois[:, 4]).clamp_min(0).sqrt()
    level = torch.floor(torch.log2(scale / finest_scale + 1e-6))
    return level.clamp(0, num_levels - 1).long()


def multilevel_rotated_roi_align(
    features: Sequence[torch.Tensor],
    strides: Sequence[int],
    rois: torch.Tensor,
    output_size: int = 7,
    sampling_ratio: int = 2,
    finest_scale: float = 56.0,
) -> torch.Tensor:
    """Pool each RoI (K, 6) from its FPN level (see :func:`map_rois_to_levels`) -> (K, C, S, S)."""
    levels = map_rois_to_levels(rois, len(features), finest_scale)
    out = features[0].new_zeros((rois.shape[0], features[0].shape[1], output_size, output_size))
    for lvl, (feat, stride) in enumerate(zip(features, strides)):
        members = torch.nonzero(levels == lvl).squeeze(1)
        if members.numel():
            out[members] = rotated_roi_align(feat, rois[members], output_size, 1.0 / stride, sampling_ratio)
    return out


__all__ = ["map_rois_to_levels", "multilevel_rotated_roi_align", "rotated_roi_align"]
