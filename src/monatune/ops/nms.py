"""Rotated non-maximum suppression (greedy, as torchvision's ``nms`` but with rotated IoU)."""

from __future__ import annotations

import numpy as np
import torch

from monatune.ops.rotated_iou import rotated_box_iou

ROW_CHUNK = 1024  # rows of the IoU matrix held at once: memory O(ROW_CHUNK x N), not O(N^2)


def _suppression_lists(boxes: torch.Tensor, iou_threshold: float) -> list:
    """For each box i (in the given order), the indices j > i it overlaps by more than the threshold.
    The IoU matrix is computed ROW_CHUNK rows at a time and kept sparse, so merging tens of thousands
    of patch detections per image (no cap, SPEC §8.4) stays within memory."""
    n = boxes.shape[0]
    lists = []
    columns = torch.arange(n, device=boxes.device)
    for start in range(0, n, ROW_CHUNK):
        rows = torch.arange(start, min(start + ROW_CHUNK, n), device=boxes.device)
        over = (rotated_box_iou(boxes[rows], boxes) > iou_threshold) & (columns[None, :] > rows[:, None])
        r, c = over.nonzero(as_tuple=True)
        r, c = r.cpu().numpy(), c.cpu().numpy()
        bounds = np.searchsorted(r, np.arange(len(rows) + 1))
        lists.extend(c[bounds[k] : bounds[k + 1]] for k in range(len(rows)))
    return lists


def rotated_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Indices (K,) int64 of the boxes kept, by decreasing score.

    boxes (N, 5), scores (N,). A box is dropped when its IoU with a higher-scoring kept box is
    *greater* than ``iou_threshold`` (torchvision's rule). Equal scores keep their input order.
    """
    if boxes.shape[0] == 0:
        return torch.zeros((0,), dtype=torch.long, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    # Greedy pass over sparse overlap lists on the CPU: no device round trips, no N x N matrix.
    overlaps = _suppression_lists(boxes[order], iou_threshold)
    removed = np.zeros(len(order), dtype=bool)
    keep = []
    for i in range(len(order)):
        if removed[i]:
            continue
        keep.append(i)
        removed[overlaps[i]] = True
    return order[torch.as_tensor(keep, dtype=torch.long, device=boxes.device)]


def batched_rotated_nms(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """Class-aware rotated NMS: boxes with different ``idxs`` (N,) never suppress each other.

    Returns kept indices (K,) int64 sorted by decreasing score.
    """
    if boxes.shape[0] == 0:
        return torch.zeros((0,), dtype=torch.long, device=boxes.device)
    keep = []
    # One IoU matrix per class (not the coordinate-offset trick): exact in float32 at any image size.
    for value in torch.unique(idxs):
        members = torch.nonzero(idxs == value).squeeze(1)
        keep.append(members[rotated_nms(boxes[members], scores[members], iou_threshold)])
    keep = torch.cat(keep)
    return keep[torch.sort(scores[keep], descending=True, stable=True).indices]


def multiclass_rotated_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor,
    *,
    iou_threshold: float = 0.1,
    max_per_image: int = 2000,
) -> dict[str, torch.Tensor]:
    """Final detections of one image: class-aware NMS, then the ``max_per_image`` best.

    boxes (N, 5), scores (N,), labels (N,) -> dict(boxes (K, 5), scores (K,), labels (K,)).
    """
    keep = batched_rotated_nms(boxes, scores, labels, iou_threshold)[:max_per_image]
    return {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]}


__all__ = ["batched_rotated_nms", "multiclass_rotated_nms", "rotated_nms"]
