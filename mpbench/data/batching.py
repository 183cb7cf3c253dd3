"""Argument checks shared by every dataset's batch methods."""

from mpbench.data.base import DataInfo
from mpbench.data.errors import DatasetError


def check_batch_size(batch_size: int) -> None:
    """Raise a one-line ValueError unless `batch_size` is a positive integer."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


def check_batch_fits(info: DataInfo, batch_size: int) -> None:
    """DatasetError, naming batch_size and the dataset's size, unless a global batch of
    `batch_size` distinct training samples exists; for the main process, before any worker
    starts (a worker would fail on its first batch)."""
    if info.train_samples is not None and batch_size > info.train_samples:
        what = (f"training windows of {info.input_shape[0]} tokens (dataset.seq_len)" if info.task == "lm"
                else "training samples")
        raise DatasetError(f"batch_size={batch_size} is larger than the {info.train_samples} {what} of "
                           f"{info.name}; use batch_size <= {info.train_samples}")
