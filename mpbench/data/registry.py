"""The dataset registry: each name's settings and loader, and loading a dataset by name.

`DATASETS[name]` is a `DatasetSpec` whose first element is the frozen settings dataclass (the
config layer builds it from the `dataset` config group) and whose second is the loader.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

from mpbench.data import layout
from mpbench.data.base import Dataset
from mpbench.data.checksums import EXPECTED
from mpbench.data.decode_cache import default_cache_dir
from mpbench.data.download import source_hint
from mpbench.data.errors import DatasetError
from mpbench.data.images import load_cifar10, load_fashion_mnist
from mpbench.data.text import load_ptb, load_tinyshakespeare, load_wikitext2
from mpbench.settings import Settings

DATA_DIR_ENV = "MPBENCH_DATA_DIR"


@dataclass(frozen=True)
class TextSettings(Settings):
    """Settings of a language-modelling dataset."""

    seq_len: int = 128
    """Tokens per training and evaluation window."""

    def validate(self):
        if self.seq_len < 1:
            raise ValueError(f"seq_len must be a positive integer, got {self.seq_len!r}")


@dataclass(frozen=True)
class ImageSettings(Settings):
    """Settings of an image classification dataset."""

    augment: bool | None = None
    """Random crop + horizontal flip; null: the dataset's default (on for CIFAR-10, off for Fashion-MNIST)."""


@dataclass(frozen=True)
class Cifar10Settings(ImageSettings):
    """CIFAR-10 settings: which copy of the data to read."""

    format: Literal["jpg", "python"] = "jpg"
    """jpg: the offline JPEG re-encode (report as "CIFAR-10 (JPEG re-encode)"); python: the official pickles."""


class DatasetSpec(NamedTuple):
    """How to configure and load one dataset."""

    settings_type: type
    load: Callable[[Any, Path, int, Path], Dataset]  # (settings, data_dir, seed, cache_dir) -> dataset
    files: Callable[[Any], list[str]]  # settings -> the files it reads, relative to data_dir


def _text_spec(load: Callable[[Path, int, int], Dataset], files: list[str]) -> DatasetSpec:
    """A language-modelling dataset: `load(data_dir, seq_len, seed)`; no decoded-data cache."""
    def load_with_settings(settings: TextSettings, data_dir: Path, seed: int, cache_dir: Path) -> Dataset:
        return load(data_dir, settings.seq_len, seed)

    return DatasetSpec(TextSettings, load_with_settings, lambda settings: files)


def _load_cifar10(settings: Cifar10Settings, data_dir: Path, seed: int, cache_dir: Path) -> Dataset:
    return load_cifar10(data_dir, seed, format=settings.format, augment=settings.augment, cache_dir=cache_dir)


def _cifar10_files(settings: Cifar10Settings) -> list[str]:
    if settings.format == "jpg":
        return list(layout.CIFAR10_JPG.values())
    return [*layout.CIFAR10_PYTHON["train"], *layout.CIFAR10_PYTHON["test"]]


def _load_fashion_mnist(settings: ImageSettings, data_dir: Path, seed: int, cache_dir: Path) -> Dataset:
    return load_fashion_mnist(data_dir, seed, augment=settings.augment)


DATASETS: dict[str, DatasetSpec] = {
    "tinyshakespeare": _text_spec(load_tinyshakespeare, [layout.TINYSHAKESPEARE]),
    "wikitext2": _text_spec(load_wikitext2, list(layout.WIKITEXT2.values())),
    "ptb": _text_spec(load_ptb, list(layout.PTB.values())),
    "cifar10": DatasetSpec(Cifar10Settings, _load_cifar10, _cifar10_files),
    "fashion_mnist": DatasetSpec(ImageSettings, _load_fashion_mnist,
                                 lambda settings: list(layout.FASHION_MNIST.values())),
}


def _spec_and_settings(name: str, settings: Any) -> tuple[DatasetSpec, Any]:
    """The registry entry for `name` and its settings (the defaults when `settings` is None)."""
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; valid names: {', '.join(sorted(DATASETS))}")
    spec = DATASETS[name]
    if settings is None:
        return spec, spec.settings_type()
    if type(settings) is not spec.settings_type:
        raise TypeError(f"dataset {name!r} takes {spec.settings_type.__name__}, got {type(settings).__name__}")
    return spec, settings


SHIPPED_DATA_DIR = Path(__file__).resolve().parents[2] / "data"  # holds tiny-shakespeare only


def resolve_data_dir(data_dir: str | Path | None) -> Path:
    """`data_dir`; when None, $MPBENCH_DATA_DIR, else the repo's data/ (the shipped dataset)."""
    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_ENV) or SHIPPED_DATA_DIR
    return Path(data_dir).expanduser()


def check_present(name: str, settings: Any, data_dir: str | Path | None) -> None:
    """Raise DatasetError unless every file dataset `name` reads exists (no hashing: cheap).

    Meant for the launcher, before it starts workers that would each fail on a missing file.
    """
    spec, settings = _spec_and_settings(name, settings)
    data_dir = resolve_data_dir(data_dir)
    missing = [relative for relative in spec.files(settings) if not (data_dir / relative).is_file()]
    if missing:
        first = EXPECTED[missing[0]]
        others = f" and {len(missing) - 1} more file(s) of {name}" if len(missing) > 1 else ""
        raise DatasetError(f"missing dataset file {data_dir / missing[0]} (expected {first.describe()} "
                           f"{first.hexdigest}){others}; {source_hint(missing[0])}")


def load_dataset(name: str, settings: Any, data_dir: str | Path | None, seed: int,
                 cache_dir: str | Path | None = None) -> Dataset:
    """Load dataset `name` with `settings` (None: defaults) from `data_dir` (None: $MPBENCH_DATA_DIR).

    Every file is checked against its pinned checksum (once per process). Decoded images are
    cached in `cache_dir` (None: `$XDG_CACHE_HOME/mpbench` or `~/.cache/mpbench`). Raises
    DatasetError, with one line, for an unknown name or a missing or corrupt file.
    """
    spec, settings = _spec_and_settings(name, settings)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
    data_dir = resolve_data_dir(data_dir)
    check_data_dir(data_dir)
    try:
        return spec.load(settings, data_dir, seed, cache_dir)
    except OSError as err:  # a file that exists but cannot be read, or a cache that cannot be written
        path = Path(err.filename) if err.filename else data_dir
        key, directory = ("cache_dir", cache_dir) if _is_within(path, cache_dir) else ("data_dir", data_dir)
        raise DatasetError(f"cannot use {path} ({err.strerror or err}) for dataset {name}; check {key} "
                           f"({directory})") from None


def check_data_dir(data_dir: Path) -> None:
    """DatasetError, naming data_dir, unless `data_dir` is a directory that can be looked into
    (a missing one is left to the missing-file message, which says where to get each file)."""
    try:
        mode = os.stat(data_dir).st_mode
    except FileNotFoundError:
        return
    except OSError as err:  # a symlink loop, a name too long, no permission, a file as a parent
        raise DatasetError(f"data_dir {data_dir} cannot be used: {err.strerror or err}; set data_dir "
                           f"(or ${DATA_DIR_ENV}) to the directory that holds the datasets") from None
    if not stat.S_ISDIR(mode):
        raise DatasetError(f"data_dir {data_dir} is not a directory; set data_dir (or ${DATA_DIR_ENV}) to the "
                           f"directory that holds the datasets")


def _is_within(path: Path, directory: Path) -> bool:
    return path == directory or directory in path.parents
