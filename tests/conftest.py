import contextlib
import csv
import io
import logging
import os
import pickle
import re
import signal
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


def run_main(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """train.py's command in this process, as run_cli runs it in a new one, less the interpreter's start (~6 s of
    imports): the command line's checks, Hydra's composition, the run, and the exit code with its one line on
    stderr (anneal.cli's mapping, the one train.py uses). For what does not test the process boundary; env: as
    run_cli's, None unsets. Logging as Hydra configured it for the run is undone afterwards."""
    from anneal.cli import checked_command_line

    train = entry_point()
    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    kept = (root.handlers[:], root.level)
    loggers = {
        name: (lg.handlers[:], lg.level, lg.propagate)
        for name, lg in logging.root.manager.loggerDict.items()
        if isinstance(lg, logging.Logger)
    }
    code: int | str | None = 0
    with contextlib.ExitStack() as undo:
        undo.enter_context(environment(env or {}))
        undo.enter_context(contextlib.redirect_stdout(out))
        undo.enter_context(contextlib.redirect_stderr(err))
        argv = sys.argv
        try:
            sys.argv = checked_command_line([str(ROOT / "train.py"), *args], CONF)
            train.main()
        except SystemExit as end:
            code = end.code
        finally:
            sys.argv = argv
            for handler in set(root.handlers) - set(kept[0]):
                handler.close()
            root.handlers[:], root.level = kept
            for name, (handlers, level, propagate) in loggers.items():
                logger = logging.getLogger(name)
                for handler in set(logger.handlers) - set(handlers):
                    handler.close()
                logger.handlers[:], logger.level, logger.propagate = handlers, level, propagate
    returncode = code if isinstance(code, int) else (0 if code is None else 1)
    return subprocess.CompletedProcess(args, returncode, out.getvalue(), err.getvalue())


def entry_point():
    """train.py, imported (it is a script at the root, not part of the package); importing it changes nothing."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import train

    return train


@contextlib.contextmanager
def environment(changes: dict):
    before = {k: os.environ.get(k) for k in changes}
    try:
        for key, value in changes.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


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


def accuracy_by_hand(monkeypatch) -> list[float]:
    """After the run: the test accuracy of the network as the final test saw it, recomputed by hand (argmax of
    the network's outputs against the labels, over the batches the test took), one value per test; the run's
    own test/acc must equal it. Taken at the test's end, where the evaluated weights are in the network (a
    schedule-free optimizer's average)."""
    import torch

    from anneal.module import Classifier

    found: list[float] = []
    at_test_end = Classifier.on_test_epoch_end

    def recompute(self) -> None:
        at_test_end(self)
        limit = self.trainer.num_test_batches[0]
        correct = seen = 0
        with torch.no_grad():
            for index, (images, labels) in enumerate(self.trainer.datamodule.test_dataloader()):
                if index >= limit:
                    break
                correct += int((self.network(images).argmax(1) == labels).sum())
                seen += len(labels)
        found.append(correct / seen)

    monkeypatch.setattr(Classifier, "on_test_epoch_end", recompute)
    return found


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


# --- the tests that train: .ci/run runs them again with one thread (another summation order) ---
TRAINS = re.compile(r"(?<![.\w])(run|run_main|run_cli|train_process|check_fault)\(")


def pytest_collection_modifyitems(config, items):
    """Marks `trains` the tests of a module that trains (calls anneal's run, train.py's main or train.py): run
    with OMP_NUM_THREADS=1 as well as with every core, a test that asserts on a training trajectory shows."""
    trains: dict[str, bool] = {}
    for item in items:
        path = str(item.path)
        if path not in trains:
            trains[path] = bool(TRAINS.search(item.path.read_text())) if item.path.suffix == ".py" else False
        if trains[path]:
            item.add_marker(pytest.mark.trains)


# --- the suite leaves the checkout and the test process as it found them ---


def signal_state() -> tuple:
    """What a test may not leave changed: the main thread's blocked signals and the SIGINT and SIGTERM handlers."""
    return (
        signal.pthread_sigmask(signal.SIG_BLOCK, []),
        signal.getsignal(signal.SIGINT),
        signal.getsignal(signal.SIGTERM),
    )


@pytest.fixture(autouse=True)
def signals_as_found():
    """A test that blocks a signal or leaves a handler of its run behind errors here, by name."""
    before = signal_state()
    yield
    after = signal_state()
    if after != before:
        signal.pthread_sigmask(signal.SIG_SETMASK, before[0])  # the tests after it run as they would alone
        signal.signal(signal.SIGINT, before[1])
        signal.signal(signal.SIGTERM, before[2])
        pytest.fail(f"the test changed the process's signal state: blocked/SIGINT/SIGTERM {before} -> {after}")


# what tools keep in a checkout (the environment, byte code, caches): not a test's output
TOOL_FILES = (".venv", "__pycache__", ".pytest_cache", ".ipynb_checkpoints", ".mypy_cache", ".ruff_cache")


def untracked_files() -> set[str] | None:
    """The checkout's files that git does not track, ignored ones too (outputs/ is ignored, and a test writing
    a run there is still a test writing into the checkout), less the tools' own; None when not a git checkout."""

    def listed(*options: str) -> list[str] | None:
        try:
            done = subprocess.run(
                ["git", "status", "--porcelain", *options], cwd=ROOT, capture_output=True, text=True, timeout=60
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.splitlines() if done.returncode == 0 else None

    untracked = listed("--untracked-files=all")
    ignored = listed("--untracked-files=normal", "--ignored")  # an ignored folder as one line
    if untracked is None or ignored is None:
        return None
    found = {line[3:] for line in untracked if line.startswith("?? ")}
    for entry in (line[3:].rstrip("/") for line in ignored if line.startswith("!! ")):
        if is_tools(Path(entry)):
            continue
        path = ROOT / entry
        if path.is_dir():
            for folder, dirs, files in os.walk(path):
                dirs[:] = [d for d in dirs if d not in TOOL_FILES]
                found |= {str(Path(folder, f).relative_to(ROOT)) for f in files}
        else:
            found.add(entry)
    return found


def is_tools(path: Path) -> bool:
    return any(part in TOOL_FILES or part.endswith(".egg-info") for part in path.parts)


def pytest_sessionstart(session):
    session.config.stash[FOUND] = (untracked_files(), signal_state())


def pytest_sessionfinish(session, exitstatus):
    """Fails the run if the checkout gained files or the process's signal state changed."""
    if FOUND not in session.config.stash:
        return
    files, signals = session.config.stash[FOUND]
    problems = []
    now = untracked_files()
    if files is not None and now is not None and (gained := sorted(now - files)):
        problems.append(f"the tests left files in the checkout: {gained[:20]}")
    if signal_state() != signals:
        problems.append(f"the tests changed the signal state: blocked/SIGINT/SIGTERM {signals} -> {signal_state()}")
    if problems:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.ensure_newline()
        for problem in problems:
            if reporter is not None:
                reporter.write_line(f"ERROR: {problem}", red=True, bold=True)
            else:
                print(f"ERROR: {problem}", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


FOUND = pytest.StashKey[tuple]()
