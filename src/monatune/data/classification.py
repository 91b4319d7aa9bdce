"""Classification datasets over a user-given root (never downloads): ImageFolder, Flowers102,
Oxford-IIIT Pets, VOC2007 single-label lists, and the embedded digits."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from torch.utils.data import Dataset

from monatune.data.image_list import LabeledImageList
from monatune.data.voc import VOC_CLASSES

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise FileNotFoundError(f"{path} not found: expected {what}")
    return path


def image_folder(root: str | Path, split: str, transform: Callable | None, **kw) -> LabeledImageList:
    """``root/split/<class>/<image>``; classes sorted by name (torchvision's ImageFolder layout)."""
    split_dir = _require_dir(Path(root) / split, f"an ImageFolder split: {split}/<class name>/<images>")
    classes = sorted(d.name for d in split_dir.iterdir() if d.is_dir())
    if not classes:
        raise FileNotFoundError(f"{split_dir} has no class sub-folders (expected {split}/<class name>/<images>)")
    samples = [
        (p, i)
        for i, c in enumerate(classes)
        for p in sorted((split_dir / c).rglob("*"))
        if p.suffix.lower() in IMAGE_EXTENSIONS
    ]
    return LabeledImageList(samples, transform, classes=classes, source=str(split_dir), **kw)


def flowers102(root: str | Path, split: str, transform: Callable | None, **kw) -> LabeledImageList:
    """Oxford Flowers-102 as torchvision lays it out: ``root/flowers-102/{jpg/, imagelabels.mat, setid.mat}``."""
    from torchvision.datasets import Flowers102

    base = Path(root) / "flowers-102"
    for item in ("jpg", "imagelabels.mat", "setid.mat"):
        if not (base / item).exists():
            raise FileNotFoundError(f"{base / item} not found: expected the Flowers-102 files (jpg/, imagelabels.mat, setid.mat) under {base}")
    ds = Flowers102(str(root), split={"train": "train", "val": "val", "test": "test"}[split], download=False)
    return LabeledImageList(list(zip(ds._image_files, ds._labels)), transform, source=str(base), **kw)


def oxford_pets(root: str | Path, split: str, transform: Callable | None, **kw) -> LabeledImageList:
    """Oxford-IIIT Pets as torchvision lays it out: ``root/oxford-iiit-pet/{images/, annotations/}``; splits trainval/test."""
    from torchvision.datasets import OxfordIIITPet

    base = Path(root) / "oxford-iiit-pet"
    for item in ("images", "annotations"):
        _require_dir(base / item, f"the Oxford-IIIT Pet '{item}' folder")
    split = {"train": "trainval", "val": "test"}.get(split, split)
    ds = OxfordIIITPet(str(root), split=split, target_types="category", download=False)
    return LabeledImageList(list(zip(ds._images, ds._labels)), transform, classes=ds.classes, source=str(base), **kw)


def voc07_cls(root: str | Path, split: str, transform: Callable | None, **kw) -> LabeledImageList:
    """VOC2007 single-label lists: ``root/<split>.txt`` with lines "relative/path.jpg label" (label 0..19)."""
    root = Path(root)
    list_file = root / f"{split}.txt"
    if not list_file.is_file():
        raise FileNotFoundError(f"{list_file} not found: expected lines 'relative/image/path label'")
    samples = []
    for lineno, line in enumerate(list_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise ValueError(f"{list_file}:{lineno}: expected 'path label', got {line!r}")
        label = int(parts[1])
        if not 0 <= label < len(VOC_CLASSES):
            raise ValueError(f"{list_file}:{lineno}: label {label} outside 0..{len(VOC_CLASSES) - 1}")
        samples.append((root / parts[0], label))
    return LabeledImageList(samples, transform, classes=VOC_CLASSES, source=str(list_file), **kw)


def check_num_classes(dataset: LabeledImageList, num_classes: int, source: str) -> None:
    """ValueError naming both numbers when ``dataset`` has more classes (class folders, or labels in its
    list) than the model's ``num_classes``: their labels would index past the classifier's outputs."""
    if dataset.classes is not None and len(dataset.classes) > num_classes:
        raise ValueError(f"{source}: {len(dataset.classes)} classes but model.num_classes is {num_classes}; set model.num_classes to {len(dataset.classes)}")
    top = max((label for _, label in dataset.samples), default=-1)
    if top >= num_classes:
        raise ValueError(f"{source}: label {top} needs at least {top + 1} classes but model.num_classes is {num_classes}")


CLASSIFICATION_DATASETS: dict[str, Callable[..., Dataset]] = {
    "imagefolder": image_folder,
    "flowers102": flowers102,
    "oxford_pets": oxford_pets,
    "voc07_cls": voc07_cls,
}


def digits(split: str, *, image_size: int = 64, seed: int = 0, train: bool = False) -> Dataset:
    """scikit-learn's bundled handwritten digits (offline; no root): stratified 80/20 split from ``seed``."""
    from monatune.data.digits import Digits

    return Digits({"train": "train", "val": "val", "test": "val"}.get(split, split), seed=seed, image_size=image_size, augment=train)


BUNDLED_DATASETS = ("digits",)


def build_classification_dataset(name: str, root: str | Path | None, split: str, transform, **kw) -> Dataset:
    """Dataset ``name`` over ``root`` for ``split`` (ValueError listing the valid names).

    ``digits`` needs no root (it ships with scikit-learn); pass ``image_size``, ``seed``, ``train`` in ``kw``.
    """
    if name == "digits":
        return digits(split, **{k: v for k, v in kw.items() if k in ("image_size", "seed", "train")})
    if name not in CLASSIFICATION_DATASETS:
        valid = ", ".join([*CLASSIFICATION_DATASETS, *BUNDLED_DATASETS])
        raise ValueError(f"data.dataset: unknown {name!r}; valid: {valid}")
    if root is None:
        raise ValueError(f"data.root is required for dataset {name!r}")
    return CLASSIFICATION_DATASETS[name](root, split, transform, **kw)
