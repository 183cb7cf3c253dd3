"""Argument checks shared by every dataset's batch methods."""


def check_batch_size(batch_size: int) -> None:
    """Raise a one-line ValueError unless `batch_size` is a positive integer."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
