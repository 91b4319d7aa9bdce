"""COCO instances reader: ``annotations/instances_<split>.json`` + an image folder -> (image, target).

Category ids (1..90 with gaps in COCO) are mapped to contiguous labels 1..K in increasing id order
(0 stays background, as torchvision detection models expect); ``label_to_category_id`` maps back
for writing result files. Masks come from polygons, uncompressed RLE or compressed RLE, decoded with
faster-coco-eval's mask API (the pycocotools rasteriser, so they match the official evaluation).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from faster_coco_eval.core import mask as mask_api
from torch.utils.data import Dataset
from torchvision import tv_tensors

from monatune.data.errors import DatasetError, read_rgb_image

Target = dict[str, Any]


def _require(entry: dict, key: str, path: Path, where: str) -> Any:
    if not isinstance(entry, dict) or key not in entry:
        raise DatasetError(path, f"{where}: missing key '{key}'")
    return entry[key]


def load_coco_json(path: str | Path) -> dict[str, Any]:
    """Load and check an instances JSON: the top-level keys and each entry's required keys.

    Raises :class:`DatasetError` naming the file (and key) when it is missing, not JSON, or lacks a key.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(path, "annotation file not found (expected annotations/instances_<split>.json)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(path, f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    for key in ("images", "annotations", "categories"):
        if not isinstance(_require(data, key, path, "top level"), list):
            raise DatasetError(path, f"top level: key '{key}' must be a list")
    for k, img in enumerate(data["images"]):
        for key in ("id", "file_name", "height", "width"):
            _require(img, key, path, f"images[{k}]")
    for k, cat in enumerate(data["categories"]):
        for key in ("id", "name"):
            _require(cat, key, path, f"categories[{k}]")
    for k, ann in enumerate(data["annotations"]):
        for key in ("image_id", "category_id", "bbox"):
            _require(ann, key, path, f"annotations[{k}]")
    return data


def segmentation_to_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """Rasterise one COCO ``segmentation`` (polygon list, uncompressed or compressed RLE) to (H, W) uint8."""
    if isinstance(segmentation, list):  # polygons: one object may have several parts
        rles = mask_api.frPyObjects(segmentation, height, width)
        rle = mask_api.merge(rles) if len(rles) > 1 else rles[0]
    elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
        rle = mask_api.frPyObjects(segmentation, height, width)
    elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), (str, bytes)):
        rle = segmentation
    else:
        raise ValueError(f"unknown segmentation format {type(segmentation).__name__}")
    return mask_api.decode(rle).astype(np.uint8)


