"""Every dataset's files checked before training: each sample's image decoded and its annotation parsed
once, unreadable samples dropped with one warning naming them all (or one error under ``data.strict``).

A dataset takes part by having the three methods of :class:`CheckableDataset`; one that lacks them
(an in-memory set) has nothing on disk to check. The result of a check can be kept in a folder
(``cache_dir``): under DDP the data module checks once on the first process of each machine
(``prepare_data``) and every other process then reads the result instead of decoding again.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

from torch.utils.data import ConcatDataset, Dataset

from monatune.data.errors import DatasetError


class CorruptImageError(ValueError):
    """Under ``strict``: some samples' images or annotations cannot be read; the message names them."""


@runtime_checkable
class CheckableDataset(Protocol):
    """A dataset whose samples are files: what :func:`verify_dataset` needs of it."""

    def sample_files(self, index: int) -> tuple[Path, ...]:
        """The files sample ``index`` is read from (image first): they name it and key the cache."""

    def check_sample(self, index: int) -> None:
        """Read sample ``index`` as training would (decode, parse); raise naming the file if it cannot be."""

    def keep_samples(self, indices: Sequence[int]) -> None:
        """Keep only the samples at ``indices`` (in that order)."""


def _fingerprint(dataset: CheckableDataset, settings: str) -> str:
    """A digest of ``settings`` and the names, sizes and modification times of every sample's files:
    an edited or replaced file gives another digest, so a kept result is never used for other files."""
    digest = hashlib.sha1(f"{type(dataset).__name__}\n{settings}\n".encode())
    for index in range(len(dataset)):  # type: ignore[arg-type]
        for path in dataset.sample_files(index):
            try:
                stat = path.stat()
                digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
            except OSError:
                digest.update(f"{path}:missing\n".encode())
    return digest.hexdigest()


def find_bad_samples(dataset: CheckableDataset, workers: int | None = None) -> dict[int, str]:
    """index -> reason for every sample whose ``check_sample`` raises. Decoders release the GIL, so
    ``workers`` threads (default: the CPU count, at most 16) check samples side by side."""

    def check(index: int) -> str | None:
        try:
            dataset.check_sample(index)
        except Exception as exc:  # decoders raise many types for bad data
            if isinstance(exc, DatasetError):  # its message starts with the file
                return str(exc)
            return f"{dataset.sample_files(index)[0]}: {type(exc).__name__}: {exc}"
        return None

    workers = workers or min(16, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        reasons = list(pool.map(check, range(len(dataset))))  # type: ignore[arg-type]
    return {i: why for i, why in enumerate(reasons) if why is not None}


def _cached_bad_samples(dataset: CheckableDataset, cache_dir: Path | None, settings: str) -> dict[int, str]:
    if cache_dir is None:
        return find_bad_samples(dataset)
    path = cache_dir / f"{_fingerprint(dataset, settings)}.json"
    if path.is_file():
        return {int(i): why for i, why in json.loads(path.read_text()).items()}
    bad = find_bad_samples(dataset)
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")  # unique across nodes
    partial.write_text(json.dumps({str(i): why for i, why in bad.items()}))
    partial.replace(path)  # atomic: another process never reads half a result
    return bad


def verify_dataset(
    dataset: Dataset, source: str, *, strict: bool = False, cache_dir: str | Path | None = None, settings: str = ""
) -> list[str]:
    """Check every sample of ``dataset`` (parts of a ConcatDataset one by one) and drop unreadable ones.

    Returns the reasons of the dropped samples (each naming its file). One ``UserWarning`` names them
    all and says how many; with ``strict`` a :class:`CorruptImageError` is raised instead. ``source``
    names the dataset in messages. ``cache_dir``: where results are kept (see the module docstring), under
    a key made of the files and ``settings`` (what else the check depends on: class list, label range).
    """
    if isinstance(dataset, ConcatDataset):
        dropped = [why for part in dataset.datasets for why in verify_dataset(part, source, strict=strict, cache_dir=cache_dir, settings=settings)]
        dataset.cumulative_sizes = ConcatDataset.cumsum(dataset.datasets)
        return dropped
    if not isinstance(dataset, CheckableDataset):
        return []
    total = len(dataset)  # type: ignore[arg-type]
    bad = _cached_bad_samples(dataset, Path(cache_dir) if cache_dir is not None else None, f"{source}\n{settings}")
    if not bad:
        return []
    reasons = [bad[i] for i in sorted(bad)]
    listing = "; ".join(reasons)
    if strict:
        raise CorruptImageError(f"{source}: {len(bad)} of {total} samples unreadable (data.strict is set): {listing}")
    if len(bad) == total:
        raise CorruptImageError(f"{source}: no usable samples, all {total} unreadable: {listing}")
    warnings.warn(f"{source}: skipping {len(bad)} of {total} unreadable samples: {listing}", stacklevel=2)
    dataset.keep_samples([i for i in range(total) if i not in bad])
    return reasons

