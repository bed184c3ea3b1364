import io
import pickle
import tarfile
import time
from dataclasses import replace

import pytest
import torch

from anneal.config import keys
from anneal.data import (
    CIFAR10,
    Batches,
    Synthetic,
    channel_stats,
    flip_where,
    locate,
    random_crop,
    read_cifar10,
    synthetic_images,
)
from anneal.data.download import download, md5sum, safe_extract
from anneal.errors import ConfigError, DataError


def test_reads_the_cifar_layout(tiny_cifar):
    train_x, train_y, test_x, test_y = read_cifar10(tiny_cifar / "cifar-10-batches-py")
    assert train_x.shape == (300, 3, 32, 32) and train_x.dtype == torch.uint8
    assert test_x.shape == (50, 3, 32, 32) and train_y.dtype == torch.int64
    with open(tiny_cifar / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    # row layout: 1024 red, then 1024 green, then 1024 blue values, row-major
    assert train_x[0, 1, 2, 3].item() == entry["data"][0][1024 + 2 * 32 + 3]
    assert train_y[:60].tolist() == entry["labels"]


def test_real_subset_loads_with_split(subset_root):
    data = CIFAR10(root=str(subset_root), download=False, val_size=500, seed=3)
    data.setup()
    assert len(data.splits["train"][0]) == 5170 - 500 and len(data.splits["val"][0]) == 500
    assert len(data.splits["test"][0]) == 1017
    assert set(data.splits["train"][1].unique().tolist()) == set(range(10))
    again = CIFAR10(root=str(subset_root), download=False, val_size=500, seed=3)
    again.setup()
    assert torch.equal(again.splits["val"][1], data.splits["val"][1])  # the split is seeded


def test_missing_and_corrupt_files_are_named(tiny_cifar):
    folder = tiny_cifar / "cifar-10-batches-py"
    (folder / "data_batch_3").write_bytes(b"\x80\x04truncated")
    with pytest.raises(DataError, match="data_batch_3.*corrupt"):
        read_cifar10(folder)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match="missing.*data_batch_3"):
        read_cifar10(folder)


def test_no_data_and_no_network_fails_fast_with_a_fix(tmp_path, monkeypatch):
    nowhere = replace(CIFAR10.archive, url="http://127.0.0.1:9/cifar-10-python.tar.gz")  # nothing listens there
    monkeypatch.setattr(CIFAR10, "archive", nowhere)
    started = time.perf_counter()
    with pytest.raises(DataError, match=r"data\.root=.*CIFAR10_ROOT.*data=synthetic"), keys("data"):
        CIFAR10(root=str(tmp_path / "empty")).setup()
    assert time.perf_counter() - started < 5
    with pytest.raises(DataError, match="data.download=false"), keys("data"):
        locate(nowhere, tmp_path / "empty", download_missing=False)


def test_download_checks_md5_and_extracts(tmp_path, monkeypatch, tiny_cifar):
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tiny_cifar / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    local = replace(CIFAR10.archive, url=archive.as_uri())
    with pytest.raises(DataError, match="MD5"):
        download(local, tmp_path / "a")
    download(replace(local, md5=md5sum(archive)), tmp_path / "b")
    assert len(read_cifar10(tmp_path / "b" / "cifar-10-batches-py")[0]) == 300


def test_extraction_refuses_paths_outside_the_root(tmp_path):
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    with pytest.raises(DataError, match="refusing"):
        safe_extract(archive, tmp_path / "target")
    assert not (tmp_path / "escaped.txt").exists()


def test_random_crop_stays_inside_the_padded_image():
    images = torch.randint(1, 256, (64, 3, 32, 32), dtype=torch.uint8)  # no zeros: padding is recognisable
    shifts = torch.randint(0, 9, (64, 2))
    crops = random_crop(images, shifts)
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    for i in range(64):
        dy, dx = shifts[i].tolist()
        assert torch.equal(crops[i], padded[i, :, dy : dy + 32, dx : dx + 32])
    assert torch.equal(random_crop(images, torch.full((64, 2), 4)), images)  # centred = identity


def test_flips_are_per_image():
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    flip = torch.tensor([True, False] * 4)
    out = flip_where(images, flip)
    for i in range(8):
        assert torch.equal(out[i], images[i].flip(2) if flip[i] else images[i])


def test_training_batches_are_augmented_per_image_and_labels_untouched():
    images, ids = torch.randint(1, 256, (200, 3, 32, 32), dtype=torch.uint8), torch.arange(200)  # label = image id
    mean, std = channel_stats(images)
    batches = Batches(images, ids, 50, mean, std, shuffle=True, augment=True, seed=1)
    seen, flipped, shifted = [], 0, 0
    for x, y in batches:
        assert x.dtype == torch.float32 and x.shape == (len(y), 3, 32, 32)
        raw = ((x * std.view(1, 3, 1, 1) + mean.view(1, 3, 1, 1)) * 255).round().to(torch.uint8)
        for image, i in zip(raw, y.tolist()):
            padded = torch.nn.functional.pad(images[i], (4, 4, 4, 4))
            candidates = [
                (dy, dx, f)
                for dy in range(9)
                for dx in range(9)
                for f in (False, True)
                if torch.equal(image, (lambda c: c.flip(2) if f else c)(padded[:, dy : dy + 32, dx : dx + 32]))
            ]
            assert candidates, f"image {i} is not a padded crop (+ flip) of its source"
            flipped += candidates[0][2]
            shifted += candidates[0][:2] != (4, 4)
        seen.append(y)
    assert sorted(torch.cat(seen).tolist()) == list(range(200))  # every image once per epoch, labels untouched
    assert 60 < flipped < 140 and shifted > 150  # decided per image, not per batch
    # an epoch replays exactly from (seed, epoch); the next epoch differs
    replay = [x for x, _ in Batches(images, ids, 50, mean, std, shuffle=True, augment=True, seed=1)]
    assert all(
        torch.equal(a, b)
        for a, b in zip([x for x, _ in Batches(images, ids, 50, mean, std, shuffle=True, augment=True, seed=1)], replay)
    )
    assert not torch.equal([x for x, _ in batches][0], replay[0])


