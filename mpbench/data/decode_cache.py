"""A disk cache for decoded image arrays, so that slow decoding (60,000 JPEGs) happens once.

An entry is a set of `.npy` files `<cache_dir>/<key>.v<version>.<array>.npy`. Callers build the
key from the source file's SHA-256, so a changed source never hits an old entry; the version is
bumped when decoding itself changes. The cache lives outside the data directory, which may be
read-only.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

CACHE_FORMAT_VERSION = 1


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/mpbench`, or `~/.cache/mpbench` when XDG_CACHE_HOME is not set."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mpbench"


def entry_paths(cache_dir: Path, key: str, names: Sequence[str]) -> list[Path]:
    """The files of cache entry `key`, one per array name."""
    return [cache_dir / f"{key}.v{CACHE_FORMAT_VERSION}.{name}.npy" for name in names]


def cached_arrays(cache_dir: Path | None, key: str, names: Sequence[str],
                  decode: Callable[[], Sequence[np.ndarray]]) -> list[np.ndarray]:
    """The arrays of entry `key` from `cache_dir`, or `decode()` them and store them there.

    `decode` returns one array per name in `names`. `cache_dir=None` disables the cache. A
    directory that cannot be written costs a warning, not the run.
    """
    if cache_dir is None:
        return list(decode())
    paths = entry_paths(cache_dir, key, names)
    if all(path.is_file() for path in paths):
        try:
            return [np.load(path, allow_pickle=False) for path in paths]
        except (OSError, ValueError) as err:  # truncated or garbled by something else: decode again
            warnings.warn(f"ignoring unreadable cache entry {paths[0]}: {err}", stacklevel=2)
    arrays = list(decode())
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        for path, array in zip(paths, arrays):
            _save_atomically(path, array)
    except OSError as err:
        warnings.warn(f"cannot write the decoded-data cache in {cache_dir} ({err.strerror or err}); "
                      "decoding again next time", stacklevel=2)
    return arrays


def _save_atomically(path: Path, array: np.ndarray) -> None:
    """Write `array` to a temporary file beside `path`, then rename it over `path`.

    Readers see either no file or a complete one; concurrent writers (several workers decoding
    at once) each rename their own complete file, and the contents are identical anyway.
    """
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out:
            np.save(out, array, allow_pickle=False)
        os.replace(temp_name, path)
    finally:
        Path(temp_name).unlink(missing_ok=True)
