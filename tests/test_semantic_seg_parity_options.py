"""SPEC §8.11 parity options of UperNet: CE averaged over all pixels, whole-image test without pad to 32."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from monatune.tasks.semantic_segmentation.upernet import segmentation_cross_entropy

from test_models_semantic_seg import NUM_CLASSES, synthetic_batch, tiny_upernet


def test_cross_entropy_hand_case_valid_vs_all():
    # Pixel 0: logits (0, 0), label 0 -> ln 2. Pixel 1: logits (ln 3, 0), label 1 -> ln 4. Pixels 2, 3 ignored.
    logits = torch.tensor([[0.0, math.log(3.0), 5.0, -5.0], [0.0, 0.0, 0.0, 0.0]]).view(1, 2, 2, 2)
    masks = torch.tensor([[[0, 1], [255, 255]]])
    total = math.log(2.0) + math.log(4.0)
    assert segmentation_cross_entropy(logits, masks).item() == pytest.approx(total / 2)
    assert segmentation_cross_entropy(logits, masks, average="valid").item() == pytest.approx(total / 2)
    assert segmentation_cross_entropy(logits, masks, average="all").item() == pytest.approx(total / 4)
    all_ignored = torch.full_like(masks, 255)
    assert segmentation_cross_entropy(logits, all_ignored, average="all").item() == 0.0
    assert segmentation_cross_entropy(logits, all_ignored, average="valid").item() == 0.0


def test_loss_average_all_scales_decode_and_aux_by_the_valid_fraction():
    images, masks = synthetic_batch(64, 64)
    masks[0, :, :32] = 255  # half of image 0 ignored too
    torch.manual_seed(0)
    valid_model = tiny_upernet(dropout=0.0).train()
    all_model = tiny_upernet(dropout=0.0, loss_average="all").train()
    all_model.load_state_dict(valid_model.state_dict())
    fraction = (masks != 255).sum().item() / masks.numel()
    assert fraction < 0.8
    valid, everything = valid_model(images, masks), all_model(images, masks)
    for key in ("loss_decode", "loss_aux"):
        assert everything[key].item() == pytest.approx(fraction * valid[key].item(), rel=1e-5)


@pytest.mark.parametrize("option, value", [("loss_average", "mean"), ("test_padding", None)])
def test_bad_values_are_named(option, value):
    with pytest.raises(ValueError, match=option):
        tiny_upernet(**{option: value})
    with pytest.raises(ValueError, match="loss_average"):
        segmentation_cross_entropy(torch.zeros(1, 2, 1, 1), torch.zeros(1, 1, 1, dtype=torch.long), average="sum")


def _record_backbone_input(model) -> list[tuple[int, int]]:
    sizes: list[tuple[int, int]] = []
    model.backbone.register_forward_pre_hook(lambda _m, args: sizes.append(tuple(args[0].shape[-2:])))
    return sizes


def _reference_logits(model, images: torch.Tensor, pad_to: int, stretch_to_image: bool) -> torch.Tensor:
    """Written out independently: normalise, zero-pad to ``pad_to``, decode, bilinear resize."""
    height, width = images.shape[-2:]
    x = (images - model.image_mean) / model.image_std
    x = F.pad(x, (0, -width % pad_to, 0, -height % pad_to))
    logits = model.decode_head(model.backbone(x))
    if stretch_to_image:
        return F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
    return F.interpolate(logits, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)[..., :height, :width]


def test_whole_image_test_pads_only_to_the_patch_size():
    images, masks = synthetic_batch(50, 70)
    torch.manual_seed(0)
    default = tiny_upernet().eval()
    patch = tiny_upernet(test_padding="patch").eval()
    patch.load_state_dict(default.state_dict())
    default_sizes, patch_sizes = _record_backbone_input(default), _record_backbone_input(patch)
    with torch.no_grad():
        default_logits, patch_logits = default(images), patch(images)
        assert default_sizes == [(64, 96)] and patch_sizes == [(52, 72)]
        assert default_logits.shape == patch_logits.shape == (2, NUM_CLASSES, 50, 70)
        torch.testing.assert_close(default_logits, _reference_logits(default, images, 32, False))
        torch.testing.assert_close(patch_logits, _reference_logits(patch, images, 4, True))
    assert not torch.allclose(default_logits, patch_logits, atol=1e-4)
    # Training still pads to size_divisor (32).
    patch.train()
    patch(images, masks)
    assert patch_sizes[-1] == (64, 96)


def test_head_options_reach_the_model_from_the_config(tmp_path):
    from engine_helpers import tiny_task_config
    from monatune.tasks.semantic_segmentation.module import build_segmenter

    data = {"dataset": "synthetic_ade20k", "root": str(tmp_path), "image_size": 64}
    head = {"channels": 16, "aux_channels": 8, "loss_average": "all", "test_padding": "patch"}
    model = build_segmenter(tiny_task_config(tmp_path, "semantic_segmentation", "upernet", head, 6, "fixed", data))
    assert (model.loss_average, model.test_padding) == ("all", "patch")
    default = build_segmenter(tiny_task_config(tmp_path, "semantic_segmentation", "upernet", {"channels": 16}, 6, "fixed", data))
    assert (default.loss_average, default.test_padding) == ("valid", "size_divisor")
