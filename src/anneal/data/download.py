"""Finding a dataset's folder under a root, or downloading the official archive there: a bounded wait for
the server, an MD5 check, and an extraction that refuses members landing outside the target."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import socket
import tarfile
import tempfile
import threading
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from anneal.errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Archive:
    """An official dataset archive and the folder it unpacks to."""

    name: str  # as users know it: CIFAR-10
    url: str
    md5: str
    folder: str  # the folder inside the archive, e.g. cifar-10-batches-py
    markers: tuple[str, ...]  # files whose presence shows that a folder holds the dataset


CIFAR10 = Archive(
    "CIFAR-10",
    "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "c58f30108f718f92721af3b95e74349a",
    "cifar-10-batches-py",
    ("test_batch", "data_batch_1"),
)
CIFAR100 = Archive(
    "CIFAR-100",
    "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    "eb9058c3a382ffc7106e4002c42a8d85",
    "cifar-100-python",
    ("test", "train"),
)


class DataMissing(DataError):
    """The dataset is not under the root and could not be downloaded (`reason`); whoever knows the settings
    that point at the data says how to fix it."""

    def __init__(self, archive: Archive, root: Path, reason: str | None):
        self.archive, self.root, self.reason = archive, root, reason
        where = f"{archive.name} not found under {root}"
        super().__init__(
            f"{where} and downloading is off"
            if reason is None
            else f"{where} and the download from {archive.url} failed ({reason})"
        )

    def __reduce__(self) -> tuple[type[DataMissing], tuple[Archive, Path, str | None]]:  # a launcher pickles it
        return DataMissing, (self.archive, self.root, self.reason)


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def safe_extract(archive: Path, target: Path) -> None:
    """Extract a tar archive, refusing members that would land outside `target` or are links."""
    target = target.resolve()
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            destination = (target / member.name).resolve()
            if not destination.is_relative_to(target) or member.issym() or member.islnk() or member.isdev():
                raise DataError(f"refusing to extract {member.name!r} from {archive}: it points outside {target}")
        if hasattr(tarfile, "data_filter"):  # Python's own member filter (3.10.12+, 3.11.4+); the checks above anyway
            tar.extractall(target, filter="data")
        else:
            tar.extractall(target)


def check_reachable(url: str, timeout: float) -> None:
    """Raise OSError unless the host of `url` accepts a connection within `timeout` seconds, name lookup
    included (urlopen's timeout does not bound the lookup, which can hang on a machine without network)."""
    parts = urlparse(url)
    if parts.scheme not in ("http", "https"):
        return
    outcome: list[OSError | None] = []

    def connect() -> None:
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            socket.create_connection((parts.hostname, port), timeout).close()
            outcome.append(None)
        except OSError as error:
            outcome.append(error)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    if not outcome:
        raise OSError(f"no answer from {parts.hostname} within {timeout:g} s")
    if outcome[0] is not None:
        raise outcome[0]


def download(archive: Archive, root: Path, timeout: float = 5.0) -> None:
    """Download the official archive into `root`, check its MD5 and extract it."""
    check_reachable(archive.url, timeout)
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        path = Path(tmp) / Path(urlparse(archive.url).path).name
        log.info("downloading %s from %s into %s", archive.name, archive.url, root)
        with urllib.request.urlopen(archive.url, timeout=30) as response, open(path, "wb") as out:
            shutil.copyfileobj(response, out)
        if (digest := md5sum(path)) != archive.md5:
            raise DataError(
                f"downloaded {archive.url} has MD5 {digest}, expected {archive.md5}: the download is corrupt"
            )
        safe_extract(path, Path(tmp))
        os.replace(Path(tmp) / archive.folder, root / archive.folder)


def locate(archive: Archive, root: str | Path, download_missing: bool = True, timeout: float = 5.0) -> Path:
    """The dataset's folder under `root` (or `root` itself), downloading it there if allowed."""
    root = Path(root).expanduser()
    if root.exists() and not root.is_dir():
        raise DataError(
            f"{archive.name}: the data root {root} is a file: point it at the folder holding {archive.folder}/"
        )
    for folder in (root / archive.folder, root):
        if any((folder / marker).exists() for marker in archive.markers):
            return folder
    if not download_missing:
        raise DataMissing(archive, root, None)
    try:
        download(archive, root, timeout=timeout)
    except DataError:
        raise
    except OSError as e:  # no network, DNS failure, timeout, disk full
        raise DataMissing(archive, root, str(e)) from None
    return root / archive.folder
