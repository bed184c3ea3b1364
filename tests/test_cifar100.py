"""CIFAR-100: the official layout read safely, downloaded with its checksum, its class count carried from the
data to the network and the metrics, and every feature working with 100 classes."""

import json
import pickle
import tarfile
from dataclasses import replace

import pytest
import torch
from conftest import FAST, compose_config, write_cifar100_layout
from hydra.utils import instantiate

from anneal.config import keys
from anneal.data import CIFAR100, read_cifar100
from anneal.data.download import download, md5sum
from anneal.errors import ConfigError, DataError
from anneal.models import LeNet5
from anneal.run import run
from anneal.storage import load_tensors


@pytest.fixture
def tiny_cifar100(tmp_path):
    return write_cifar100_layout(tmp_path / "c100")


def test_reads_the_official_layout_with_fine_or_coarse_labels(tiny_cifar100):
    folder = tiny_cifar100 / "cifar-100-python"
    train_x, train_y, test_x, test_y = read_cifar100(folder)
    assert train_x.shape == (400, 3, 32, 32) and train_x.dtype == torch.uint8 and test_x.shape == (100, 3, 32, 32)
    with open(folder / "train", "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    assert (
        train_y.tolist() == entry["fine_labels"] and train_x[3, 2, 5, 7].item() == entry["data"][3][2048 + 5 * 32 + 7]
    )
    assert read_cifar100(folder, "coarse")[1].tolist() == entry["coarse_labels"]
    assert int(train_y.max()) < 100 and int(read_cifar100(folder, "coarse")[1].max()) < 20


def test_the_class_count_comes_from_the_data(tiny_cifar100):
    fine, coarse = CIFAR100(root=str(tiny_cifar100)), CIFAR100(root=str(tiny_cifar100), label="coarse")
    assert (fine.num_classes, coarse.num_classes) == (100, 20)
    assert fine.name == "CIFAR-100" and "coarse" in coarse.name
    with pytest.raises(ConfigError, match="data.label='finest' is invalid"), keys("data"):
        CIFAR100(root=str(tiny_cifar100), label="finest")


def test_download_checks_the_md5_and_offline_says_where_to_point(tmp_path, tiny_cifar100, monkeypatch):
    archive = tmp_path / "cifar-100-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tiny_cifar100 / "cifar-100-python", arcname="cifar-100-python")
    local = replace(CIFAR100.archive, url=archive.as_uri())
    with pytest.raises(DataError, match="MD5"):
        download(local, tmp_path / "a")
    download(replace(local, md5=md5sum(archive)), tmp_path / "b")
    assert len(read_cifar100(tmp_path / "b" / "cifar-100-python")[0]) == 400
    monkeypatch.setattr(CIFAR100, "archive", replace(local, url="http://127.0.0.1:9/cifar-100-python.tar.gz"))
    missing = r"CIFAR-100 not found under data\.root=.*CIFAR100_ROOT.*data=synthetic"
    with pytest.raises(DataError, match=missing), keys("data"):
        CIFAR100(root=str(tmp_path / "empty")).setup()


def test_a_booby_trapped_or_float_file_is_refused_naming_it(tiny_cifar100, tmp_path):
    folder = tiny_cifar100 / "cifar-100-python"
    with open(folder / "train", "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    with open(folder / "train", "wb") as f:
        pickle.dump({**entry, "data": entry["data"].astype("float32") / 255}, f)
    with pytest.raises(DataError, match=r"cifar-100-python/train holds float32 pixels, not bytes"):
        read_cifar100(folder)


def test_snapshots_swa_and_the_study_work_with_100_classes(tiny_cifar100, tmp_path):
    cfg = compose_config(
        "data=cifar100",
        f"data.root={tiny_cifar100}",
        "data.batch_size=50",
        "schedule=sgdr",
        "schedule.T_0=1",
        "schedule.T_mult=1",
        "ensemble=snapshot",
        "averaging=swa",
        "averaging.swa_freq=cycle",
        "averaging.swa_start=0",
        "trainer.max_epochs=2",
        *FAST,
        output_dir=tmp_path / "run",
    )
    run(cfg)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["data"] == "CIFAR-100: 400 train / 100 test images" and results["num_classes"] == 100
    assert results["params"] == 62_006 + 90 * 84 + 90  # LeNet-5's classifier, for 100 classes
    assert len(results["snapshots"]) == 2 and results["swa/n_averaged"] == 2
    # the ensemble's and the SWA network's accuracies, recomputed by hand from the files the run saved
    data = instantiate(cfg.data)
    data.setup()
    images, labels = zip(*data.batches("test"))
    images, labels = torch.cat(images), torch.cat(labels)

    def probabilities(weights) -> torch.Tensor:
        network = LeNet5(num_classes=100)
        network.load_state_dict(load_tensors(weights))
        with torch.no_grad():
            return network.eval()(images).softmax(-1)

    members = [probabilities(tmp_path / "run" / s["file"]) for s in results["snapshots"]]
    ensemble = (torch.stack(members).mean(0).argmax(1) == labels).float().mean().item()
    swa = (probabilities(tmp_path / "run" / "swa.pt").argmax(1) == labels).float().mean().item()
    assert results["ensemble/test/acc"] == pytest.approx(ensemble, abs=1e-6)
    assert results["swa/test/acc"] == pytest.approx(swa, abs=1e-6)
    assert "test/acc_best" in results


def test_synthetic_data_takes_a_class_count(tmp_path):
    cfg = compose_config(
        "data=synthetic",
        "data.train_size=256",
        "data.test_size=64",
        "data.num_classes=20",
        "trainer.max_epochs=1",
        *FAST,
        output_dir=tmp_path,
    )
    run(cfg)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["num_classes"] == 20 and results["params"] == 62_006 + 10 * 84 + 10
