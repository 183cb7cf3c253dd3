"""Image classification datasets: CIFAR-10 (JPEG re-encode or python pickles) and Fashion-MNIST.

Images are kept in memory as uint8 N x C x H x W and turned into normalised float32 one batch at
a time (a float copy of CIFAR-10's training set would take 600 MB per worker).

Training order: each epoch is a permutation of the training set drawn from a generator seeded
by (seed, epoch); step s is batch s % batches_per_epoch of epoch s // batches_per_epoch, with
batches_per_epoch = n_train // batch_size (the incomplete last batch is dropped).

Augmentation (the standard CIFAR recipe): pad 4 zero pixels on every side, take a random 32x32
crop, flip horizontally with probability 1/2. Padding happens before normalisation, so padded
pixels are black, as with torchvision's RandomCrop(32, padding=4) followed by Normalize. Crop
offsets and flips are drawn for the whole global batch from a generator seeded by (seed, step)
and then sliced, so a worker's shard is exactly its rows of the global batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mpbench.data import image_formats, layout
from mpbench.data.base import DataInfo
from mpbench.data.batching import check_batch_size
from mpbench.data.checksums import EXPECTED, Expected, verify_file
from mpbench.data.decode_cache import cached_arrays
from mpbench.data.download import source_hint
from mpbench.data.errors import DatasetError
from mpbench.data.seeding import Stream, generator_for

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)  # the commonly quoted per-channel statistics of the
CIFAR10_STD = (0.2470, 0.2435, 0.2616)  # original training set, used for both formats
FASHION_MNIST_MEAN = (0.2860,)
FASHION_MNIST_STD = (0.3530,)
CROP_PADDING = 4
CIFAR10_FORMATS = ("jpg", "python")


def random_crop_and_flip(images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor,
                         padding: int = CROP_PADDING) -> torch.Tensor:
    """Crop each image of a zero-padded batch at its own offset, and mirror the flagged ones.

    images: (B, C, H, W); offsets: (B, 2) row and column of the crop's corner in the padded
    image, each in [0, 2 * padding]; flips: (B,) bool. One gather does the whole batch: the
    crop picks rows/columns offset..offset+H-1, and a flip just reads those columns backwards.
    """
    batch, channels, height, width = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    rows = offsets[:, 0, None] + torch.arange(height)  # (B, H)
    columns = offsets[:, 1, None] + torch.arange(width)  # (B, W)
    columns = torch.where(flips[:, None], columns.flip(1), columns)
    return padded[torch.arange(batch)[:, None, None, None], torch.arange(channels)[None, :, None, None],
                  rows[:, None, :, None], columns[:, None, None, :]]


class ImageClassificationDataset:
    """Labelled uint8 images served as normalised float32 batches (see the module docstring)."""

    def __init__(self, name: str, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                 mean: tuple[float, ...], std: tuple[float, ...], augment: bool, seed: int,
                 num_classes: int = 10):
        (train_images, train_labels), (test_images, test_labels) = train, test
        self.info = DataInfo(name=name, task="classification", input_shape=tuple(train_images.shape[1:]),
                             num_classes=num_classes, unit="sample", train_samples=len(train_labels))
        self.train_images = torch.from_numpy(train_images)
        self.train_labels = torch.from_numpy(train_labels)
        self.test_images = torch.from_numpy(test_images)
        self.test_labels = torch.from_numpy(test_labels)
        self.mean = torch.tensor(mean, dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(std, dtype=torch.float32)[:, None, None]
        self.augment = augment
        self.seed = seed
        self._epoch_order: tuple[int, torch.Tensor] | None = None  # the last epoch's permutation

    def batches_per_epoch(self, batch_size: int) -> int:
        check_batch_size(batch_size)
        if batch_size > len(self.train_labels):
            raise ValueError(f"batch_size={batch_size} is larger than the {len(self.train_labels)} "
                             f"training samples of {self.info.name}")
        return len(self.train_labels) // batch_size

    def batch_indices(self, step: int, batch_size: int) -> torch.Tensor:
        """The training-set indices of global batch `step`."""
        epoch, position = divmod(step, self.batches_per_epoch(batch_size))
        if self._epoch_order is None or self._epoch_order[0] != epoch:
            generator = generator_for(self.seed, Stream.IMAGE_ORDER, epoch)
            order = torch.randperm(len(self.train_labels), generator=generator)
            self._epoch_order = (epoch, order)
        return self._epoch_order[1][position * batch_size : (position + 1) * batch_size]

    def train_batch(self, step: int, batch_size: int,
                    rows: slice | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        rows = slice(None) if rows is None else rows
        indices = self.batch_indices(step, batch_size)[rows]
        images = self.train_images[indices]
        if self.augment:
            offsets, flips = self.augmentation(step, batch_size)
            images = random_crop_and_flip(images, offsets[rows], flips[rows])
        return self.normalise(images), self.train_labels[indices]

    def augmentation(self, step: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Crop offsets (B, 2) and flip flags (B,) of global batch `step`, drawn for all its rows."""
        generator = generator_for(self.seed, Stream.IMAGE_AUGMENT, step)
        offsets = torch.randint(0, 2 * CROP_PADDING + 1, (batch_size, 2), generator=generator)
        flips = torch.randint(0, 2, (batch_size,), generator=generator).bool()
        return offsets, flips

    def eval_batches(self, batch_size: int,
                     max_batches: int | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The test set, unaugmented, in one fixed shuffled order; the last batch may be smaller.

        The files list the test set class by class, so the first batches in file order would hold
        one class only. The order comes from seed 0 whatever the run's seed, so every run (any
        seed, algorithm or worker count) evaluates the same samples.
        """
        check_batch_size(batch_size)
        n_batches = -(-len(self.test_labels) // batch_size)
        if max_batches is not None:
            n_batches = min(n_batches, max_batches)
        order = torch.randperm(len(self.test_labels), generator=generator_for(0, Stream.EVAL_ORDER, 0))
        chosen = [order[start:start + batch_size] for start in range(0, n_batches * batch_size, batch_size)]
        return [(self.normalise(self.test_images[rows]), self.test_labels[rows].clone()) for rows in chosen]

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W) -> float32 scaled to [0, 1], minus the channel mean, over the channel std."""
        return (images.float() / 255 - self.mean) / self.std


