"""Pascal VOC detection reader: a VOCdevkit folder (VOC2007 and/or VOC2012) -> (image, target) pairs.

Layout expected under ``root`` (the ``VOCdevkit`` folder)::

    VOC2007/Annotations/<id>.xml
    VOC2007/JPEGImages/<id>.jpg
    VOC2007/ImageSets/Main/<image_set>.txt      (one id per line: trainval, test, train, val, ...)

Box coordinates follow ``box_convention``: ``"devkit"`` (default) returns them as the XML stores them
(the devkit's 1-based, inclusive pixel indices; we do not truncate them to int as mmdet does) and
:class:`~monatune.metrics.voc07_map.VOC07MAP` scores them with ``pixel_offset=1``; ``"mmdet"`` (the
mmdet 2.11 parity option, SPEC §8.11) shifts all four by -1 and is scored with continuous IoU
(``pixel_offset=0``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from monatune.data.errors import DatasetError, read_rgb_image

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)  # fmt: skip

Target = dict[str, Any]
BOX_CONVENTIONS = ("devkit", "mmdet")
# Added to the XML's (xmin, ymin, xmax, ymax) when reading.
_BOX_SHIFT = {"devkit": 0.0, "mmdet": -1.0}


def check_box_convention(box_convention: str) -> str:
    """``box_convention`` if it is one of :data:`BOX_CONVENTIONS`, else ValueError naming it."""
    if box_convention not in BOX_CONVENTIONS:
        raise ValueError(f"box_convention: {box_convention!r} is not one of {', '.join(BOX_CONVENTIONS)}")
    return box_convention


def _child_text(node: ET.Element, tag: str, path: Path, where: str) -> str:
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise DatasetError(path, f"{where}: missing <{tag}>")
    return child.text.strip()


def _child_number(node: ET.Element, tag: str, path: Path, where: str) -> float:
    text = _child_text(node, tag, path, where)
    try:
        return float(text)
    except ValueError:
        raise DatasetError(path, f"{where}: <{tag}> is not a number: {text!r}") from None


def parse_voc_xml(
    path: str | Path, class_names: Sequence[str] = VOC_CLASSES, box_convention: str = "devkit"
) -> dict[str, Any]:
    """Read one VOC annotation file.

    Returns ``dict(filename, height, width, boxes (N, 4) float32 xyxy, labels (N,) int64 in 1..C
    (index in ``class_names`` + 1; 0 is background), difficult (N,) bool)``; boxes as the XML has
    them (``box_convention="devkit"``) or each coordinate minus 1 (``"mmdet"``).
    Raises :class:`DatasetError` naming the file for malformed XML, unknown classes or bad boxes.
    """
    shift = _BOX_SHIFT[check_box_convention(box_convention)]
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise DatasetError(path, "annotation file not found") from None
    except ET.ParseError as exc:
        raise DatasetError(path, f"malformed XML ({exc})") from None
    size = root.find("size")
    if size is None:
        raise DatasetError(path, "missing <size>")
    height = int(_child_number(size, "height", path, "<size>"))
    width = int(_child_number(size, "width", path, "<size>"))
    index = {name: i + 1 for i, name in enumerate(class_names)}
    boxes, labels, difficult = [], [], []
    for k, obj in enumerate(root.iter("object")):
        where = f"object {k}"
        name = _child_text(obj, "name", path, where)
        if name not in index:
            raise DatasetError(path, f"{where}: unknown class {name!r}")
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise DatasetError(path, f"{where}: missing <bndbox>")
        box = [_child_number(bndbox, tag, path, where) for tag in ("xmin", "ymin", "xmax", "ymax")]
        if box[2] < box[0] or box[3] < box[1]:
            raise DatasetError(path, f"{where}: box {box} has xmax < xmin or ymax < ymin")
        flag = obj.find("difficult")
        boxes.append(box)
        labels.append(index[name])
        difficult.append(flag is not None and _child_number(obj, "difficult", path, where) != 0)
    filename_node = root.find("filename")
    return {
        "filename": filename_node.text.strip() if filename_node is not None and filename_node.text else None,
        "height": height,
        "width": width,
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4) + shift,
        "labels": torch.tensor(labels, dtype=torch.int64),
        "difficult": torch.tensor(difficult, dtype=torch.bool),
    }


class VOCDetection(Dataset):
    """Pascal VOC detection over one or more (year, image set) pairs, e.g. VOC 07+12 trainval.

    Item ``i`` is ``(image, target)``: ``image`` a ``tv_tensors.Image`` (3, H, W) uint8, ``target``
    ``dict(boxes=tv_tensors.BoundingBoxes (N, 4) float32 xyxy in pixels, labels (N,) int64 in
    1..20, difficult (N,) bool, image_id=int (the item index))``; ``transforms(image, target)``
    is applied last. ``ids[i]`` is ``(year, name)``.
    ``skip_difficult`` drops difficult boxes (mmdet trains without them); evaluation keeps them
    so the metric can ignore them. ``box_convention``: see :func:`parse_voc_xml`.
    """

    def __init__(
        self,
        root: str | Path,
        image_sets: Sequence[tuple[str, str]] = (("2007", "trainval"),),
        transforms: Callable[[tv_tensors.Image, Target], tuple[Any, Any]] | None = None,
        skip_difficult: bool = False,
        class_names: Sequence[str] = VOC_CLASSES,
        box_convention: str = "devkit",
    ) -> None:
        self.box_convention = check_box_convention(box_convention)
        self.root = Path(root)
        self.transforms = transforms
        self.skip_difficult = skip_difficult
        self.class_names = tuple(class_names)
        if not self.root.is_dir():
            raise DatasetError(self.root, "VOCdevkit root not found; expected a folder holding VOC2007/ and/or VOC2012/")
        self.ids: list[tuple[str, str]] = []
        for year, image_set in image_sets:
            year_dir = self.root / f"VOC{year}"
            for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
                if not (year_dir / sub).is_dir():
                    raise DatasetError(year_dir / sub, f"folder not found; VOC{year} needs Annotations/, JPEGImages/ and ImageSets/Main/")
            list_file = year_dir / "ImageSets" / "Main" / f"{image_set}.txt"
            if not list_file.is_file():
                raise DatasetError(list_file, f"image-set list not found (one image id per line for '{image_set}')")
            names = [line.split()[0] for line in list_file.read_text().splitlines() if line.strip()]
            self.ids.extend((year, name) for name in names)

    def __len__(self) -> int:
        return len(self.ids)

    def annotation_path(self, index: int) -> Path:
        year, name = self.ids[index]
        return self.root / f"VOC{year}" / "Annotations" / f"{name}.xml"

    def image_path(self, index: int) -> Path:
        year, name = self.ids[index]
        return self.root / f"VOC{year}" / "JPEGImages" / f"{name}.jpg"

    def sample_files(self, index: int) -> tuple[Path, ...]:
        return (self.image_path(index), self.annotation_path(index))

    def check_sample(self, index: int) -> None:
        """Parse the XML and decode the image as training does (see :mod:`monatune.data.verify`)."""
        self._load(index)

    def keep_samples(self, indices: Sequence[int]) -> None:
        self.ids = [self.ids[i] for i in indices]

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        image, target = self._load(index)
        if self.transforms is not None:
            return self.transforms(image, target)
        return image, target

    def _load(self, index: int) -> tuple[tv_tensors.Image, Target]:
        ann = parse_voc_xml(self.annotation_path(index), self.class_names, self.box_convention)
        image = read_rgb_image(self.image_path(index))
        height, width = image.shape[-2:]
        if (ann["height"], ann["width"]) != (height, width):
            raise DatasetError(
                self.annotation_path(index),
                f"<size> says {ann['height']}x{ann['width']} but the image is {height}x{width}",
            )
        keep = ~ann["difficult"] if self.skip_difficult else torch.ones_like(ann["difficult"])
        target = {
            "boxes": tv_tensors.BoundingBoxes(ann["boxes"][keep], format="XYXY", canvas_size=(height, width)),
            "labels": ann["labels"][keep],
            "difficult": ann["difficult"][keep],
            "image_id": index,
        }
        return image, target


def voc_image_sets(split: str) -> list[tuple[str, str]]:
    """``"2007/trainval+2012/trainval"`` (or ``VOC2007/...``) -> ``[("2007", "trainval"), ("2012", "trainval")]``."""
    sets = []
    for part in split.split("+"):
        year, sep, name = part.strip().removeprefix("VOC").partition("/")
        if not sep or not year.isdigit() or not name:
            raise ValueError(f"VOC split {split!r}: expected YEAR/IMAGE_SET parts joined by '+', e.g. 2007/trainval+2012/trainval")
        sets.append((year, name))
    return sets
