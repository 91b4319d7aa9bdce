"""DOTA labels, the DOTA evaluator, Task1 files, patch split/merge, synthetic data and the configs."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from monatune.data.dota import DOTA_V1_CLASSES, STAR_CLASSES, DotaDataset, collate_oriented, read_dota_labels, write_dota_labels
from monatune.data.errors import DatasetError
from monatune.data.synthetic_rotated import SYNTHETIC_DOTA_CLASSES, write_synthetic_dota
from monatune.metrics.dota_map import evaluate_dota, polygon_iou, read_task1_submission, write_task1_submission
from monatune.ops.rotated_boxes import boxes_to_polygons, polygons_to_boxes
from monatune.ops.rotated_iou import rotated_box_iou
from monatune.tasks.oriented.patches import merge_patch_detections, parse_patch_name, patch_origins, patch_windows, split_dota

LABELS = """imagesource:GoogleEarth
gsd:0.146343590398
10 10 50 10 50 30 10 30 plane 0

100.5 200 140 200 140 220 100.5 220 ship 1
5 5 9 5 9 9 5 9 storage-tank
"""


def test_read_dota_labels(tmp_path):
    path = tmp_path / "P0001.txt"
    path.write_text(LABELS)
    labels = read_dota_labels(path, DOTA_V1_CLASSES)
    assert labels.header == {"imagesource": "GoogleEarth", "gsd": "0.146343590398"}
    assert labels.names == ["plane", "ship", "storage-tank"]
    assert labels.difficult.tolist() == [0, 1, 0]  # a missing flag reads as 0
    assert labels.polygons.shape == (3, 8) and labels.polygons[1, 0] == 100.5
    assert labels.labels(DOTA_V1_CLASSES).tolist() == [0, 6, 9]
    write_dota_labels(tmp_path / "copy.txt", labels.polygons, labels.names, labels.difficult, labels.header)
    again = read_dota_labels(tmp_path / "copy.txt", DOTA_V1_CLASSES)
    np.testing.assert_allclose(again.polygons, labels.polygons)
    assert again.names == labels.names and again.header == labels.header


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ("10 10 50 10 50 30 10 plane 0", "line 2: expected 8 coordinates"),
        ("10 10 50 x 50 30 10 30 plane 0", "line 2: coordinates must be numbers"),
        ("10 10 50 10 50 30 10 30 aeroplane 0", "line 2: unknown class 'aeroplane'"),
        ("10 10 50 10 50 30 10 30 plane yes", "line 2: difficult flag"),
        ("10 10 50 10 50 nan 10 30 plane 0", "line 2: coordinates must be finite"),
    ],
)
def test_malformed_label_line_names_file_and_line(tmp_path, bad_line, message):
    path = tmp_path / "P0042.txt"
    path.write_text("10 10 50 10 50 30 10 30 plane 0\n" + bad_line + "\n")
    with pytest.raises(DatasetError, match=message) as info:
        read_dota_labels(path, DOTA_V1_CLASSES)
    assert "P0042.txt" in str(info.value)


def square(cx, cy, side=10.0, theta=0.0):
    return boxes_to_polygons(torch.tensor([[cx, cy, side, side, theta]], dtype=torch.float64))[0].numpy()


def test_evaluator_hand_cases():
    gt = {
        "a": {"polygons": np.stack([square(10, 10), square(50, 50)]), "labels": np.array([0, 0]), "difficult": np.array([False, True])},
        "b": {"polygons": np.stack([square(30, 30), square(80, 80)]), "labels": np.array([0, 1]), "difficult": np.array([False, False])},
    }
    perfect = {
        "a": {"polygons": np.stack([square(10, 10)]), "scores": np.array([0.9]), "labels": np.array([0])},
        "b": {"polygons": np.stack([square(30, 30), square(80, 80)]), "scores": np.array([0.8, 0.7]), "labels": np.array([0, 1])},
    }
    result = evaluate_dota(perfect, gt, ["c0", "c1", "c2"])
    assert result.ap["c0"] == pytest.approx(1.0) and result.ap["c1"] == pytest.approx(1.0)
    assert math.isnan(result.ap["c2"]) and result.mean_ap == pytest.approx(1.0)
    assert result.num_ground_truth == {"c0": 2, "c1": 1, "c2": 0}  # the difficult object is not counted

    # Class 0 ranked: 0.95 matches the difficult object (ignored), 0.9 TP, 0.85 duplicate (FP),
    # 0.8 off target (FP), 0.6 TP. Precision at recall 0.5 is 1, at recall 1 it is 2/4.
    # 11-point AP = (6 * 1 + 5 * 0.5) / 11.
    dets = {
        "a": {"polygons": np.stack([square(50, 50), square(10, 10), square(10.5, 10), square(200, 200)]),
              "scores": np.array([0.95, 0.9, 0.85, 0.8]), "labels": np.array([0, 0, 0, 0])},
        "b": {"polygons": np.stack([square(30, 30)]), "scores": np.array([0.6]), "labels": np.array([0])},
    }  # fmt: skip
    result = evaluate_dota(dets, gt, ["c0", "c1"])
    assert result.ap["c0"] == pytest.approx((6 * 1 + 5 * 0.5) / 11)
    assert result.ap["c1"] == 0.0 and result.mean_ap == pytest.approx(result.ap["c0"] / 2)


def test_evaluator_uses_polygon_not_horizontal_iou():
    thin = boxes_to_polygons(torch.tensor([[0, 0, 40, 4, math.pi / 4], [0, 0, 40, 4, -math.pi / 4]], dtype=torch.float64)).numpy()
    assert polygon_iou(thin[0], thin[1]) < 0.5  # a cross; their horizontal boxes are identical
    gt = {"x": {"polygons": thin[:1], "labels": np.array([0]), "difficult": np.array([False])}}
    dets = {"x": {"boxes": torch.tensor([[0, 0, 40, 4, -math.pi / 4]]), "scores": torch.tensor([0.9]), "labels": torch.tensor([0])}}
    assert evaluate_dota(dets, gt, ["c0"]).ap["c0"] == 0.0


def test_task1_submission_round_trip(tmp_path):
    dets = {
        "P0001": {
            "boxes": torch.tensor([[10.0, 20, 8, 4, 0.3], [50, 50, 6, 6, 0]]),
            "scores": torch.tensor([0.9, 0.4]),
            "labels": torch.tensor([0, 2]),
        },
        "P0002": {"boxes": torch.tensor([[30.0, 30, 10, 5, -0.5]]), "scores": torch.tensor([0.7]), "labels": torch.tensor([0])},
    }
    paths = write_task1_submission(tmp_path / "sub", dets, ["plane", "ship", "tank"])
    assert [p.name for p in paths] == ["Task1_plane.txt", "Task1_ship.txt", "Task1_tank.txt"]
    first = paths[0].read_text().splitlines()[0].split()
    assert first[0] == "P0001" and float(first[1]) == pytest.approx(0.9) and len(first) == 10
    assert paths[1].read_text() == ""
    back = read_task1_submission(tmp_path / "sub", ["plane", "ship", "tank"])
    np.testing.assert_allclose(back["P0001"]["polygons"][0], boxes_to_polygons(dets["P0001"]["boxes"][:1].double())[0].numpy(), atol=0.006)
    assert back["P0001"]["labels"].tolist() == [0, 2]


def test_patch_windows():
    assert patch_origins(1000) == [0]
    assert patch_origins(1500) == [0, 476]  # the last patch ends at the border
    assert patch_origins(2000) == [0, 824, 976]
    assert len(patch_windows(2000, 1500)) == 6
    assert parse_patch_name("P0003__1__824___976") == ("P0003", 824, 976)
    assert parse_patch_name("P0003") == ("P0003", 0, 0)


def test_split_then_merge_recovers_every_object(tmp_path):
    rng = np.random.default_rng(0)
    width, height = 1500, 1100
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    (src / "labelTxt").mkdir()
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(src / "images" / "P0007.png")
    centres = [(100, 100), (900, 500), (1450, 1050), (700, 950), (500, 560), (1200, 200)]  # several in overlaps
    boxes = torch.tensor([[x, y, 60, 24, 0.1 * i] for i, (x, y) in enumerate(centres)], dtype=torch.float64)
    polys = np.round(boxes_to_polygons(boxes).numpy(), 1)
    write_dota_labels(src / "labelTxt" / "P0007.txt", polys, ["plane", "ship"] * 3, [0, 0, 1, 0, 0, 0])
    names = split_dota(src, tmp_path / "dst", patch_size=1024, overlap=200).patches
    assert len(names) == 4 and all(Image.open(tmp_path / "dst" / "images" / f"{n}.png").size == (1024, 1024) for n in names)
    # "Detect" each patch perfectly: its labels as boxes, then merge back into the full image.
    patch_results, copies = {}, 0
    for name in names:
        labels = read_dota_labels(tmp_path / "dst" / "labelTxt" / f"{name}.txt", DOTA_V1_CLASSES)
        copies += len(labels.names)
        patch_results[name] = {
            "boxes": polygons_to_boxes(torch.from_numpy(labels.polygons), "le90"),
            "scores": torch.linspace(0.9, 0.5, len(labels.names), dtype=torch.float64),
            "labels": torch.from_numpy(labels.labels(DOTA_V1_CLASSES)),
        }
    assert copies > len(centres)  # objects in the overlaps were written to several patches
    merged = merge_patch_detections(patch_results)
    assert list(merged) == ["P0007"]
    found = merged["P0007"]["boxes"]
    assert len(found) == len(centres)
    iou = rotated_box_iou(found, polygons_to_boxes(torch.from_numpy(polys), "le90"))
    assert (iou.max(dim=0).values > 0.99).all()


def test_synthetic_dota_dataset(tmp_path):
    ids = write_synthetic_dota(tmp_path, num_images=4, image_size=96, seed=3)
    assert ids == ["S0000", "S0001", "S0002", "S0003"]
    assert (tmp_path / "labelTxt" / "S0000.txt").read_text().startswith("imagesource:")
    again = tmp_path / "again"
    write_synthetic_dota(again, num_images=4, image_size=96, seed=3)
    assert (again / "labelTxt" / "S0002.txt").read_text() == (tmp_path / "labelTxt" / "S0002.txt").read_text()

    data = DotaDataset(tmp_path, SYNTHETIC_DOTA_CLASSES, convention="oc")
    image, target = data[0]
    assert image.shape == (3, 96, 96) and image.dtype == torch.float32 and 0 <= image.min() and image.max() <= 1
    assert target["boxes"].shape == (len(target["labels"]), 5) and target["labels"].dtype == torch.int64
    assert (target["boxes"][:, 4] > 0).all() and (target["boxes"][:, 4] <= math.pi / 2 + 1e-6).all()
    # The drawn colour sits at every box centre.
    for box, label in zip(target["boxes"], target["labels"]):
        pixel = (image[:, int(box[1]), int(box[0])] * 255).round()
        assert pixel.argmax().item() == [0, 1, 2][label]
    images, targets = collate_oriented([data[0], data[1]])
    assert len(images) == 2 and targets[1]["image_id"] == "S0001"

    flipped = DotaDataset(tmp_path, SYNTHETIC_DOTA_CLASSES, flip_prob=1.0, flip_directions=("vertical",))
    f_image, f_target = flipped[0]
    torch.testing.assert_close(f_image, image.flip(-2))
    expected = target["polygons"].clone()
    expected[:, 1::2] = 96 - expected[:, 1::2]
    torch.testing.assert_close(f_target["polygons"], expected)


def test_dataset_without_labels_and_missing_label_file(tmp_path):
    write_synthetic_dota(tmp_path, num_images=2, image_size=64)
    (tmp_path / "labelTxt" / "S0001.txt").unlink()
    with pytest.raises(DatasetError, match="S0001.txt"):
        DotaDataset(tmp_path, SYNTHETIC_DOTA_CLASSES)
    for f in (tmp_path / "labelTxt").iterdir():
        f.unlink()
    (tmp_path / "labelTxt").rmdir()
    _, target = DotaDataset(tmp_path, SYNTHETIC_DOTA_CLASSES)[0]  # a test split: no objects
    assert target["boxes"].shape == (0, 5)


def test_class_lists():
    assert len(DOTA_V1_CLASSES) == 15 and len(STAR_CLASSES) == 48
    assert len(set(STAR_CLASSES)) == 48


def test_oriented_paper_configs_load():
    """(That every paper config is what its generator gives: tests/test_paper_configs_current.py.)"""
    from monatune.engine.config import load_config
    from monatune.methods import methods

    root = Path(__file__).resolve().parents[1] / "configs" / "paper" / "oriented"
    assert len(list(root.rglob("*.yaml"))) == 2 * 3 * len(methods())
    cfg = load_config(root / "dota" / "h2rbox_v2" / "mona.yaml")
    assert cfg.task == "oriented" and cfg.model.head == "h2rbox_v2" and cfg.optim.lr == 5e-5
    assert cfg.model.num_classes == 15 and cfg.optim.milestones == [8, 11]
    assert load_config(root / "star" / "oriented_rcnn" / "lora.yaml").model.num_classes == 48
    for small in sorted((root.parents[1] / "small").glob("oriented*.yaml")):
        assert load_config(small).task == "oriented"
