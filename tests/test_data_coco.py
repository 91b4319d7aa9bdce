"""COCO reader: exact round trip of write_coco (polygon / RLE / compressed RLE), crowd handling, errors."""

import json

import numpy as np
import pytest
import torch

from monatune.data.coco import COCODetection, segmentation_to_mask
from monatune.data.errors import DatasetError
from monatune.data.synthetic_scenes import COCO_CATEGORY_IDS, SYNTHETIC_CLASSES, split_scenes, write_coco


@pytest.mark.parametrize("mask_format", ["polygon", "rle", "compressed_rle"])
def test_reads_what_write_coco_writes(tmp_path, mask_format):
    ann_file = write_coco(tmp_path, 3, size=(40, 56), seed=2, split="val2017", mask_format=mask_format)
    dataset = COCODetection(tmp_path / "val2017", ann_file)
    assert dataset.class_names == SYNTHETIC_CLASSES
    assert dataset.label_to_category_id == {k + 1: cid for k, cid in enumerate(COCO_CATEGORY_IDS)}
    for i, scene in enumerate(split_scenes(3, (40, 56), 2, "val2017")):
        image, target = dataset[i]
        assert image.shape == (3, 40, 56) and target["image_id"] == i + 1
        assert target["boxes"].tolist() == scene.boxes.tolist()
        assert target["labels"].tolist() == scene.labels.tolist()
        assert target["masks"].dtype == torch.uint8
        np.testing.assert_array_equal(target["masks"].numpy(), scene.instance_masks)
        assert target["area"].tolist() == scene.instance_masks.sum(axis=(1, 2)).tolist()
        assert target["iscrowd"].tolist() == [0] * len(scene.labels)


def write_json(tmp_path, annotations, images=None):
    (tmp_path / "img").mkdir(exist_ok=True)
    data = {
        "images": images if images is not None else [{"id": 7, "file_name": "a.jpg", "height": 10, "width": 12}],
        "annotations": annotations,
        "categories": [{"id": 3, "name": "cat"}, {"id": 1, "name": "person"}],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return path


def test_crowd_is_skipped_for_training_and_kept_for_eval(tmp_path):
    from PIL import Image

    anns = [
        {"id": 1, "image_id": 7, "category_id": 3, "bbox": [1, 1, 4, 3], "iscrowd": 0, "segmentation": [[1, 1, 5, 1, 5, 4, 1, 4]]},
        {"id": 2, "image_id": 7, "category_id": 1, "bbox": [0, 5, 12, 5], "iscrowd": 1,
         "segmentation": {"size": [10, 12], "counts": [5, 5, 110]}},
        {"id": 3, "image_id": 7, "category_id": 1, "bbox": [0, 0, 0.5, 3], "iscrowd": 0, "segmentation": [[0, 0, 0.5, 0, 0.5, 3]]},
    ]
    path = write_json(tmp_path, anns)
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(tmp_path / "img" / "a.jpg")
    train = COCODetection(tmp_path / "img", path)
    _, target = train[0]
    assert target["labels"].tolist() == [2]  # category 3 -> label 2 (ids sorted: 1, 3); thin box dropped
    assert target["boxes"].tolist() == [[1, 1, 5, 4]]
    assert target["masks"][0].sum() == 4 * 3
    _, target = COCODetection(tmp_path / "img", path, include_crowd=True)[0]
    assert target["iscrowd"].tolist() == [0, 1]
    assert target["masks"][1, 5:10, 0].all() and target["masks"][1].sum() == 5


def test_skip_empty_drops_images_without_kept_annotations(tmp_path):
    images = [{"id": k, "file_name": f"{k}.jpg", "height": 10, "width": 12} for k in (1, 2)]
    anns = [{"id": 1, "image_id": 2, "category_id": 1, "bbox": [1, 1, 4, 3], "segmentation": [[1, 1, 5, 1, 5, 4]]}]
    path = write_json(tmp_path, anns, images)
    assert COCODetection(tmp_path / "img", path).ids == [1, 2]
    assert COCODetection(tmp_path / "img", path, skip_empty=True).ids == [2]


def test_malformed_json_names_file_and_key(tmp_path):
    path = tmp_path / "instances.json"
    (tmp_path / "img").mkdir()
    path.write_text('{"images": [}')
    with pytest.raises(DatasetError, match="instances.json: malformed JSON at line 1"):
        COCODetection(tmp_path / "img", path)
    path.write_text('{"images": [], "categories": []}')
    with pytest.raises(DatasetError, match="top level: missing key 'annotations'"):
        COCODetection(tmp_path / "img", path)
    path = write_json(tmp_path, [{"id": 1, "image_id": 7, "category_id": 1}])
    with pytest.raises(DatasetError, match=r"annotations\[0\]: missing key 'bbox'"):
        COCODetection(tmp_path / "img", path)
    path = write_json(tmp_path, [{"id": 1, "image_id": 7, "category_id": 2, "bbox": [0, 0, 1, 1], "segmentation": []}])
    with pytest.raises(DatasetError, match="category_id 2 not in 'categories'"):
        COCODetection(tmp_path / "img", path)
    with pytest.raises(DatasetError, match="image folder not found"):
        COCODetection(tmp_path / "nope", path)


def test_bad_segmentation_names_annotation(tmp_path):
    from PIL import Image

    anns = [{"id": 9, "image_id": 7, "category_id": 1, "bbox": [0, 0, 4, 4], "segmentation": {"size": [10, 12], "counts": [3]}}]
    path = write_json(tmp_path, anns)
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(tmp_path / "img" / "a.jpg")
    with pytest.raises(DatasetError, match="annotation id 9: bad 'segmentation'"):
        COCODetection(tmp_path / "img", path)[0]


def test_polygon_rasterisation_covers_pixel_centres():
    mask = segmentation_to_mask([[2, 1, 6, 1, 6, 4, 2, 4]], 6, 8)
    expected = np.zeros((6, 8), np.uint8)
    expected[1:4, 2:6] = 1
    np.testing.assert_array_equal(mask, expected)
