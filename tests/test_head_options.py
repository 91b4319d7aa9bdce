"""``model.head_options`` keys are checked against the task builder's keyword arguments before anything is built."""

from __future__ import annotations

from pathlib import Path

import pytest

from monatune.engine.config import ConfigError, load_config, parse_config
from monatune.tasks.classification.module import build_classifier
from monatune.tasks.dense.build import BACKBONE_KEYS, builder_keywords
from monatune.tasks.detection.module import build_detector
from monatune.tasks.detection.retinanet import build_retinanet
from monatune.tasks.instance_segmentation.module import HEADS, build_instance_segmenter
from monatune.tasks.oriented.factory import DETECTORS
from monatune.tasks.oriented.module import MODEL_KEYS, build_oriented
from monatune.tasks.semantic_segmentation.module import build_segmenter
from monatune.tasks.semantic_segmentation.upernet import build_upernet

BUILDERS = {"retinanet": build_retinanet, "upernet": build_upernet, **HEADS, **DETECTORS}
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def config(task: str, head: str, head_options: dict) -> object:
    return parse_config({"task": task, "model": {"backbone": "swin_nano_synthetic", "head": head, "num_classes": 3, "head_options": head_options}})


@pytest.mark.parametrize(
    "task, head, build, typo, valid",
    [
        ("detection", "retinanet", build_detector, "score_thres", ["out_indices", "score_thresh", "fpn_channels"]),
        ("instance_segmentation", "cascade_mask_rcnn", build_instance_segmenter, "fpn_channel", ["fpn_channels", "min_size"]),
        ("instance_segmentation", "mask_rcnn", build_instance_segmenter, "box_head_norm", ["box_fc_channels"]),
        ("semantic_segmentation", "upernet", build_segmenter, "ignore_idx", ["ignore_index", "aux_stage"]),
        ("oriented", "rotated_retinanet", build_oriented, "nms_iuo", ["nms_iou", "image_mean", "out_indices"]),
        ("oriented", "oriented_rcnn", build_oriented, "rpn_option", ["rpn_options", "fc_channels"]),
        ("oriented", "h2rbox_v2", build_oriented, "varient", ["variant", "symmetry_weight"]),
    ],
)
def test_a_misspelt_head_option_names_itself_and_the_valid_keys(task, head, build, typo, valid):
    with pytest.raises(ConfigError) as info:
        build(config(task, head, {"out_indices": [1, 2, 3], typo: 1}))
    message = str(info.value)
    assert message.startswith(f"model.head_options: unknown ['{typo}'] for head '{head}'; valid: ")
    for key in valid:
        assert key in message.split("valid: ")[1].split(", ")


def test_classification_takes_no_head_options():
    with pytest.raises(ConfigError, match=r"model.head_options: the classification head takes no options, got \['dropout'\]"):
        build_classifier(parse_config({"model": {"backbone": "swin_nano_synthetic", "num_classes": 3, "head_options": {"dropout": 0.1}}}))


def test_builders_forwarding_options_are_followed_into_their_class():
    rotated = builder_keywords(DETECTORS["rotated_retinanet"])
    assert rotated is not None and "box_loss" in rotated and "options" not in rotated and "backbone" not in rotated

    def opaque(backbone, num_classes, **options):  # no class to follow: nothing is refused
        return None

    assert builder_keywords(opaque) is None


def test_every_shipped_config_uses_only_keys_its_builder_takes():
    checked = 0
    for path in sorted(CONFIGS.rglob("*.yaml")):
        cfg = load_config(path)
        if cfg.task == "classification":
            assert not cfg.model.head_options, path
            continue
        own = MODEL_KEYS if cfg.task == "oriented" else BACKBONE_KEYS
        unknown = set(cfg.model.head_options) - set(own) - set(builder_keywords(BUILDERS[cfg.model.head]))
        assert not unknown, f"{path}: {unknown}"
        checked += 1
    assert checked > 30
