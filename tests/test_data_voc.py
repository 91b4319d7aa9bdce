"""VOC reader: reads what write_voc writes (07+12), keeps difficult, and names bad files and folders."""

import numpy as np
import pytest
import torch

from monatune.data.errors import DatasetError
from monatune.data.synthetic_scenes import SYNTHETIC_CLASSES, split_scenes, write_voc
from monatune.data.voc import VOC_CLASSES, VOCDetection, parse_voc_xml

XML = """<annotation><filename>x.jpg</filename><size><width>50</width><height>40</height><depth>3</depth></size>
<object><name>dog</name><difficult>0</difficult><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>30</xmax><ymax>40</ymax></bndbox></object>
<object><name>person</name><difficult>1</difficult><bndbox><xmin>5.5</xmin><ymin>6</ymin><xmax>7</xmax><ymax>8</ymax></bndbox></object>
</annotation>"""


def test_parse_hand_written_xml(tmp_path):
    path = tmp_path / "a.xml"
    path.write_text(XML)
    ann = parse_voc_xml(path)
    assert len(VOC_CLASSES) == 20
    assert ann["boxes"].tolist() == [[1, 2, 30, 40], [5.5, 6, 7, 8]]
    assert ann["labels"].tolist() == [VOC_CLASSES.index("dog") + 1, VOC_CLASSES.index("person") + 1]
    assert ann["difficult"].tolist() == [False, True]
    assert (ann["height"], ann["width"]) == (40, 50)


def test_reads_what_write_voc_writes_for_07_plus_12(tmp_path):
    root = write_voc(tmp_path, 3, size=(48, 64), seed=1, image_set="trainval", year="2007")
    write_voc(tmp_path, 2, size=(48, 64), seed=1, image_set="trainval", year="2012")
    dataset = VOCDetection(root, [("2007", "trainval"), ("2012", "trainval")], class_names=SYNTHETIC_CLASSES)
    assert len(dataset) == 5 and dataset.ids[3] == ("2012", "trainval_000000")
    scenes = split_scenes(3, (48, 64), 1, "trainval")
    for i, scene in enumerate(scenes):
        image, target = dataset[i]
        assert image.shape == (3, 48, 64) and image.dtype == torch.uint8
        # devkit convention: 1-based inclusive, so xmin = x1 + 1 and xmax = x2
        expected = scene.boxes + np.array([1, 1, 0, 0], np.float32)
        assert target["boxes"].tolist() == expected.tolist()
        assert target["labels"].tolist() == scene.labels.tolist()
        assert target["difficult"].tolist() == scene.difficult.tolist()
        assert target["boxes"].canvas_size == (48, 64) and target["image_id"] == i


def test_skip_difficult_and_transforms(tmp_path):
    root = write_voc(tmp_path, 8, size=64, seed=3)
    full = VOCDetection(root, class_names=SYNTHETIC_CLASSES)
    easy = VOCDetection(root, class_names=SYNTHETIC_CLASSES, skip_difficult=True, transforms=lambda im, t: (im.float(), t))
    n_full = sum(len(full[i][1]["labels"]) for i in range(8))
    n_difficult = sum(int(full[i][1]["difficult"].sum()) for i in range(8))
    assert n_difficult > 0, "seed 3 should produce some difficult objects"
    assert sum(len(easy[i][1]["labels"]) for i in range(8)) == n_full - n_difficult
    assert easy[0][0].dtype == torch.float32


def test_malformed_xml_names_the_file(tmp_path):
    root = write_voc(tmp_path, 2, size=32, seed=0)
    bad = root / "VOC2007" / "Annotations" / "trainval_000001.xml"
    bad.write_text("<annotation><size>")
    dataset = VOCDetection(root, class_names=SYNTHETIC_CLASSES)
    dataset[0]
    with pytest.raises(DatasetError, match="trainval_000001.xml.*malformed XML") as info:
        dataset[1]
    assert info.value.path == bad


@pytest.mark.parametrize(
    "xml, problem",
    [
        (XML.replace("dog", "unicorn"), "unknown class 'unicorn'"),
        (XML.replace("<xmax>30</xmax>", ""), "object 0: missing <xmax>"),
        (XML.replace("<ymin>6</ymin>", "<ymin>six</ymin>"), "object 1: <ymin> is not a number"),
        (XML.replace("<size>", "<sise>").replace("</size>", "</sise>"), "missing <size>"),
    ],
)
def test_bad_annotation_content_is_reported(tmp_path, xml, problem):
    path = tmp_path / "b.xml"
    path.write_text(xml)
    with pytest.raises(DatasetError, match=problem):
        parse_voc_xml(path)


def test_missing_root_folder_and_list_are_named(tmp_path):
    with pytest.raises(DatasetError, match="VOCdevkit root not found"):
        VOCDetection(tmp_path / "nope")
    root = write_voc(tmp_path, 1, size=32, seed=0)
    with pytest.raises(DatasetError, match=r"VOC2012[/\\]Annotations: folder not found"):
        VOCDetection(root, [("2012", "trainval")])
    with pytest.raises(DatasetError, match=r"Main[/\\]test.txt: image-set list not found"):
        VOCDetection(root, [("2007", "test")])
    (root / "VOC2007" / "JPEGImages" / "trainval_000000.jpg").unlink()
    with pytest.raises(DatasetError, match="trainval_000000.jpg: image file not found"):
        VOCDetection(root, class_names=SYNTHETIC_CLASSES)[0]
