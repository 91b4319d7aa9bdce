"""SPEC §8.8 (aligned RoIAlign poolers and mask targets) and §8 item 11 (RPN border anchors) for the
R-CNN heads: hand-computed pooling on linear ramps, mask targets against plain crops and 2x2 averages,
the heads' mask losses in closed form, the builders' defaults and options through the engine config."""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import RoIHeads, project_masks_on_boxes
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.poolers import LevelMapper

from monatune.engine.config import load_config
from monatune.tasks.instance_segmentation.cascade_roi_heads import CascadeRoIHeads, CascadeStage
from monatune.tasks.instance_segmentation.module import build_instance_segmenter
from monatune.tasks.instance_segmentation.mask_rcnn import AlignedMaskRoIHeads
from monatune.tasks.instance_segmentation.roi_align import (
    AlignedMultiScaleRoIAlign,
    aligned_mask_targets,
    mask_loss,
    roi_levels,
)
from monatune.tasks.instance_segmentation.two_stage import BorderAwareRPN, anchors_inside

from test_models_instance_seg import synthetic_batch, tiny_cascade, tiny_mask_rcnn

ROOT = Path(__file__).resolve().parents[1]
STRIDES = (4, 8, 16, 32)
NAMES = ["0", "1", "2", "3"]


def ramp_features(image_size: int) -> OrderedDict[str, torch.Tensor]:
    """Two images; per level: channel 0 = column index, 1 = row index, 2 = level + 1000 x image index
    (bilinear sampling is exact on these)."""
    maps = OrderedDict()
    for level, stride in enumerate(STRIDES):
        n = image_size // stride
        rows, cols = torch.meshgrid(torch.arange(n, dtype=torch.float32), torch.arange(n, dtype=torch.float32), indexing="ij")
        one = torch.stack([cols, rows, torch.full_like(cols, level)])
        maps[str(level)] = torch.stack([one, one + torch.tensor([0.0, 0.0, 1000.0]).view(3, 1, 1)])
    return maps


# box (x1, y1, x2, y2) in a 512 px image -> (level, x centres of the 2 bins, y centres), all by hand:
# level = floor(log2(sqrt(w h) / 56)); a bin's average of a ramp is the ramp at the bin centre, and the
# aligned centres are x1 / stride - 0.5 + (i + 0.5) * w / stride / 2.
RAMP_CASES = [
    ((10, 20, 30, 36), 0, (3.25, 5.75), (5.5, 7.5)),  # sqrt(320) = 17.9 -> stride 4: x from 2.0 by 2.5, y from 4.5 by 2
    ((40, 24, 152, 136), 1, (8.0, 15.0), (6.0, 13.0)),  # 112 -> stride 8: x from 4.5 by 7, y from 2.5 by 7
    ((48, 80, 272, 304), 2, (6.0, 13.0), (8.0, 15.0)),  # 224 -> stride 16: x from 2.5 by 7, y from 4.5 by 7
    ((16, 32, 464, 480), 3, (3.5, 10.5), (4.0, 11.0)),  # 448 -> stride 32: x from 0 by 7, y from 0.5 by 7
]


def test_aligned_pooler_samples_a_ramp_half_a_pixel_before_torchvision():
    features = ramp_features(512)
    boxes = torch.tensor([case[0] for case in RAMP_CASES], dtype=torch.float32)
    pooled = AlignedMultiScaleRoIAlign(NAMES, STRIDES, 2)(features, [boxes[:2], boxes[2:]], [(512, 512)] * 2)
    assert pooled.shape == (4, 3, 2, 2)
    for out, (_, level, xs, ys), image in zip(pooled, RAMP_CASES, (0, 0, 1, 1)):
        torch.testing.assert_close(out[0], torch.tensor([xs, xs]), atol=1e-5, rtol=0)
        torch.testing.assert_close(out[1], torch.tensor([ys, ys]).T, atol=1e-5, rtol=0)
        assert (out[2] == level + 1000 * image).all()
    # torchvision's pooler picks the same levels but samples unaligned: every centre 0.5 further on.
    unaligned = MultiScaleRoIAlign(NAMES, 2, sampling_ratio=0)(features, [boxes[:2], boxes[2:]], [(512, 512)] * 2)
    torch.testing.assert_close(unaligned[:, :2], pooled[:, :2] + 0.5, atol=1e-5, rtol=0)
    torch.testing.assert_close(unaligned[:, 2], pooled[:, 2])


