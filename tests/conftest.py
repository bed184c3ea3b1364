import csv
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from anneal.data import synthetic_images

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
SHARED_SUBSET = ROOT.parent / "shared" / "data" / "cifar10-subset"
FAST = ["logger=csv", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


def compose_config(*overrides: str, output_dir: Path):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("train", overrides=[*overrides, f"output_dir={output_dir}"])


@pytest.fixture(scope="session")
def subset_root() -> Path:
    """The real CIFAR-10 subset: CIFAR10_ROOT (set by .ci/run), else ../shared beside the repo."""
    root = Path(os.environ.get("CIFAR10_ROOT", SHARED_SUBSET))
    if not (root / "cifar-10-batches-py" / "test_batch").exists():
        pytest.skip("the real CIFAR-10 subset is not here (set CIFAR10_ROOT)")
    return root


def write_cifar_layout(root: Path, per_file: int = 60, test: int = 50) -> Path:
    """A tiny dataset in the exact cifar-10-batches-py layout (pickled dicts of uint8 rows)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for i, name in enumerate(names):
        n = test if name == "test_batch" else per_file
        images, labels = synthetic_images(n, seed=i)
        entry = {"data": images.reshape(n, -1).numpy(), "labels": labels.tolist(), "batch_label": name}
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f, protocol=4)
    return root


@pytest.fixture
def tiny_cifar(tmp_path) -> Path:
    return write_cifar_layout(tmp_path / "tiny")


def read_rows(path: Path) -> list[dict]:
    """The rows of a CSV file, as dicts."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def run_cli(*args: str, cwd: Path = ROOT, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    environment = {k: v for k, v in environment.items() if v is not None}  # None: unset
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def paced(seconds_per_step: float) -> list[str]:
    """Overrides that slow training (tests/pacing.py) so that a signal sent after a delay lands mid-run on a fast
    machine as on a slow one; train_process can import it."""
    return ["+callbacks.pace._target_=pacing.Pace", f"+callbacks.pace.seconds_per_step={seconds_per_step}"]


def train_process(*args: str, own_group: bool = False) -> subprocess.Popen:
    """train.py with tests/ on its path; own_group: in a process group of its own, as a terminal runs a command."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT / "tests")},
        start_new_session=own_group,
    )


def write_cifar100_layout(root: Path, train: int = 400, test: int = 100) -> Path:
    """A small dataset in the exact cifar-100-python layout: train, test and meta, pickled dicts as the official
    files (uint8 rows, fine and coarse labels, file names); fine label c belongs to superclass c // 5."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for i, (name, n) in enumerate((("train", train), ("test", test))):
        images, labels = synthetic_images(n, seed=100 + i, num_classes=100)
        entry = {
            "data": images.reshape(n, -1).numpy(),
            "fine_labels": labels.tolist(),
            "coarse_labels": (labels // 5).tolist(),
            "filenames": [f"image_{k}.png" for k in range(n)],
            "batch_label": f"{name} batch",
        }
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f, protocol=4)
    meta = {
        "fine_label_names": [f"class_{c}" for c in range(100)],
        "coarse_label_names": [f"superclass_{c}" for c in range(20)],
    }
    with open(folder / "meta", "wb") as f:
        pickle.dump(meta, f, protocol=4)
    return root
