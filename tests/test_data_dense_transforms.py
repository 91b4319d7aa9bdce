"""Boxes and masks stay on the pixels they describe under the dense-task resize / flip / crop pipelines."""

import pytest
import torch
from torchvision import tv_tensors

from monatune.data import dense_transforms as T

H, W = 60, 100


def scene(rects, height=H, width=W):
    """White filled rectangles (x1, y1, x2, y2) on black, with matching boxes, masks and per-box flags."""
    image = torch.zeros(3, height, width, dtype=torch.uint8)
    masks = torch.zeros(len(rects), height, width, dtype=torch.uint8)
    for k, (x1, y1, x2, y2) in enumerate(rects):
        image[:, y1:y2, x1:x2] = 255
        masks[k, y1:y2, x1:x2] = 1
    target = {
        "boxes": tv_tensors.BoundingBoxes(torch.tensor(rects, dtype=torch.float32), format="XYXY", canvas_size=(height, width)),
        "labels": torch.arange(1, len(rects) + 1),
        "difficult": torch.tensor([k % 2 == 1 for k in range(len(rects))]),
        "masks": tv_tensors.Mask(masks),
        "image_id": 3,
    }
    return tv_tensors.Image(image), target


def near_edge(mask, pixels=1):
    """Pixels within ``pixels`` (chessboard distance) of the mask's edge."""
    m = mask[None, None].float()
    k = 2 * pixels + 1
    dilated = torch.nn.functional.max_pool2d(m, k, 1, pixels)
    eroded = -torch.nn.functional.max_pool2d(-m, k, 1, pixels)
    return (dilated != eroded)[0, 0]


def assert_consistent(image, target, tol=1.5, edge=1):
    """Each box bounds its mask's pixels (within ``tol``); inside its box the mask and the bright
    pixels of the image differ only within ``edge`` pixels of the mask's edge (bilinear image vs
    nearest mask; a chain of resizes quantises the mask more than once, hence ``edge=2`` there)."""
    bright = image.mean(0) > 0.5
    n = len(target["boxes"])
    assert len(target["labels"]) == len(target["difficult"]) == len(target["masks"]) == n
    assert target["boxes"].canvas_size == tuple(image.shape[-2:]) == tuple(target["masks"].shape[-2:])
    for box, mask in zip(target["boxes"], target["masks"]):
        ys, xs = torch.nonzero(mask, as_tuple=True)
        assert len(xs) > 0
        extent = torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()
        assert torch.allclose(box, extent, atol=tol), (box, extent)
        x1, y1, x2, y2 = box.round().int().tolist()
        differ = bright[y1:y2, x1:x2] != mask[y1:y2, x1:x2].bool()
        assert not (differ & ~near_edge(mask, edge)[y1:y2, x1:x2]).any()


def test_keep_ratio_size_follows_mmcv():
    assert T.keep_ratio_size(375, 500, (1000, 600)) == (600, 800)  # short side limits
    assert T.keep_ratio_size(300, 900, (1000, 600)) == (333, 1000)  # long side limits


def test_detection_train_flip_is_exact():
    image, target = scene([(20, 10, 50, 30)])
    out_image, out = T.detection_train_transforms(scale=(W, H), flip_prob=1.0)(image, target)
    assert out_image.dtype == torch.float32 and out_image.shape == (3, H, W)
    assert out["boxes"].tolist() == [[50, 10, 80, 30]]
    assert out["masks"][0, 10:30, 50:80].all() and out["masks"].sum() == 30 * 20
    assert out["image_id"] == 3 and out["difficult"].tolist() == [False]


def test_detection_resize_scales_boxes():
    image, target = scene([(20, 10, 50, 30)])
    out_image, out = T.detection_eval_transforms(scale=(2 * W, 2 * H))(image, target)
    assert out_image.shape == (3, 2 * H, 2 * W)
    assert out["boxes"].tolist() == [[40, 20, 100, 60]]
    assert_consistent(out_image, out)


def test_instance_train_keeps_boxes_masks_and_flags_together():
    transform = T.instance_train_transforms(
        short_sides=range(48, 81, 8), max_size=133, crop_short_sides=(40, 50, 60), crop_size=(30, 45)
    )
    dropped = 0
    for seed in range(30):
        torch.manual_seed(seed)
        image, target = scene([(5, 5, 25, 20), (60, 30, 95, 55), (30, 40, 45, 58)])
        out_image, out = transform(image, target)
        short, long = min(out_image.shape[-2:]), max(out_image.shape[-2:])
        assert short in range(48, 81, 8) or long == 133
        dropped += 3 - len(out["boxes"])
        assert_consistent(out_image, out, tol=2.0, edge=2)
    assert dropped > 0, "the crop branch should sometimes cut objects out"


