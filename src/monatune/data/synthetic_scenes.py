"""Procedural scenes of coloured shapes, and writers that store them in the real VOC / COCO / ADE20K layouts.

They let every dense pipeline (reader -> transforms -> model -> metric) run end to end on a CPU in
seconds, and the readers are tested on what the writers produce. Everything is a function of the
seed: image ``i`` of a split is drawn from ``numpy.random.default_rng([seed, crc32(split), i])``, so
it does not depend on ``n`` or on the other splits.

Objects never overlap, so an object's polygon, mask and box describe the same pixels. Masks are
rasterised with the COCO rasteriser (faster-coco-eval), so masks decoded from the written polygons
equal the generated ones. Boxes are continuous xyxy: x1 = first column, x2 = last column + 1.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
from faster_coco_eval.core import mask as mask_api
from PIL import Image

SYNTHETIC_CLASSES: tuple[str, ...] = ("square", "bar", "disk", "triangle", "diamond")
ADE_SYNTHETIC_CLASSES: tuple[str, ...] = ("background", *SYNTHETIC_CLASSES)
# style="pretext": scenes drawn like the embedded backbone's pretraining images, objects vs background
PRETEXT_ADE_CLASSES: tuple[str, ...] = ("background", "object")
PRETEXT_SEED_OFFSET = 1000  # the embedded Swin was pretrained on seed 0's images: these are others
SCENE_STYLES = ("shapes", "pretext")
COCO_CATEGORY_IDS: tuple[int, ...] = tuple(10 * (k + 1) for k in range(len(SYNTHETIC_CLASSES)))  # gaps, as in COCO
DIFFICULT_AREA_FRACTION = 0.01  # objects smaller than 1% of the image are marked VOC "difficult"


@dataclass
class Scene:
    """One image: ``image`` (H, W, 3) uint8; per object ``boxes`` (N, 4) float32 xyxy, ``labels``
    (N,) int64 in 1..C, ``difficult`` (N,) bool, ``polygons`` N arrays (K, 2) of (x, y),
    ``instance_masks`` (N, H, W) uint8; ``semantic_mask`` (H, W) uint8 with 0 = background."""

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray
    polygons: list[np.ndarray]
    instance_masks: np.ndarray
    semantic_mask: np.ndarray


def _shape_polygon(label: int, cx: float, cy: float, s: float, rng: np.random.Generator) -> np.ndarray:
    name = SYNTHETIC_CLASSES[label - 1]
    if name == "square":
        h = w = s
    elif name == "bar":
        h, w = (s, s / 3) if rng.random() < 0.5 else (s / 3, s)
    if name in ("square", "bar"):
        return np.array([[cx - w / 2, cy - h / 2], [cx + w / 2, cy - h / 2], [cx + w / 2, cy + h / 2], [cx - w / 2, cy + h / 2]])
    if name == "disk":
        angles = np.linspace(0, 2 * np.pi, 32, endpoint=False)
    elif name == "triangle":
        angles = rng.uniform(0, 2 * np.pi) + np.array([0, 2 * np.pi / 3, 4 * np.pi / 3])
    else:  # diamond: a square standing on a corner
        angles = np.array([0, np.pi / 2, np.pi, 3 * np.pi / 2])
    return np.stack([cx + s / 2 * np.cos(angles), cy + s / 2 * np.sin(angles)], axis=1)


def _rasterise(polygon: np.ndarray, height: int, width: int) -> np.ndarray:
    rle = mask_api.frPyObjects([polygon.reshape(-1).tolist()], height, width)[0]
    return mask_api.decode(rle).astype(np.uint8)


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random (H, W, 3) float fill: a two-colour gradient, stripes or noisy flat colour."""
    a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    kind = rng.integers(3)
    if kind == 0:
        theta = rng.uniform(0, 2 * np.pi)
        t = (np.cos(theta) * xx + np.sin(theta) * yy) / max(height, width)
        t = (t - t.min()) / max(np.ptp(t), 1e-6)
    elif kind == 1:
        period = rng.uniform(4, 12)
        t = (np.floor((xx + yy * rng.uniform(-1, 1)) / period) % 2).astype(np.float64)
    else:
        t = np.zeros((height, width))
    return a + (b - a) * t[..., None] + rng.normal(0, 6, (height, width, 3))


