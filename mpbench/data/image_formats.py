"""Readers for the image file formats: JPEG tars, CIFAR-10 python pickles and gzip IDX files.

Each returns plain uint8 NumPy arrays, images as N x C x H x W, and raises DatasetError (one
line naming the file) when the content does not have the expected structure.
"""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from mpbench.data.errors import DatasetError

CIFAR_PIXELS = 3 * 32 * 32
IDX_UNSIGNED_BYTE = 0x08


def read_jpeg_tar(path: Path, class_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Decode every `<split>/<class>/<file>.jpg` member of an uncompressed tar, in member order.

    The label is the `<class>` folder, numbered in alphabetical order of `class_names`. Reads
    the tar in place (no extraction). Returns images (N, 3, H, W) uint8 and labels (N,) int64.
    """
    class_ids = {name: index for index, name in enumerate(sorted(class_names))}
    images, labels = [], []
    try:
        with tarfile.open(path) as tar:
            for member in tar:
                if not member.isfile():
                    continue
                class_name = member.name.split("/")[1] if member.name.count("/") >= 2 else None
                if class_name not in class_ids:
                    raise DatasetError(f"{path}: member {member.name} is not <split>/<class>/<file> with a "
                                       f"class in {', '.join(sorted(class_ids))}")
                with Image.open(io.BytesIO(tar.extractfile(member).read())) as image:
                    pixels = np.asarray(image.convert("RGB"))
                if images and pixels.shape != images[0].shape:
                    raise DatasetError(f"{path}: member {member.name} is {pixels.shape[1]}x{pixels.shape[0]} "
                                       f"pixels, the first image is {images[0].shape[1]}x{images[0].shape[0]}")
                images.append(pixels)
                labels.append(class_ids[class_name])
    except (tarfile.TarError, UnidentifiedImageError, OSError) as err:
        raise DatasetError(f"{path}: cannot read the JPEG tar ({err})") from None
    if not images:
        raise DatasetError(f"{path}: the tar holds no image files")
    # Stacked as N x H x W x C (how Pillow gives pixels), stored channels-first like the model input.
    return np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2)), np.array(labels, dtype=np.int64)


def read_cifar_pickles(paths: Sequence[Path], num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The images and labels of CIFAR-10 python batch files, concatenated in the given order.

    Each file is a pickled dict with b"data" (N x 3072 uint8, rows holding the red, green and
    blue 32x32 planes in turn) and b"labels" (N ints). Unpickling can run code, so call this only
    on files whose checksum was verified (or that you made yourself).
    Returns images (N, 3, 32, 32) uint8 and labels (N,) int64.
    """
    images, labels = [], []
    for path in paths:
        try:
            with open(path, "rb") as stream:
                batch = pickle.load(stream, encoding="bytes")
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as err:
            raise DatasetError(f"{path}: not a CIFAR-10 python batch, cannot unpickle it ({err})") from None
        if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
            keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
            raise DatasetError(f"{path}: not a CIFAR-10 python batch, expected a dict with keys b'data' "
                               f"and b'labels', got {keys}")
        data, batch_labels = batch[b"data"], np.asarray(batch[b"labels"])
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
                or data.shape[1] != CIFAR_PIXELS:
            shape = getattr(data, "shape", None)
            raise DatasetError(f"{path}: b'data' must be a uint8 array of shape (N, {CIFAR_PIXELS}), "
                               f"got {type(data).__name__} of shape {shape}")
        if batch_labels.shape != (len(data),) or not np.isin(batch_labels, np.arange(num_classes)).all():
            raise DatasetError(f"{path}: b'labels' must hold {len(data)} class ids in 0..{num_classes - 1}")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(batch_labels.astype(np.int64))
    return np.concatenate(images), np.concatenate(labels)


def read_idx_gz(path: Path) -> np.ndarray:
    """The unsigned-byte array of a gzip-compressed IDX file (the MNIST format).

    Header: two zero bytes, a type byte (0x08 = unsigned byte), the number of dimensions, then
    each dimension as a big-endian uint32.
    """
    try:
        content = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as err:
        raise DatasetError(f"{path}: cannot decompress it ({err})") from None
    ndim = content[3] if len(content) >= 4 else 0
    if len(content) < 4 + 4 * ndim or content[:2] != b"\0\0" or content[2] != IDX_UNSIGNED_BYTE:
        raise DatasetError(f"{path}: not an unsigned-byte IDX file (header {content[:4].hex()})")
    shape = tuple(int(size) for size in np.frombuffer(content, dtype=">u4", count=ndim, offset=4))
    data = np.frombuffer(content, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise DatasetError(f"{path}: IDX header says shape {shape} but holds {data.size} values")
    return data.reshape(shape).copy()  # a copy owns writable memory; the buffer is read-only bytes