def test_roi_levels_are_mmdets_mapping_and_torchvisions_from_stride_4():
    sides = torch.tensor([8.0, 55.9, 56.0, 111.9, 112.0, 223.9, 224.0, 447.9, 448.0, 2000.0])
    boxes = torch.stack([torch.zeros_like(sides), torch.zeros_like(sides), sides, sides], dim=1)
    assert roi_levels(boxes, 4).tolist() == [0, 0, 0, 0, 1, 1, 2, 2, 3, 3]
    # Non-square boxes: sqrt(w h), not the longer side.
    assert roi_levels(torch.tensor([[0.0, 0.0, 448.0, 28.0], [5.0, 5.0, 229.0, 229.0]]), 4).tolist() == [1, 2]
    gen = torch.Generator().manual_seed(0)
    corner = torch.rand(2000, 2, generator=gen) * 300
    size = torch.exp(torch.rand(2000, 2, generator=gen) * math.log(900.0)) + 1.0
    random_boxes = torch.cat([corner, corner + size], dim=1)
    torchvision_levels = LevelMapper(2, 5)([random_boxes])  # strides 4..32: k_min = 2, k_max = 5
    torch.testing.assert_close(roi_levels(random_boxes, 4), torchvision_levels)
    torch.testing.assert_close(roi_levels(boxes, 4), LevelMapper(2, 5)([boxes]))


def random_masks(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    return (torch.rand(n, h, w, generator=torch.Generator().manual_seed(seed)) < 0.5).to(torch.uint8)


def test_mask_target_of_a_box_the_size_of_the_output_is_the_plain_crop():
    masks = random_masks(2, 64, 64)
    boxes = torch.tensor([[8.0, 16.0, 36.0, 44.0], [30.0, 2.0, 58.0, 30.0]])
    targets = aligned_mask_targets(masks, boxes, torch.tensor([1, 0]), 28)
    assert targets.dtype == torch.float32
    torch.testing.assert_close(targets[0], masks[1, 16:44, 8:36].float())
    torch.testing.assert_close(targets[1], masks[0, 2:30, 30:58].float())
    # torchvision's targets are shifted by half a pixel and soft: not the crop.
    soft = project_masks_on_boxes(masks[1:2], boxes[:1], torch.tensor([0]), 28)[0]
    assert not torch.equal(soft, targets[0]) and ((soft > 0) & (soft < 1)).any()


def test_mask_target_at_half_resolution_is_the_2x2_mean_binarised_at_one_half():
    masks = random_masks(1, 64, 64, seed=1)
    target = aligned_mask_targets(masks, torch.tensor([[4.0, 6.0, 60.0, 62.0]]), torch.tensor([0]), 28)[0]
    mean = masks[0, 6:62, 4:60].float().view(28, 2, 28, 2).mean(dim=(1, 3))
    assert (mean == 0.5).any()  # blocks with two ones of four: they become 1 (>= 0.5)
    torch.testing.assert_close(target, (mean >= 0.5).float())


def test_mask_target_clips_the_box_to_the_mask_first():
    masks = random_masks(1, 40, 40, seed=2)
    target = aligned_mask_targets(masks, torch.tensor([[-10.0, -5.0, 28.0, 28.0]]), torch.tensor([0]), 28)[0]
    torch.testing.assert_close(target, masks[0, :28, :28].float())  # the box is (0, 0, 28, 28) once clipped
    assert aligned_mask_targets(masks, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), 28).shape == (0, 28, 28)


GT_BOX = (8.0, 16.0, 36.0, 44.0)  # 28 x 28 at integer corners: its aligned 28x28 target is the crop
SOFTPLUS_5 = math.log1p(math.exp(-5.0))


