"""Training photos: MS-COCO, any folder of images, or the bundled sample photos.

Each sample is a random square crop of a photo, resized to ``image_size`` and randomly flipped.
The randomness of every sample comes from its own seed ``(seed, epoch, position)`` rather than from a
worker's global RNG, so the data a run sees depends only on the seed and the position in the data
stream: independent of ``num_workers``, and exactly reproducible when a run is resumed.

Unreadable images do not stop training: the dataset returns a :class:`BadImage` marker, the collate
function drops it from the batch, and the trainer counts and reports it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from fastnst.assets import sample_image_paths
from fastnst.imageio import ImageError, is_image_file, open_image, pil_to_tensor

COCO_HELP = (
    "get MS-COCO from https://cocodataset.org/#download (train2017.zip and annotations_trainval2017.zip, "
    "unzipped into one directory) and pass data.root=/path/to/coco; or train without a download on the "
    "bundled photos with data=sample, or on any directory of images with data=folder data.root=DIR"
)


class DataError(ValueError):
    """The training data cannot be found or used; the message is one line saying what to do."""


# --------------------------------------------------------------------------------------------------
# Image lists
# --------------------------------------------------------------------------------------------------


def coco_image_paths(root: str | os.PathLike, split: str = "train2017", annotations: str | None = None) -> list[Path]:
    """Image files of a COCO split, as listed by its annotation file (read with pycocotools)."""
    root = Path(root).expanduser()
    images_dir = root / split
    if not root.is_dir():
        raise DataError(f"COCO root {root} does not exist; {COCO_HELP}")
    if not images_dir.is_dir():
        raise DataError(f"COCO root {root} has no {split}/ image directory; {COCO_HELP}")
    if annotations is not None:
        ann_file = Path(annotations).expanduser()
        if not ann_file.is_file():
            raise DataError(f"COCO annotation file {ann_file} not found; {COCO_HELP}")
    else:
        candidates = [root / "annotations" / f"{kind}_{split}.json" for kind in ("captions", "instances")]
        ann_file = next((c for c in candidates if c.is_file()), None)  # type: ignore[assignment]
        if ann_file is None:
            raise DataError(
                f"COCO root {root} has no annotations/captions_{split}.json or instances_{split}.json; {COCO_HELP}"
            )
    try:
        from pycocotools.coco import COCO

        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress to stdout
            coco = COCO(str(ann_file))
    except (OSError, ValueError, KeyError, TypeError, AssertionError, json.JSONDecodeError) as exc:
        raise DataError(f"{ann_file}: not a readable COCO annotation file ({type(exc).__name__}: {exc})") from exc
    files = sorted(info["file_name"] for info in coco.imgs.values() if "file_name" in info)
    if not files:
        raise DataError(f"{ann_file}: lists no images; {COCO_HELP}")
    return [images_dir / name for name in files]


def folder_image_paths(root: str | os.PathLike) -> list[Path]:
    """Every image file (by extension) under ``root``, recursively, in a stable sorted order."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"data.root {root} is not a directory (data=folder needs a directory of images)")
    paths = sorted(p for p in root.rglob("*") if p.is_file() and is_image_file(p))
    if not paths:
        raise DataError(f"data.root {root} contains no image files (looked for *.jpg, *.png, ... recursively)")
    return paths


def bundled_sample_paths() -> list[Path]:
    """The sample photos every install has (scikit-image's CC0 images)."""
    paths = sample_image_paths()
    if not paths:
        raise DataError("data=sample needs scikit-image's bundled photos: pip install scikit-image")
    return paths