def _read_cifar10_jpg(data_dir: Path, cache_dir: Path | None,
                      expected: Mapping[str, Expected]) -> list[tuple[np.ndarray, np.ndarray]]:
    splits = []
    for split in ("train", "test"):
        relative = layout.CIFAR10_JPG[split]
        path = data_dir / relative
        verify_file(path, expected[relative], source_hint(relative))
        # Keyed by the verified SHA-256, so the cache can never serve pixels of a different tar.
        key = f"cifar10-jpg-{split}-{expected[relative].hexdigest}"
        images, labels = cached_arrays(cache_dir, key, ("images", "labels"),
                                       lambda: image_formats.read_jpeg_tar(path, CIFAR10_CLASSES))
        splits.append((images, labels))
    return splits


def _read_cifar10_python(data_dir: Path,
                         expected: Mapping[str, Expected]) -> list[tuple[np.ndarray, np.ndarray]]:
    splits = []
    for split in ("train", "test"):
        relatives = layout.CIFAR10_PYTHON[split]
        for relative in relatives:  # before unpickling: a pickle can run code
            verify_file(data_dir / relative, expected[relative], source_hint(relative))
        splits.append(image_formats.read_cifar_pickles([data_dir / relative for relative in relatives]))
    return splits


def load_cifar10(data_dir: Path, seed: int, *, format: str = "jpg", augment: bool | None = None,
                 cache_dir: Path | None = None,
                 expected: Mapping[str, Expected] = EXPECTED) -> ImageClassificationDataset:
    """CIFAR-10 from `<data_dir>/cifar10-jpg/` (format "jpg") or `<data_dir>/cifar-10-batches-py/`.

    `augment` None means on. Decoded JPEGs are cached in `cache_dir` (None: no cache); the
    pickles load fast enough without. `expected` replaces the pinned checksum table (tests).
    """
    if format not in CIFAR10_FORMATS:
        raise ValueError(f"format must be one of {', '.join(CIFAR10_FORMATS)}; got {format!r}")
    if format == "jpg":
        train, test = _read_cifar10_jpg(data_dir, cache_dir, expected)
    else:
        train, test = _read_cifar10_python(data_dir, expected)
    return ImageClassificationDataset("cifar10", train, test, CIFAR10_MEAN, CIFAR10_STD,
                                      augment=True if augment is None else augment, seed=seed)


def load_fashion_mnist(data_dir: Path, seed: int, *, augment: bool | None = None,
                       expected: Mapping[str, Expected] = EXPECTED) -> ImageClassificationDataset:
    """Fashion-MNIST from the gzip IDX files in `<data_dir>/fashion-mnist/`. `augment` None means off."""
    arrays = {}
    for part, relative in layout.FASHION_MNIST.items():
        verify_file(data_dir / relative, expected[relative], source_hint(relative))
        arrays[part] = image_formats.read_idx_gz(data_dir / relative)
    splits = []
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.shape != (len(images),):
            raise DatasetError(f"{data_dir / layout.FASHION_MNIST[f'{split}_images']}: {split} images of shape "
                               f"{images.shape} do not match labels of shape {labels.shape}")
        splits.append((images[:, None], labels.astype(np.int64)))  # add the channel axis
    return ImageClassificationDataset("fashion_mnist", splits[0], splits[1], FASHION_MNIST_MEAN,
                                      FASHION_MNIST_STD, augment=bool(augment), seed=seed)