class COCODetection(Dataset):
    """COCO-format detection / instance segmentation.

    Item ``i`` is ``(image, target)``: ``image`` a ``tv_tensors.Image`` (3, H, W) uint8; ``target``
    ``dict(boxes=tv_tensors.BoundingBoxes (N, 4) float32 xyxy, labels (N,) int64 in 1..K,
    masks=tv_tensors.Mask (N, H, W) uint8 (when ``with_masks``), iscrowd (N,) int64, area (N,)
    float32, image_id=int COCO id)``; ``transforms(image, target)`` is applied last.
    Crowd annotations are dropped unless ``include_crowd`` (set it for evaluation so they are
    ignored rather than counted as misses). Boxes under 1 pixel wide or high are dropped, as mmdet does.
    ``skip_empty`` drops images with no kept annotation (training).
    """

    def __init__(
        self,
        image_dir: str | Path,
        annotation_file: str | Path,
        transforms: Callable[[tv_tensors.Image, Target], tuple[Any, Any]] | None = None,
        with_masks: bool = True,
        include_crowd: bool = False,
        skip_empty: bool = False,
    ) -> None:
        self.image_dir = Path(image_dir)
        self.annotation_file = Path(annotation_file)
        self.transforms = transforms
        self.with_masks = with_masks
        self.include_crowd = include_crowd
        if not self.image_dir.is_dir():
            raise DatasetError(self.image_dir, "image folder not found (expected the <split>/ folder of .jpg files)")
        data = load_coco_json(self.annotation_file)
        category_ids = sorted(int(c["id"]) for c in data["categories"])
        names = {int(c["id"]): str(c["name"]) for c in data["categories"]}
        self.category_id_to_label = {cid: k + 1 for k, cid in enumerate(category_ids)}
        self.label_to_category_id = {k: cid for cid, k in self.category_id_to_label.items()}
        self.class_names = tuple(names[cid] for cid in category_ids)
        self.images = {int(img["id"]): img for img in data["images"]}
        self.annotations: dict[int, list[dict]] = {image_id: [] for image_id in self.images}
        for k, ann in enumerate(data["annotations"]):
            image_id, category_id = int(ann["image_id"]), int(ann["category_id"])
            if image_id not in self.images:
                raise DatasetError(self.annotation_file, f"annotations[{k}]: image_id {image_id} not in 'images'")
            if category_id not in self.category_id_to_label:
                raise DatasetError(self.annotation_file, f"annotations[{k}]: category_id {category_id} not in 'categories'")
            if with_masks and "segmentation" not in ann:
                raise DatasetError(self.annotation_file, f"annotations[{k}]: missing key 'segmentation'")
            self.annotations[image_id].append(ann)
        self.ids = sorted(self.images)
        if skip_empty:
            self.ids = [i for i in self.ids if any(self._keep(a) for a in self.annotations[i])]

    def _keep(self, ann: dict) -> bool:
        x, y, w, h = ann["bbox"]
        return (self.include_crowd or not ann.get("iscrowd", 0)) and w >= 1 and h >= 1

    def __len__(self) -> int:
        return len(self.ids)

    def image_path(self, index: int) -> Path:
        return self.image_dir / self.images[self.ids[index]]["file_name"]

    def sample_files(self, index: int) -> tuple[Path, ...]:
        return (self.image_path(index), self.annotation_file)

    def check_sample(self, index: int) -> None:
        """Decode the image and match its size with the JSON's (see :mod:`monatune.data.verify`); the
        JSON itself was checked when it was read."""
        self._read_image(index)

    def keep_samples(self, indices: Sequence[int]) -> None:
        self.ids = [self.ids[i] for i in indices]

    def _read_image(self, index: int) -> tv_tensors.Image:
        info = self.images[self.ids[index]]
        image = read_rgb_image(self.image_path(index))
        height, width = image.shape[-2:]
        if (int(info["height"]), int(info["width"])) != (height, width):
            raise DatasetError(
                self.image_path(index),
                f"image is {height}x{width} but {self.annotation_file.name} says {info['height']}x{info['width']}",
            )
        return image

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        image_id = self.ids[index]
        image = self._read_image(index)
        height, width = image.shape[-2:]
        anns = [a for a in self.annotations[image_id] if self._keep(a)]
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]  # xywh -> xyxy
        target: Target = {
            "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(height, width)),
            "labels": torch.tensor([self.category_id_to_label[int(a["category_id"])] for a in anns], dtype=torch.int64),
            "iscrowd": torch.tensor([int(a.get("iscrowd", 0)) for a in anns], dtype=torch.int64),
            "area": torch.tensor([float(a.get("area", a["bbox"][2] * a["bbox"][3])) for a in anns], dtype=torch.float32),
            "image_id": image_id,
        }
        if self.with_masks:
            masks = np.zeros((len(anns), height, width), dtype=np.uint8)
            for k, ann in enumerate(anns):
                try:
                    masks[k] = segmentation_to_mask(ann["segmentation"], height, width)
                except (ValueError, RuntimeError, TypeError) as exc:
                    raise DatasetError(self.annotation_file, f"annotation id {ann.get('id')}: bad 'segmentation' ({exc})") from None
            target["masks"] = tv_tensors.Mask(torch.from_numpy(masks))
        if self.transforms is not None:
            return self.transforms(image, target)
        return image, target