def test_random_size_crop_respects_range():
    crop = T.RandomSizeCrop(20, 30)
    for seed in range(10):
        torch.manual_seed(seed)
        out = crop(tv_tensors.Image(torch.zeros(3, 25, 100)))
        assert out.shape[-2] in range(20, 26) and out.shape[-1] in range(20, 31)


def stripe_label(class1_columns=30, size=100):
    label = torch.zeros(size, size, dtype=torch.int64)
    label[:, size - class1_columns :] = 1
    return tv_tensors.Mask(label)


def balanced_fraction(cat_max_ratio, trials=60):
    crop = T.CatMaxRatioCrop(40, cat_max_ratio=cat_max_ratio)
    good = 0
    for seed in range(trials):
        torch.manual_seed(seed)
        _, label = crop(tv_tensors.Image(torch.zeros(3, 100, 100)), stripe_label())
        good += float((label == 0).float().mean()) < 0.75 and bool((label == 0).any())
    return good / trials


def test_cat_max_ratio_retries_towards_balanced_crops():
    # a 40-px crop of 70 class-0 + 30 class-1 columns is balanced for left offsets 41..60: one draw
    # succeeds with probability 20/61, up to 11 draws with 1 - (41/61)^11 ~ 0.99
    assert balanced_fraction(1.0) < 0.5
    assert balanced_fraction(0.75) > 0.9


def test_cat_max_ratio_ignores_ignore_pixels_and_gives_up_after_tries():
    label = torch.full((50, 50), 255, dtype=torch.int64)
    label[:, :2], label[:, 2:4] = 0, 1  # balanced among labelled pixels despite mostly 255
    crop = T.CatMaxRatioCrop(50, cat_max_ratio=0.75)
    assert crop._acceptable(label, {"top": 0, "left": 0, "height": 50, "width": 50})
    _, out = crop(tv_tensors.Image(torch.zeros(3, 80, 30)), tv_tensors.Mask(torch.zeros(80, 30, dtype=torch.int64)))
    assert out.shape == (50, 30)  # single class: never acceptable, last draw kept, capped at the image


def test_semantic_train_pipeline_shapes_padding_and_alignment():
    image = torch.zeros(3, 40, 60, dtype=torch.uint8)
    label = torch.zeros(40, 60, dtype=torch.int64)
    image[:, 10:30, 15:45] = 255
    label[10:30, 15:45] = 1
    transform = T.semantic_train_transforms(scale=(120, 40), ratio_range=(0.5, 2.0), crop_size=48)
    for seed in range(10):
        torch.manual_seed(seed)
        out_image, out_label = transform(tv_tensors.Image(image), tv_tensors.Mask(label))
        assert out_image.shape == (3, 48, 48) and out_image.dtype == torch.float32
        assert out_label.shape == (48, 48) and set(out_label.unique().tolist()) <= {0, 1, 255}
        valid = out_label != 255
        grey = out_image.mean(0)
        threshold = (grey[valid].max() + grey[valid].min()) / 2
        agree = ((grey > threshold) == (out_label == 1))[valid].float().mean()
        assert agree > 0.95 or grey[valid].max() == grey[valid].min()
        assert (out_image[:, ~valid] == 0).all()  # padding is black in the image, ignore in the label


def test_semantic_eval_resizes_the_image_only():
    image, label = tv_tensors.Image(torch.zeros(3, 40, 60, dtype=torch.uint8)), tv_tensors.Mask(torch.zeros(40, 60))
    out_image, out_label = T.semantic_eval_transforms(scale=(240, 80))(image, label)
    assert out_image.shape == (3, 80, 120) and out_label.shape == (40, 60)


def test_photometric_distortion_stays_in_range_and_needs_float():
    image = tv_tensors.Image(torch.rand(3, 16, 16))
    for seed in range(10):
        torch.manual_seed(seed)
        out = T.PhotometricDistortion()(image)
        assert isinstance(out, tv_tensors.Image) and out.min() >= 0 and out.max() <= 1
    with pytest.raises(TypeError, match="float image"):
        T.PhotometricDistortion(brightness_delta=0.0)(tv_tensors.Image(torch.zeros(3, 4, 4, dtype=torch.uint8)))
