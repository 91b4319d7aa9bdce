"""SPEC §8.11 parity options of VOC detection: mmdet 2.11's box convention (boxes - 1, continuous IoU)
and RetinaNet's test-time candidates chosen by their best class score (mmdet's nms_pre)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from monatune.data.voc import VOC_CLASSES, VOCDetection, parse_voc_xml
from monatune.data.synthetic_scenes import SYNTHETIC_CLASSES, write_voc
from monatune.metrics.voc07_map import pixel_offset_for
from monatune.tasks.detection.data import DetectionData, box_convention
from monatune.tasks.detection.module import DetectionModule
from monatune.tasks.detection.retinanet import max_class_candidates

from engine_helpers import tiny_task_config
from test_models_detection import synthetic_batch, tiny_retinanet

# Two dogs, 1-based inclusive devkit pixels: G1 10 x 10 pixels, G2 20 x 20 pixels.
XML = """<annotation><filename>x.jpg</filename><size><width>60</width><height>50</height><depth>3</depth></size>
<object><name>dog</name><difficult>0</difficult><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>10</xmax><ymax>10</ymax></bndbox></object>
<object><name>dog</name><difficult>0</difficult><bndbox><xmin>21</xmin><ymin>21</ymin><xmax>40</xmax><ymax>40</ymax></bndbox></object>
</annotation>"""


def voc_config(tmp_path, **options):
    data = {"dataset": "synthetic_voc", "root": str(tmp_path / "voc"), "train_split": "trainval", "val_split": "test",
            "image_size": 48, "options": options}  # fmt: skip
    return tiny_task_config(tmp_path, "detection", "retinanet", {}, 20, "fixed", data)


class FixedDetections(nn.Module):
    """Stands in for the detector: returns the same detections for every image."""

    def __init__(self, detections: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.detections = detections
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, images):
        return [self.detections for _ in images]


def test_mmdet_convention_shifts_every_coordinate_by_minus_one(tmp_path):
    path = tmp_path / "a.xml"
    path.write_text(XML)
    assert parse_voc_xml(path)["boxes"].tolist() == [[1, 1, 10, 10], [21, 21, 40, 40]]
    assert parse_voc_xml(path, box_convention="devkit")["boxes"].tolist() == [[1, 1, 10, 10], [21, 21, 40, 40]]
    assert parse_voc_xml(path, box_convention="mmdet")["boxes"].tolist() == [[0, 0, 9, 9], [20, 20, 39, 39]]
    assert (pixel_offset_for("devkit"), pixel_offset_for("mmdet")) == (1.0, 0.0)


def test_the_data_module_reads_with_the_configured_convention(tmp_path):
    write_voc(tmp_path / "voc", 2, size=48, seed=0, image_set="test")
    devkit = DetectionData(voc_config(tmp_path)).make_dataset("test", train=False)
    mmdet = DetectionData(voc_config(tmp_path, box_convention="mmdet")).make_dataset("test", train=False)
    assert (devkit.box_convention, mmdet.box_convention) == ("devkit", "mmdet")
    for i in range(2):
        devkit_boxes, mmdet_boxes = devkit[i][1]["boxes"], mmdet[i][1]["boxes"]
        assert len(devkit_boxes) > 0
        torch.testing.assert_close(mmdet_boxes.as_subclass(torch.Tensor), devkit_boxes.as_subclass(torch.Tensor) - 1)


@pytest.mark.parametrize("convention, expected_map", [("devkit", 1.0), ("mmdet", 3 / 11)])
def test_iou_crossing_one_half_changes_the_ap_as_hand_computed(tmp_path, convention, expected_map):
    # D1 covers the top half of G1 (rows 1-5, devkit pixels); D2 is exactly G2.
    # devkit (+1): |D1| = 10 x 5 = 50, |G1| = 100, IoU = 50 / 100 = 0.5 >= 0.5 -> TP; D2 TP -> AP 1.
    # mmdet (continuous, both boxes - 1): |D1| = 9 x 4 = 36, |G1| = 81, IoU = 36 / 81 < 0.5 -> FP at the
    # top score, then D2 TP: (recall, precision) = (0, 0), (0.5, 0.5); 11-point AP = 6 x 0.5 / 11 = 3/11.
    path = tmp_path / "a.xml"
    path.write_text(XML)
    ann = parse_voc_xml(path, box_convention=convention)
    shift = {"devkit": 0.0, "mmdet": -1.0}[convention]
    detections = {
        "boxes": torch.tensor([[1.0, 1.0, 10.0, 5.0], [21.0, 21.0, 40.0, 40.0]]) + shift,
        "scores": torch.tensor([0.9, 0.8]),
        "labels": ann["labels"],
    }
    module = DetectionModule(FixedDetections(detections), voc_config(tmp_path, box_convention=convention), VOC_CLASSES)
    module.log = lambda *args, **kwargs: None  # no trainer here
    target = {k: ann[k] for k in ("boxes", "labels", "difficult")}
    module.eval_step(([torch.zeros(3, 50, 60)], [target]), "val")
    module.eval_end("val")
    assert module.last_eval["map"] == pytest.approx(expected_map)
    assert module.last_eval["num_ground_truth"]["dog"] == 2


def test_unknown_box_convention_is_named(tmp_path):
    path = tmp_path / "a.xml"
    path.write_text(XML)
    with pytest.raises(ValueError, match="box_convention"):
        parse_voc_xml(path, box_convention="pascal")
    with pytest.raises(ValueError, match="box_convention"):
        pixel_offset_for("pascal")
    with pytest.raises(ValueError, match="data.options.box_convention: 'pascal'"):
        box_convention(voc_config(tmp_path, box_convention="pascal"))
    with pytest.raises(ValueError, match="box_convention"):
        VOCDetection(tmp_path, box_convention="zero_based", class_names=SYNTHETIC_CLASSES)


# One level, three anchors far apart, two classes. Best class score per anchor: A0 0.9, A1 0.85, A2 0.3.
ANCHORS = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0], [40.0, 40.0, 50.0, 50.0]])
SCORES = torch.tensor([[0.9, 0.88], [0.85, 0.1], [0.3, 0.02]])


def test_max_class_candidates_hand_case():
    anchor_idxs, labels, scores = max_class_candidates(torch.logit(SCORES), topk=2, score_thresh=0.05)
    # Top-2 anchors by best class: A0, A1; every class of theirs above 0.05.
    got = sorted(zip(anchor_idxs.tolist(), labels.tolist()))
    assert got == [(0, 0), (0, 1), (1, 0), (1, 1)]
    torch.testing.assert_close(scores, SCORES[anchor_idxs, labels])
    anchor_idxs, labels, _ = max_class_candidates(torch.logit(SCORES), topk=5, score_thresh=0.05)
    assert sorted(zip(anchor_idxs.tolist(), labels.tolist())) == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0)]


@pytest.mark.parametrize(
    "selection, expected",
    [
        # torchvision: the top-2 of all six (anchor, class) scores -> both classes of A0 only.
        ("torchvision", [(0.9, 0, 0), (0.88, 0, 1)]),
        # mmdet: the top-2 anchors A0, A1, then each of their classes above 0.05.
        ("max_class", [(0.9, 0, 0), (0.88, 0, 1), (0.85, 1, 0), (0.1, 1, 1)]),
    ],
)
def test_retinanet_candidates_differ_as_hand_computed(selection, expected):
    model = tiny_retinanet(topk_candidates=2, score_thresh=0.05, candidate_selection=selection).eval()
    assert model.candidate_selection == selection
    outputs = {"cls_logits": [torch.logit(SCORES)[None]], "bbox_regression": [torch.zeros(1, 3, 4)]}
    (det,) = model.postprocess_detections(outputs, [[ANCHORS]], [(60, 60)])
    assert det["scores"].tolist() == pytest.approx([s for s, _, _ in expected])
    assert det["labels"].tolist() == [c for _, _, c in expected]
    torch.testing.assert_close(det["boxes"], ANCHORS[[a for _, a, _ in expected]])  # zero deltas decode to the anchor


def test_max_class_retinanet_runs_end_to_end_and_bad_selection_is_named():
    model = tiny_retinanet(score_thresh=0.0, detections_per_img=20, candidate_selection="max_class").eval()
    images, _ = synthetic_batch()
    with torch.no_grad():
        outputs = model(images)
    for image, out in zip(images, outputs):
        assert 0 < len(out["boxes"]) <= 20
        assert out["labels"].min() >= 1 and out["labels"].max() <= 3
        assert (out["boxes"][:, 2] <= image.shape[-1] + 1e-3).all() and (out["boxes"][:, 3] <= image.shape[-2] + 1e-3).all()
    with pytest.raises(ValueError, match="candidate_selection: 'mmdet'"):
        tiny_retinanet(candidate_selection="mmdet")


def test_candidate_selection_reaches_the_model_from_the_config(tmp_path):
    from monatune.tasks.detection.module import build_detector

    cfg = voc_config(tmp_path)
    assert build_detector(cfg).candidate_selection == "torchvision"
    cfg.model.head_options = {"fpn_channels": 16, "candidate_selection": "max_class"}
    assert build_detector(cfg).candidate_selection == "max_class"
