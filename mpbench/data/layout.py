"""Where each dataset's files live inside a data directory.

A data directory holds one subfolder per dataset, laid out like the shared offline copy
(`shared/datasets`): e.g. `<data_dir>/wikitext-2/train.txt`. All paths here are relative to it,
and they are also the keys of `checksums.EXPECTED`.
"""

TINYSHAKESPEARE = "tinyshakespeare/input.txt"

WIKITEXT2 = {
    "train": "wikitext-2/train.txt",
    "valid": "wikitext-2/valid.txt",
    "test": "wikitext-2/test.txt",
}

PTB = {
    "train": "ptb/ptb.train.txt",
    "valid": "ptb/ptb.valid.txt",
    "test": "ptb/ptb.test.txt",
}

FASHION_MNIST = {
    "train_images": "fashion-mnist/train-images-idx3-ubyte.gz",
    "train_labels": "fashion-mnist/train-labels-idx1-ubyte.gz",
    "test_images": "fashion-mnist/t10k-images-idx3-ubyte.gz",
    "test_labels": "fashion-mnist/t10k-labels-idx1-ubyte.gz",
}

# CIFAR-10 as JPEG files packed in two tars (the offline repack; see cifar10-jpg/README.md).
CIFAR10_JPG = {
    "train": "cifar10-jpg/cifar10-jpg-train.tar",
    "test": "cifar10-jpg/cifar10-jpg-test.tar",
}

# CIFAR-10 python version: the pickles extracted from the official cifar-10-python.tar.gz.
CIFAR10_PYTHON_FOLDER = "cifar-10-batches-py"
CIFAR10_PYTHON_ARCHIVE = "cifar-10-python.tar.gz"  # only exists while downloading
CIFAR10_PYTHON = {
    "train": tuple(f"{CIFAR10_PYTHON_FOLDER}/data_batch_{i}" for i in range(1, 6)),
    "test": (f"{CIFAR10_PYTHON_FOLDER}/test_batch",),
}