def generate_scene(rng: np.random.Generator, height: int, width: int, max_objects: int = 4) -> Scene:
    """Draw 1..``max_objects`` non-overlapping shapes of random class, size, colour and texture."""
    short = min(height, width)
    image = _texture(rng, height, width)
    semantic = np.zeros((height, width), np.uint8)
    boxes, labels, polygons, masks = [], [], [], []
    wanted = int(rng.integers(1, max_objects + 1))
    for _ in range(50 * wanted):
        if len(labels) == wanted:
            break
        label = int(rng.integers(1, len(SYNTHETIC_CLASSES) + 1))
        s = rng.uniform(0.15, 0.4) * short
        cx, cy = rng.uniform(s / 2 + 1, width - s / 2 - 1), rng.uniform(s / 2 + 1, height - s / 2 - 1)
        polygon = _shape_polygon(label, cx, cy, s, rng)
        mask = _rasterise(polygon, height, width)
        ys, xs = np.nonzero(mask)
        if len(xs) == 0:
            continue
        box = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        if any(box[0] < b[2] + 2 and b[0] < box[2] + 2 and box[1] < b[3] + 2 and b[1] < box[3] + 2 for b in boxes):
            continue  # keep a 2-pixel gap so objects never touch
        inside = mask.astype(bool)
        image[inside] = _texture(rng, height, width)[inside]
        semantic[inside] = label
        boxes.append(box)
        labels.append(label)
        polygons.append(polygon)
        masks.append(mask)
    instance_masks = np.stack(masks) if masks else np.zeros((0, height, width), np.uint8)
    return Scene(
        image=np.clip(image, 0, 255).round().astype(np.uint8),
        boxes=np.array(boxes, np.float32).reshape(-1, 4),
        labels=np.array(labels, np.int64),
        difficult=instance_masks.sum(axis=(1, 2)) < DIFFICULT_AREA_FRACTION * height * width,
        polygons=polygons,
        instance_masks=instance_masks,
        semantic_mask=semantic,
    )


def split_scenes(n: int, size: int | tuple[int, int], seed: int, split: str) -> list[Scene]:
    """The ``n`` scenes of ``split`` for ``seed``: scene i is a pure function of (seed, split, i)."""
    height, width = (size, size) if isinstance(size, int) else size
    split_key = zlib.crc32(split.encode())
    return [generate_scene(np.random.default_rng([seed, split_key, i]), height, width) for i in range(n)]


def _save_jpeg(image: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, quality=95)


def write_voc(
    root: str | Path, n: int, size: int | tuple[int, int] = 128, seed: int = 0, image_set: str = "trainval", year: str = "2007"
) -> Path:
    """Write ``n`` scenes as ``root/VOCdevkit/VOC<year>/{JPEGImages,Annotations,ImageSets/Main/<image_set>.txt}``
    with ids ``<image_set>_<i:06d>``; returns the VOCdevkit folder. XML boxes use the devkit's 1-based
    inclusive pixels (xmin = x1 + 1, xmax = x2); class names are :data:`SYNTHETIC_CLASSES`."""
    year_dir = Path(root) / "VOCdevkit" / f"VOC{year}"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (year_dir / sub).mkdir(parents=True, exist_ok=True)
    names = []
    for i, scene in enumerate(split_scenes(n, size, seed, image_set)):
        name = f"{image_set}_{i:06d}"
        names.append(name)
        _save_jpeg(scene.image, year_dir / "JPEGImages" / f"{name}.jpg")
        ann = ET.Element("annotation")
        ET.SubElement(ann, "folder").text = f"VOC{year}"
        ET.SubElement(ann, "filename").text = f"{name}.jpg"
        size_node = ET.SubElement(ann, "size")
        for tag, value in zip(("width", "height", "depth"), (scene.image.shape[1], scene.image.shape[0], 3)):
            ET.SubElement(size_node, tag).text = str(value)
        for box, label, difficult in zip(scene.boxes, scene.labels, scene.difficult):
            obj = ET.SubElement(ann, "object")
            ET.SubElement(obj, "name").text = SYNTHETIC_CLASSES[label - 1]
            ET.SubElement(obj, "truncated").text = "0"
            ET.SubElement(obj, "difficult").text = str(int(difficult))
            bndbox = ET.SubElement(obj, "bndbox")
            for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), (box[0] + 1, box[1] + 1, box[2], box[3])):
                ET.SubElement(bndbox, tag).text = str(int(value))
        ET.ElementTree(ann).write(year_dir / "Annotations" / f"{name}.xml")
    (year_dir / "ImageSets" / "Main" / f"{image_set}.txt").write_text("".join(f"{name}\n" for name in names))
    return year_dir.parent