class ConstantLogits(nn.Module):
    """Mask logits ``logits`` (M, M) for every RoI and both classes, whatever the features."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits
        self.anchor = nn.Parameter(torch.zeros(()))  # keeps the graph differentiable

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(len(x), 2, *self.logits.shape) + self.anchor


def one_object_scene() -> tuple[dict[str, torch.Tensor], list[torch.Tensor], list[dict[str, torch.Tensor]], torch.Tensor]:
    """Random FPN maps of a 64 px image, proposals (the gt box and a far box), the target, the gt crop."""
    gen = torch.Generator().manual_seed(3)
    features = {str(i): torch.randn(1, 4, 64 // s, 64 // s, generator=gen) for i, s in enumerate(STRIDES)}
    masks = random_masks(1, 64, 64, seed=3)
    target = {"boxes": torch.tensor([GT_BOX]), "labels": torch.tensor([1]), "masks": masks}
    proposals = [torch.tensor([GT_BOX, (40.0, 40.0, 60.0, 60.0)])]
    return features, proposals, [target], masks[0, 16:44, 8:36].float()


def cascade_heads(crop: torch.Tensor, aligned: bool) -> CascadeRoIHeads:
    stages = []
    for threshold in (0.5, 0.6, 0.7):
        stage = CascadeStage(
            nn.Sequential(nn.Flatten(), nn.Linear(4 * 49, 8)), 8, 2, threshold, (10.0, 10.0, 5.0, 5.0),
            mask_head=ConstantLogits(10 * crop - 5),
        )  # fmt: skip
        nn.init.zeros_(stage.bbox_pred.weight)  # refined boxes = the RoIs: every stage sees the gt box
        stages.append(stage)
    return CascadeRoIHeads(
        AlignedMultiScaleRoIAlign(NAMES, STRIDES, 7), stages, (1.0, 0.5, 0.25),
        mask_roi_pool=AlignedMultiScaleRoIAlign(NAMES, STRIDES, 14), aligned_mask_targets=aligned,
    ).train()  # fmt: skip


def test_cascade_mask_losses_use_the_aligned_binarised_targets():
    features, proposals, targets, crop = one_object_scene()
    losses = cascade_heads(crop, aligned=True)(features, proposals, [(64, 64)], targets)[1]
    # Logits +5 where the crop is 1, -5 elsewhere: against the crop, every pixel costs softplus(-5).
    for s, weight in enumerate((1.0, 0.5, 0.25)):
        assert losses[f"loss_mask_stage{s}"].item() == pytest.approx(weight * SOFTPLUS_5, rel=1e-5)
    soft = cascade_heads(crop, aligned=False)(features, proposals, [(64, 64)], targets)[1]
    assert soft["loss_mask_stage0"].item() > 2 * SOFTPLUS_5  # torchvision's targets are not the crop


def test_mask_rcnn_mask_loss_uses_the_aligned_binarised_targets():
    features, proposals, targets, crop = one_object_scene()

    def heads(cls: type[RoIHeads]) -> RoIHeads:
        return cls(
            AlignedMultiScaleRoIAlign(NAMES, STRIDES, 7), nn.Sequential(nn.Flatten(), nn.Linear(4 * 49, 8)),
            FastRCNNPredictor(8, 2), 0.5, 0.5, 512, 0.25, None, 0.05, 0.5, 100,
            mask_roi_pool=AlignedMultiScaleRoIAlign(NAMES, STRIDES, 14), mask_head=nn.Identity(),
            mask_predictor=ConstantLogits(10 * crop - 5),
        ).train()  # fmt: skip

    losses = heads(AlignedMaskRoIHeads)(features, proposals, [(64, 64)], targets)[1]
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_mask"}
    assert losses["loss_mask"].item() == pytest.approx(SOFTPLUS_5, rel=1e-5)
    assert heads(RoIHeads)(features, proposals, [(64, 64)], targets)[1]["loss_mask"].item() > 2 * SOFTPLUS_5


def test_mask_loss_of_no_positive_is_zero_with_a_gradient():
    logits = torch.zeros(0, 2, 28, 28, requires_grad=True)
    loss = mask_loss(logits, [torch.zeros(0, 4)], [random_masks(1, 8, 8)], [torch.tensor([1])], [torch.zeros(0, dtype=torch.long)])
    loss.backward()
    assert loss.item() == 0.0 and logits.grad is not None


def small_model(head: str, *overrides: str) -> nn.Module:
    path = ROOT / f"configs/small/instance_segmentation_{head}.yaml"
    return build_instance_segmenter(load_config(path, list(overrides)))


@pytest.mark.parametrize("head", ["cascade_mask_rcnn", "mask_rcnn"])
def test_builders_pool_aligned_by_default_and_torchvision_on_request(head):
    model = small_model(head)
    heads = model.roi_heads
    for pool, size in ((heads.box_roi_pool, 7), (heads.mask_roi_pool, 14)):
        assert isinstance(pool, AlignedMultiScaleRoIAlign)
        assert pool.aligned and pool.sampling_ratio == 0 and pool.output_size == (size, size)
        assert pool.strides == STRIDES and pool.featmap_names == NAMES
    if head == "cascade_mask_rcnn":
        assert heads.aligned_mask_targets
    else:
        assert isinstance(heads, AlignedMaskRoIHeads)
    assert isinstance(model.rpn, BorderAwareRPN) and model.rpn.allowed_border is None

    plain = small_model(head, "model.head_options.roi_align_aligned=false", "model.head_options.rpn_ignore_border_anchors=true")
    assert type(plain.roi_heads.box_roi_pool) is MultiScaleRoIAlign
    assert type(plain.roi_heads.mask_roi_pool) is MultiScaleRoIAlign
    if head == "cascade_mask_rcnn":
        assert not plain.roi_heads.aligned_mask_targets
    else:
        assert type(plain.roi_heads) is RoIHeads
    assert plain.rpn.allowed_border == 0.0


def test_anchors_inside_is_mmdets_anchor_inside_flags():
    anchors = torch.tensor([
        [0.0, 0.0, 63.9, 47.9],  # inside
        [-0.1, 0.0, 20.0, 20.0],  # x1 < 0
        [0.0, 0.0, 64.0, 20.0],  # x2 = w: mmdet keeps only x2 < w
        [0.0, 30.0, 20.0, 50.0],  # y2 > h = 48 (inside if h and w were swapped)
        [10.0, 10.0, 20.0, 48.0],  # y2 = h
    ])  # fmt: skip
    assert anchors_inside(anchors, (48, 64), 0.0).tolist() == [True, False, False, False, False]
    assert anchors_inside(anchors, (48, 64), 2.0).tolist() == [True, True, True, False, True]


def tiny_rpn(allowed_border: float | None) -> BorderAwareRPN:
    anchors = AnchorGenerator(((32,),), ((1.0,),))
    return BorderAwareRPN(
        anchors, RPNHead(4, 1), 0.7, 0.3, 256, 0.5, {"training": 100, "testing": 100}, {"training": 50, "testing": 50},
        0.7, allowed_border=allowed_border,
    )  # fmt: skip


def test_border_anchors_are_left_out_of_rpn_matching_only_on_request():
    gt = {"boxes": torch.tensor([[0.0, 0.0, 20.0, 32.0]])}
    anchors = torch.tensor([
        [-6.0, 0.0, 26.0, 32.0],  # crosses x = 0; IoU 640 / 1024 = 0.625: the gt's best, positive by default
        [4.0, 0.0, 36.0, 32.0],  # inside; IoU 512 / 1152 = 0.44: ignored by default, the best inside one
        [40.0, 30.0, 72.0, 62.0],  # crosses the right and bottom borders: negative by default
        [0.0, 16.0, 32.0, 48.0],  # y2 = h = 48: outside for mmdet (y2 < h)
        [30.0, 0.0, 62.0, 32.0],  # inside, no overlap: negative
    ])  # fmt: skip
    labels, matched = tiny_rpn(None).assign_targets_to_anchors([anchors], [gt])
    assert labels[0].tolist() == [1.0, -1.0, 0.0, 0.0, 0.0]
    labels, matched = tiny_rpn(0.0).assign_targets_to_anchors([anchors], [{**gt, "image_size": (48, 64)}])
    assert labels[0].tolist() == [-1.0, 1.0, -1.0, -1.0, 0.0]
    torch.testing.assert_close(matched[0][1], gt["boxes"][0])
    with pytest.raises(ValueError, match="image_size"):
        tiny_rpn(0.0).assign_targets_to_anchors([anchors], [gt])


def test_rpn_forward_ignores_exactly_the_anchors_crossing_the_border():
    rpn = tiny_rpn(0.0).train()
    recorded = []
    assign = rpn.assign_targets_to_anchors

    def spy(anchors, targets):
        out = assign(anchors, targets)
        recorded.append((anchors, out[0]))
        return out

    rpn.assign_targets_to_anchors = spy  # type: ignore[method-assign]
    images = ImageList(torch.zeros(2, 3, 64, 64), [(48, 64), (64, 40)])
    features = {"0": torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(4))}
    targets = [{"boxes": torch.tensor([[4.0, 4.0, 40.0, 40.0]])}, {"boxes": torch.zeros(0, 4)}]
    losses = rpn(images, features, targets)[1]
    assert all(torch.isfinite(v) for v in losses.values())
    ((anchors, labels),) = recorded
    inside = []
    for a, lab, (h, w) in zip(anchors, labels, images.image_sizes):
        outside = (a[:, 0] < 0) | (a[:, 1] < 0) | (a[:, 2] >= w) | (a[:, 3] >= h)
        assert outside.any() and (~outside).any()
        assert (lab[outside] == -1).all() and (lab[~outside] != -1).any()
        inside.append(~outside)
    assert (labels[1][inside[1]] == 0).all()  # the image without objects: every inside anchor negative
    assert "image_size" not in targets[0]  # the caller's targets are not changed


@pytest.mark.parametrize("head", ["cascade_mask_rcnn", "mask_rcnn"])
def test_models_with_border_anchors_ignored_train(head):
    build = tiny_cascade if head == "cascade_mask_rcnn" else tiny_mask_rcnn
    model = build(rpn_ignore_border_anchors=True).train()
    assert model.rpn.allowed_border == 0.0
    losses = model(*synthetic_batch())
    assert all(v.ndim == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
