"""Semantic segmentation mIoU accumulated over the whole set (as mmseg and the paper report it).

Intersections and unions are summed per class over every pixel of every image first, and only then
divided: IoU_c = sum_i |P_c ∩ G_c| / sum_i |P_c ∪ G_c|. mIoU is the mean over classes whose union is
non-zero (present in predictions or labels); this is not the mean of per-image mIoUs, which weights
small images and rare classes very differently. Pixels labelled ``ignore_index`` count nowhere.
"""

from __future__ import annotations

from typing import Any

import torch


class MeanIoU:
    """Confusion-matrix accumulator for mIoU, per-class IoU, pixel accuracy and mean class accuracy.

    ``update(pred, target)``: ``target`` (B, H, W) or (H, W) integer labels in 0..C-1 or
    ``ignore_index``; ``pred`` the same shape of labels, or logits (B, C, H, W) / (C, H, W) that
    are argmax-ed over the class dimension. ``compute()`` returns ``dict(miou, iou_per_class (C,)
    with NaN for classes with empty union, pixel_accuracy (correct / labelled pixels), mean_accuracy
    (over classes that occur in the labels))``.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        # rows: label, columns: prediction; int64 so 160k full-size images cannot overflow
        self.confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        if pred.ndim == target.ndim + 1:
            pred = pred.argmax(dim=-3)
        if pred.shape != target.shape:
            raise ValueError(f"prediction shape {tuple(pred.shape)} does not match label shape {tuple(target.shape)}")
        target, pred = target.detach().reshape(-1).long(), pred.detach().reshape(-1).long()
        valid = target != self.ignore_index
        target, pred = target[valid], pred[valid]
        for what, values in (("label", target), ("prediction", pred)):
            if values.numel() and (values.min() < 0 or values.max() >= self.num_classes):
                raise ValueError(f"{what} values must lie in 0..{self.num_classes - 1} or be {self.ignore_index}")
        counts = torch.bincount(target * self.num_classes + pred, minlength=self.num_classes**2)
        self.confusion += counts.reshape(self.num_classes, self.num_classes).cpu()

    def compute(self) -> dict[str, Any]:
        conf = self.confusion.double()
        intersection = conf.diagonal()
        label_area, pred_area = conf.sum(dim=1), conf.sum(dim=0)
        union = label_area + pred_area - intersection
        iou = torch.where(union > 0, intersection / union.clamp(min=1), torch.nan)
        accuracy = torch.where(label_area > 0, intersection / label_area.clamp(min=1), torch.nan)
        total = label_area.sum()
        return {
            "miou": float(iou.nanmean()) if (union > 0).any() else float("nan"),
            "iou_per_class": iou,
            "pixel_accuracy": float(intersection.sum() / total) if total > 0 else float("nan"),
            "mean_accuracy": float(accuracy.nanmean()) if (label_area > 0).any() else float("nan"),
        }