def listed_image_paths(root: str | os.PathLike, files: Sequence[str]) -> list[Path]:
    """A recorded training set: these files under ``root``, in this order; a missing one is an error."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"data.root {root} is not a directory (this data set lists {len(files)} files under it)")
    paths = [root / name for name in files]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise DataError(f"{missing[0]}: listed in data.files but not found ({len(missing)} of {len(files)} missing; "
                        "see the data config for where each photo comes from)")
    return paths


def image_paths(source: str, root: str | None = None, split: str = "train2017", annotations: str | None = None,
                limit: int | None = None, files: Sequence[str] = ()) -> list[Path]:
    """The image list of a data source (``coco``, ``folder`` or ``sample``), optionally cut to ``limit``."""
    if source == "coco":
        if not root:
            raise DataError(f"data=coco needs data.root; {COCO_HELP}")
        paths = coco_image_paths(root, split, annotations)
    elif source == "folder":
        if not root:
            raise DataError("data=folder needs data.root=/path/to/images")
        paths = listed_image_paths(root, files) if files else folder_image_paths(root)
    elif source == "sample":
        paths = bundled_sample_paths()
    else:
        raise DataError(f"unknown data source {source!r} (coco, folder or sample)")
    return paths[:limit] if limit is not None else paths


# --------------------------------------------------------------------------------------------------
# Dataset and batching
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BadImage:
    """Placeholder for a photo that could not be read."""

    path: str
    reason: str


@dataclass
class Batch:
    """A collated batch: the images that loaded, and the ones that did not."""

    images: torch.Tensor | None  # (B, 3, S, S) float32 in [0, 1]; None if no image of the batch loaded
    bad: list[BadImage]


def random_square_crop(img: Image.Image, size: int, rng: np.random.Generator, min_scale: float = 0.6,
                       hflip: bool = True) -> Image.Image:
    """A random square crop (side a random fraction of the short side) resized to ``size``, maybe mirrored."""
    w, h = img.size
    short = min(w, h)
    side = max(1, round(short * rng.uniform(min_scale, 1.0)))
    left = int(rng.integers(0, w - side + 1))
    top = int(rng.integers(0, h - side + 1))
    flip = hflip and bool(rng.integers(0, 2))
    # Bilinear in Pillow is antialiased when shrinking (its filter support grows with the scale).
    out = img.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side))
    return out.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else out


class PhotoDataset(Dataset):
    """Photos as random ``image_size`` square crops.

    Indexed by the keys :class:`EpochSampler` yields, ``(image_index, seed, epoch, position)``, so the
    crop of a sample is a function of its key alone. A plain int index gives a centre crop.
    """

    def __init__(self, paths: Sequence[Path], image_size: int = 256, crop_min_scale: float = 0.6,
                 hflip: bool = True) -> None:
        if image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {image_size}")
        if not 0.0 < crop_min_scale <= 1.0:
            raise ValueError(f"crop_min_scale must be in (0, 1], got {crop_min_scale}")
        self.paths = [Path(p) for p in paths]
        self.image_size = image_size
        self.crop_min_scale = crop_min_scale
        self.hflip = hflip

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: int | tuple[int, int, int, int]) -> torch.Tensor | BadImage:
        if isinstance(key, tuple):
            index, seed, epoch, position = key
            rng = np.random.default_rng([seed, epoch, position])
            min_scale, flip = self.crop_min_scale, self.hflip
        else:
            index, rng, min_scale, flip = int(key), np.random.default_rng(0), 1.0, False
        path = self.paths[index]
        try:
            img = open_image(path)
        except (ImageError, OSError) as exc:
            return BadImage(str(path), str(exc))
        crop = random_square_crop(img, self.image_size, rng, min_scale, flip)
        return pil_to_tensor(crop)[0]


def collate_photos(items: Sequence[torch.Tensor | BadImage]) -> Batch:
    """Stack the images that loaded; keep the unreadable ones aside to be counted."""
    good = [x for x in items if isinstance(x, torch.Tensor)]
    bad = [x for x in items if isinstance(x, BadImage)]
    return Batch(images=torch.stack(good) if good else None, bad=bad)


class EpochSampler(Sampler):
    """Deterministic, resumable, sharded sample order.

    Epoch ``e`` visits the images in ``repeat`` random permutations drawn from a generator seeded with
    ``(seed, e)``. The stream is cut into global batches of ``batch_size * world_size``; rank ``r``
    takes the ``r``-th slice of each, so every process sees its own shard and the union of one step's
    batches is a contiguous piece of the global order. Leftovers that do not fill a global batch are
    dropped. ``set_epoch(e, start_batch=k)`` resumes mid-epoch, skipping the first ``k`` batches.
    """

    def __init__(self, num_images: int, batch_size: int, seed: int = 0, repeat: int = 1, rank: int = 0,
                 world_size: int = 1) -> None:
        if num_images < 1:
            raise DataError("the data set is empty")
        if batch_size < 1 or repeat < 1:
            raise ValueError("batch_size and repeat must be >= 1")
        self.num_images, self.batch_size, self.seed, self.repeat = num_images, batch_size, seed, repeat
        self.rank, self.world_size = rank, world_size
        self.batches_per_epoch = (num_images * repeat) // (batch_size * world_size)
        if self.batches_per_epoch == 0:
            raise DataError(
                f"{num_images} images x data.repeat={repeat} do not fill one batch of {batch_size} per process "
                f"({world_size} processes); lower data.batch_size or raise data.repeat"
            )
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        if not 0 <= start_batch <= self.batches_per_epoch:
            raise ValueError(f"start_batch {start_batch} outside 0..{self.batches_per_epoch}")
        self.epoch, self.start_batch = epoch, start_batch

    def epoch_order(self, epoch: int) -> list[int]:
        """The global image order of an epoch (before sharding)."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.cat([torch.randperm(self.num_images, generator=g) for _ in range(self.repeat)]).tolist()

    def __iter__(self) -> Iterator[tuple[int, int, int, int]]:
        order = self.epoch_order(self.epoch)
        global_batch = self.batch_size * self.world_size
        for b in range(self.start_batch, self.batches_per_epoch):
            start = b * global_batch + self.rank * self.batch_size
            for position in range(start, start + self.batch_size):
                yield order[position], self.seed, self.epoch, position

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.start_batch) * self.batch_size

    def state(self) -> dict[str, Any]:
        return {"seed": self.seed, "num_images": self.num_images, "repeat": self.repeat,
                "batch_size": self.batch_size, "world_size": self.world_size}


def center_square(img: Image.Image, size: int) -> torch.Tensor:
    """Centre square crop resized to ``size``: a (1, 3, size, size) tensor (fixed validation photos)."""
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    out = img.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side))
    return pil_to_tensor(out)