def test_eval_batches_are_not_augmented(tiny_cifar):
    data = CIFAR10(root=str(tiny_cifar), download=False)
    data.setup()
    x, y = next(iter(data.test_dataloader()))
    images, labels = data.splits["test"]
    expected = (images[: len(x)].float() / 255 - data.mean.view(1, 3, 1, 1)) / data.std.view(1, 3, 1, 1)
    assert torch.allclose(x, expected, atol=1e-5) and torch.equal(y, labels[: len(x)])


def test_loader_resumes_mid_epoch_exactly():
    images, labels = torch.randint(0, 256, (100, 3, 32, 32), dtype=torch.uint8), torch.arange(100) % 10
    mean, std = channel_stats(images)
    make = lambda: Batches(images, labels, 16, mean, std, shuffle=True, augment=True, seed=5)  # noqa: E731
    full = make()
    list(full)
    reference = [x for x, _ in full]  # epoch 1
    interrupted = make()
    list(interrupted)
    iterator = iter(interrupted)
    [next(iterator) for _ in range(3)]
    resumed = make()
    resumed.load_state_dict(interrupted.state_dict())
    assert all(torch.equal(a, b) for a, b in zip([x for x, _ in resumed], reference[3:]))


def test_ddp_ranks_take_disjoint_equal_shares():
    images, labels = torch.zeros(103, 3, 32, 32, dtype=torch.uint8), torch.arange(103)
    mean, std = torch.zeros(3), torch.ones(3)
    shards = [
        torch.cat([y for _, y in Batches(images, labels, 10, mean, std, shuffle=True, rank=r, world_size=2)])
        for r in (0, 1)
    ]
    assert len(shards[0]) == len(shards[1]) == 51 and not set(shards[0].tolist()) & set(shards[1].tolist())


def test_synthetic_data_is_learnable_and_named():
    torch.manual_seed(0)
    data = Synthetic(train_size=2000, test_size=500)
    data.setup()
    assert "SYNTHETIC" in data.name and "not CIFAR-10" in data.name
    x, y = data.splits["train"]
    assert x.dtype == torch.uint8 and x.shape == (2000, 3, 32, 32) and set(y.tolist()) == set(range(10))
    # the labels carry signal a classifier can learn, shown without training (a trained network's accuracy depends
    # on the CPU's rounding): the nearest class mean of the training images labels a third of the test set right
    means = torch.stack([x[y == c].float().flatten(1).mean(0) for c in range(10)])
    test_x, test_y = data.splits["test"]
    nearest = torch.cdist(test_x.float().flatten(1), means).argmin(1)
    assert (nearest == test_y).float().mean() > 0.25  # chance is 0.1; 0.326 here, ~50 test images from the bound


def test_synthetic_images_sin_and_cos_run_on_one_thread(monkeypatch):
    # a process's first multi-threaded sin/cos is now and then less exact (MKL): the images differed between runs
    threads_seen, cos, sin = [], torch.cos, torch.sin
    monkeypatch.setattr(torch, "cos", lambda x: threads_seen.append(torch.get_num_threads()) or cos(x))
    monkeypatch.setattr(torch, "sin", lambda x: threads_seen.append(torch.get_num_threads()) or sin(x))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        synthetic_images(64, 0)
        assert threads_seen == [1, 1, 1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"batch_size": 0}, "data.batch_size"),
        ({"val_size": -1}, "data.val_size"),
        ({"eval_batch_size": 0}, "data.eval_batch_size"),
    ],
)
def test_invalid_data_settings(kwargs, key):
    with pytest.raises(ConfigError, match=key), keys("data"):
        Synthetic(**kwargs)
    with pytest.raises(ConfigError, match="data.val_size"), keys("data"):
        Synthetic(train_size=100, val_size=100).setup()


def test_a_booby_trapped_batch_file_is_refused_without_running_it(tiny_cifar, tmp_path):
    class Exploit:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    folder = tiny_cifar / "cifar-10-batches-py"
    with open(folder / "data_batch_2", "wb") as f:
        pickle.dump({"data": Exploit(), "labels": [0]}, f)
    with pytest.raises(DataError, match="data_batch_2.*refusing to load posix.system"):
        read_cifar10(folder)
    assert not (tmp_path / "pwned").exists()


def test_float_pixels_are_refused_naming_the_file(tiny_cifar):
    folder = tiny_cifar / "cifar-10-batches-py"
    with open(folder / "data_batch_4", "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    with open(folder / "data_batch_4", "wb") as f:
        pickle.dump({**entry, "data": entry["data"].astype("float32") / 255}, f)  # in [0, 1]: black as bytes
    with pytest.raises(DataError, match=r"data_batch_4 holds float32 pixels, not bytes"):
        read_cifar10(folder)
