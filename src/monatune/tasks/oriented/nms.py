"""Rotated non-maximum suppression (greedy, as torchvision's ``nms`` but with rotated IoU)."""

from __future__ import annotations

import torch

from monatune.tasks.oriented.iou import rotated_box_iou


def rotated_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Indices (K,) int64 of the boxes kept, by decreasing score.

    boxes (N, 5), scores (N,). A box is dropped when its IoU with a higher-scoring kept box is
    *greater* than ``iou_threshold`` (torchvision's rule). Equal scores keep their input order.
    """
    if boxes.shape[0] == 0:
        return torch.zeros((0,), dtype=torch.long, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    overlaps = rotated_box_iou(boxes[order], boxes[order]) > iou_threshold
    # Greedy pass over a boolean matrix on the CPU: N steps of O(N) work, no device round trips.
    over = overlaps.triu(diagonal=1).cpu().numpy()
    removed = [False] * len(order)
    keep = []
    for i in range(len(order)):
        if removed[i]:
            continue
        keep.append(i)
        for j in over[i].nonzero()[0]:
            removed[j] = True
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
