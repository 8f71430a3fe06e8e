"""Training data: COCO / folder / sample sources, crops, unreadable files, deterministic sharded order."""

from __future__ import annotations

import pytest
import torch

from fastnst.training.data import (
    BadImage,
    DataError,
    EpochSampler,
    PhotoDataset,
    coco_image_paths,
    collate_photos,
    folder_image_paths,
    image_paths,
)
from tests.support import make_coco, make_photo, make_photo_folder


def test_folder_lists_images_recursively_and_sorted(tmp_path):
    make_photo_folder(tmp_path, count=5)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "b" / "nested" / "deeper").mkdir()
    make_photo(tmp_path / "b" / "nested" / "deeper" / "UPPER.JPG")
    paths = folder_image_paths(tmp_path)
    assert len(paths) == 6 and paths == sorted(paths)
    assert any(p.name == "UPPER.JPG" for p in paths) and not any(p.suffix == ".txt" for p in paths)


def test_folder_errors_are_one_line(tmp_path):
    with pytest.raises(DataError, match="not a directory") as missing:
        folder_image_paths(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files") as empty:
        folder_image_paths(tmp_path / "empty")
    for exc in (missing, empty):
        assert "\n" not in str(exc.value)


@pytest.mark.parametrize("kind", ["instances", "captions"])
def test_coco_read_with_pycocotools(tmp_path, kind):
    root = make_coco(tmp_path / "coco", count=3, kind=kind)
    paths = coco_image_paths(root, "train2017")
    assert [p.name for p in paths] == [f"{i:012d}.jpg" for i in range(3)]
    assert all(p.is_file() for p in paths)
    assert image_paths("coco", str(root), limit=2) == paths[:2]


@pytest.mark.parametrize("case", ["no_root", "no_split", "no_annotations"])
def test_coco_missing_pieces_explain_how_to_get_it(tmp_path, case):
    root = make_coco(tmp_path / "coco", count=1)
    if case == "no_root":
        root = tmp_path / "nonexistent"
    elif case == "no_split":
        (root / "train2017" / f"{0:012d}.jpg").unlink()
        (root / "train2017").rmdir()
    else:
        for f in (root / "annotations").iterdir():
            f.unlink()
    with pytest.raises(DataError) as exc:
        coco_image_paths(root)
    message = str(exc.value)
    assert "\n" not in message and str(root) in message
    assert "cocodataset.org" in message and "data=sample" in message


def test_coco_corrupt_annotation_file(tmp_path):
    root = make_coco(tmp_path / "coco", count=1)
    (root / "annotations" / "instances_train2017.json").write_text("{not json")
    with pytest.raises(DataError, match="not a readable COCO annotation file"):
        coco_image_paths(root)


def test_sample_source_is_bundled():
    paths = image_paths("sample")
    assert len(paths) >= 10 and all(p.is_file() for p in paths)


def test_crops_are_square_in_range_and_deterministic_per_key(tmp_path):
    paths = [make_photo(tmp_path / f"{i}.png", 60, 40, seed=i) for i in range(2)]
    ds = PhotoDataset(paths, image_size=24, crop_min_scale=0.5, hflip=True)
    a = ds[(0, 7, 0, 3)]
    assert a.shape == (3, 24, 24) and a.dtype == torch.float32 and 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, ds[(0, 7, 0, 3)])  # the key alone decides the crop
    others = [ds[(0, 7, e, p)] for e in range(3) for p in range(4)]
    assert sum(not torch.equal(a, o) for o in others) >= 10  # and different keys give different crops
    assert ds[1].shape == (3, 24, 24)  # plain index: centre crop


def test_unreadable_image_is_skipped_and_reported(tmp_path):
    good = make_photo(tmp_path / "good.png")
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    ds = PhotoDataset([good, bad, good], image_size=16)
    items = [ds[(i, 0, 0, i)] for i in range(3)]
    assert isinstance(items[1], BadImage) and "broken.jpg" in items[1].reason
    batch = collate_photos(items)
    assert batch.images.shape == (2, 3, 16, 16) and [b.path for b in batch.bad] == [str(bad)]
    assert collate_photos([items[1]]).images is None


def test_sampler_epochs_are_seeded_permutations():
    s = EpochSampler(num_images=10, batch_size=2, seed=3, repeat=2)
    assert s.batches_per_epoch == 10
    s.set_epoch(0)
    first = [k[0] for k in s]
    assert sorted(first) == sorted(list(range(10)) * 2)
    assert first == [k[0] for k in s]  # same epoch, same order
    s.set_epoch(1)
    assert [k[0] for k in s] != first
    other_seed = EpochSampler(num_images=10, batch_size=2, seed=4, repeat=2)
    assert [k[0] for k in other_seed] != first


def test_sampler_resumes_mid_epoch():
    s = EpochSampler(num_images=9, batch_size=2, seed=0)
    s.set_epoch(2)
    full = list(s)
    s.set_epoch(2, start_batch=3)
    assert list(s) == full[6:] and len(s) == len(full) - 6


def test_sampler_shards_are_disjoint_and_cover_the_epoch():
    shards = [EpochSampler(num_images=11, batch_size=2, seed=1, rank=r, world_size=2) for r in range(2)]
    for s in shards:
        s.set_epoch(5)
    keys = [list(s) for s in shards]
    positions = [k[3] for shard in keys for k in shard]
    assert len(positions) == len(set(positions)) == 2 * 2 * 2  # 11 images -> 2 global batches of 4
    assert len(keys[0]) == len(keys[1]) == len(shards[0])
    order = shards[0].epoch_order(5)
    assert [k[0] for k in keys[0][:2]] == order[0:2] and [k[0] for k in keys[1][:2]] == order[2:4]


def test_sampler_refuses_too_few_images():
    with pytest.raises(DataError, match="batch"):
        EpochSampler(num_images=3, batch_size=2, world_size=2)