def mask_to_uncompressed_rle(mask: np.ndarray) -> dict:
    """(H, W) binary mask -> COCO uncompressed RLE: run lengths in column-major order, zeros first."""
    flat = mask.reshape(-1, order="F").astype(bool)
    change = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    edges = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(edges).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def write_coco(
    root: str | Path, n: int, size: int | tuple[int, int] = 128, seed: int = 0, split: str = "train2017", mask_format: str = "polygon"
) -> Path:
    """Write ``n`` scenes as ``root/<split>/<id:012d>.jpg`` + ``root/annotations/instances_<split>.json``;
    returns the JSON path. ``mask_format``: "polygon", "rle" (uncompressed counts list) or
    "compressed_rle" (counts string). Category ids are :data:`COCO_CATEGORY_IDS` (10, 20, ...)."""
    if mask_format not in ("polygon", "rle", "compressed_rle"):
        raise ValueError(f"mask_format must be 'polygon', 'rle' or 'compressed_rle', got {mask_format!r}")
    root = Path(root)
    images, annotations = [], []
    for i, scene in enumerate(split_scenes(n, size, seed, split)):
        image_id = i + 1
        file_name = f"{image_id:012d}.jpg"
        _save_jpeg(scene.image, root / split / file_name)
        images.append({"id": image_id, "file_name": file_name, "height": scene.image.shape[0], "width": scene.image.shape[1]})
        for box, label, polygon, mask in zip(scene.boxes, scene.labels, scene.polygons, scene.instance_masks):
            if mask_format == "polygon":
                segmentation: object = [[round(float(v), 3) for v in polygon.reshape(-1)]]
            elif mask_format == "rle":
                segmentation = mask_to_uncompressed_rle(mask)
            else:
                rle = mask_api.encode(np.asfortranarray(mask))
                segmentation = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
            x1, y1, x2, y2 = (float(v) for v in box)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": COCO_CATEGORY_IDS[label - 1],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": float(mask.sum()),
                    "iscrowd": 0,
                    "segmentation": segmentation,
                }
            )
    categories = [{"id": cid, "name": name, "supercategory": "shape"} for cid, name in zip(COCO_CATEGORY_IDS, SYNTHETIC_CLASSES)]
    path = root / "annotations" / f"instances_{split}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def write_ade20k(
    root: str | Path, n: int, size: int | tuple[int, int] = 128, seed: int = 0, split: str = "training", style: str = "shapes"
) -> Path:
    """Write ``n`` scenes as ``root/images/<split>/ADE_<train|val>_<i:08d>.jpg`` + ``annotations/<split>/*.png``;
    returns ``root``. PNG values are class index + 1 (background 1, classes from 2; 0 = ignore unused),
    so the reader's zero-label reduction gives 0 = background.

    ``style="shapes"``: the scenes above, classes ``ADE_SYNTHETIC_CLASSES`` (6).
    ``style="pretext"``: images drawn by the embedded backbone's pretraining renderer
    (``synthetic_images.render_synthetic``, seed + ``PRETEXT_SEED_OFFSET``, split "training" -> "train",
    "validation" -> "val"), scaled up by pixel repetition to ``size`` (a multiple of 64); classes
    ``PRETEXT_ADE_CLASSES`` (background, object). The small embedded Swin encodes these scenes (a
    linear probe on its stage-1 features separates objects from background), not the "shapes" ones.
    """
    if style not in SCENE_STYLES:
        raise ValueError(f"style must be one of {SCENE_STYLES}, got {style!r}")
    root = Path(root)
    short = {"training": "train", "validation": "val"}.get(split, split)
    (root / "annotations" / split).mkdir(parents=True, exist_ok=True)
    if style == "pretext":
        pairs = _pretext_scenes(n, size, seed, short)
    else:
        pairs = ((scene.image, scene.semantic_mask) for scene in split_scenes(n, size, seed, split))
    for i, (image, semantic) in enumerate(pairs):
        stem = f"ADE_{short}_{i + 1:08d}"
        _save_jpeg(image, root / "images" / split / f"{stem}.jpg")
        Image.fromarray(semantic + 1).save(root / "annotations" / split / f"{stem}.png")
    return root


def _pretext_scenes(n: int, size: int | tuple[int, int], seed: int, split: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image (S, S, 3) uint8, mask (S, S) uint8 0/1) pairs in the pretraining images' style."""
    from monatune.data.synthetic_images import IMAGE_SIZE, render_synthetic

    height, width = (size, size) if isinstance(size, int) else size
    if height != width or height % IMAGE_SIZE:
        raise ValueError(f"style='pretext' needs a square size that is a multiple of {IMAGE_SIZE}, got {size}")
    if split not in ("train", "val", "test"):
        raise ValueError(f"style='pretext' has splits training/validation/test, got {split!r}")
    images, _, masks = render_synthetic(range(n), seed + PRETEXT_SEED_OFFSET, split, with_masks=True)
    k = height // IMAGE_SIZE
    return [(im.repeat(k, 0).repeat(k, 1), (m > 0).astype(np.uint8).repeat(k, 0).repeat(k, 1)) for im, m in zip(images, masks)]
