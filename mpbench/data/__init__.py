"""The dataset layer: loading benchmark datasets by name, with pinned checksums.

    from mpbench.data import load_dataset, TextSettings
    data = load_dataset("wikitext2", TextSettings(seq_len=128), data_dir, seed=0)
    x, y = data.train_batch(step, batch_size, rows=slice(0, 32))
"""

from mpbench.data.base import DataInfo, Dataset
from mpbench.data.batching import check_batch_fits
from mpbench.data.checksums import EXPECTED, Expected, verify_file
from mpbench.data.decode_cache import default_cache_dir
from mpbench.data.download import DOWNLOADS, download
from mpbench.data.errors import DatasetError
from mpbench.data.registry import (
    DATA_DIR_ENV,
    DATASETS,
    Cifar10Settings,
    DatasetSpec,
    ImageSettings,
    TextSettings,
    check_present,
    load_dataset,
)

__all__ = [
    "DATASETS", "DATA_DIR_ENV", "DOWNLOADS", "EXPECTED", "Cifar10Settings", "DataInfo", "Dataset",
    "DatasetError", "DatasetSpec", "Expected", "ImageSettings", "TextSettings", "check_batch_fits", "check_present",
    "default_cache_dir", "download", "load_dataset", "verify_file",
]
