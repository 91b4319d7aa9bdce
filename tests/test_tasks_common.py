"""Shared dense-task pieces: top-k candidate selection and the split backbone/neck forward prologue."""

import pytest
import torch
from torch import nn

from monatune.tasks.common import SeparateNeckDetectorMixin, top_scoring_candidates


def test_top_scoring_candidates_keeps_the_best_above_threshold():
    scores = torch.tensor([[0.1, 0.9, 0.3], [0.6, 0.02, 0.7], [0.04, 0.5, 0.8]])
    kept, locations, classes = top_scoring_candidates(scores, score_threshold=0.4, max_candidates=4)
    assert kept.tolist() == pytest.approx([0.9, 0.8, 0.7, 0.6])
    assert locations.tolist() == [0, 2, 1, 1]
    assert classes.tolist() == [1, 2, 2, 0]
    assert torch.equal(scores[locations, classes], kept)


def test_top_scoring_candidates_empty_when_nothing_passes():
    kept, locations, classes = top_scoring_candidates(torch.full((5, 2), 0.01), 0.05, 10)
    assert kept.numel() == locations.numel() == classes.numel() == 0


class _StackedImages:
    def __init__(self, images: list[torch.Tensor]) -> None:
        self.tensors = torch.stack(images)


class _StackTransform(nn.Module):
    def forward(self, images, targets=None):
        return _StackedImages(images), targets


class _TinyDetector(SeparateNeckDetectorMixin, nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone, self.neck, self.transform = nn.Identity(), nn.Identity(), _StackTransform()


def test_transform_and_extract_needs_targets_in_training():
    model = _TinyDetector().train()
    with pytest.raises(ValueError, match="targets are required"):
        model.transform_and_extract([torch.zeros(3, 4, 5)], None)


def test_transform_and_extract_reports_original_sizes():
    model = _TinyDetector().eval()
    _, targets, features, sizes = model.transform_and_extract([torch.zeros(3, 4, 5)] * 2, None)
    assert targets is None and sizes == [(4, 5), (4, 5)]
    assert features.shape == (2, 3, 4, 5)
