"""Language-modelling datasets: a token stream cut into windows of `seq_len` tokens.

Char level (tiny-shakespeare): the vocabulary is the sorted set of distinct characters of the
whole file (65); the first 90% of characters train, the last 10% validate, as in nanoGPT.

Word level (WikiText-2, PTB): each line is split on whitespace and `<eos>` is appended per
line, which reproduces the published token counts; ids are given in order of first appearance
in the training split (the pytorch/examples word_language_model convention).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mpbench.data import layout
from mpbench.data.base import DataInfo
from mpbench.data.batching import check_batch_size
from mpbench.data.checksums import EXPECTED, verify_file
from mpbench.data.download import source_hint
from mpbench.data.errors import DatasetError
from mpbench.data.seeding import Stream, generator_for

END_OF_LINE = "<eos>"
TINYSHAKESPEARE_TRAIN_FRACTION = 0.9


class LanguageModelDataset:
    """Next-token prediction on one token stream per split ("train", "valid", maybe "test").

    Training batch `step`: `batch_size` window starts drawn uniformly from
    [0, n_train - seq_len - 1] by a generator seeded from (seed, step); input is
    tokens[o : o+T], target tokens[o+1 : o+T+1]. Evaluation: the validation split cut into
    consecutive non-overlapping windows, in order.
    """

    def __init__(self, name: str, unit: str, splits: dict[str, torch.Tensor], vocab: list[str],
                 seq_len: int, seed: int):
        for split in ("train", "valid"):
            if len(splits[split]) < seq_len + 1:
                raise DatasetError(f"dataset.seq_len={seq_len} is too long for the {split} split of {name} "
                                   f"({len(splits[split])} tokens); use at most {len(splits[split]) - 1}")
        # A training window starts anywhere in [0, n_train - seq_len - 1]: so many distinct windows.
        self.info = DataInfo(name=name, task="lm", input_shape=(seq_len,), vocab_size=len(vocab), unit=unit,
                             train_samples=len(splits["train"]) - seq_len)
        self.splits = splits
        self.vocab = vocab
        self.seq_len = seq_len
        self.seed = seed

    def train_batch(self, step: int, batch_size: int,
                    rows: slice | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        check_batch_size(batch_size)
        train, length = self.splits["train"], self.seq_len
        # All starts of the global batch are drawn (cheap) so that a shard's rows are exactly
        # those rows of the global batch, whatever the number of workers.
        starts = torch.randint(0, len(train) - length, (batch_size,),
                               generator=generator_for(self.seed, Stream.TEXT_WINDOWS, step))
        if rows is not None:
            starts = starts[rows]
        windows = train[starts[:, None] + torch.arange(length + 1)]
        return windows[:, :-1].contiguous(), windows[:, 1:].contiguous()

    def eval_batches(self, batch_size: int,
                     max_batches: int | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        check_batch_size(batch_size)
        valid, length = self.splits["valid"], self.seq_len
        n_windows = (len(valid) - 1) // length
        inputs = valid[: n_windows * length].view(n_windows, length)
        targets = valid[1 : n_windows * length + 1].view(n_windows, length)
        starts = range(0, n_windows, batch_size)
        if max_batches is not None:
            starts = starts[:max_batches]
        return [(inputs[i : i + batch_size].clone(), targets[i : i + batch_size].clone()) for i in starts]


def load_tinyshakespeare(data_dir: Path, seq_len: int, seed: int) -> LanguageModelDataset:
    """Character-level tiny-shakespeare from `<data_dir>/tinyshakespeare/input.txt`."""
    path = data_dir / layout.TINYSHAKESPEARE
    verify_file(path, EXPECTED[layout.TINYSHAKESPEARE], source_hint(layout.TINYSHAKESPEARE))
    text = path.read_text(encoding="utf-8")
    # One code point per element, then np.unique gives the sorted vocabulary and every
    # character's index into it in one vectorised pass.
    code_points = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
    vocab_code_points, ids = np.unique(code_points, return_inverse=True)
    tokens = torch.from_numpy(ids.astype(np.int64))
    n_train = int(len(tokens) * TINYSHAKESPEARE_TRAIN_FRACTION)
    splits = {"train": tokens[:n_train], "valid": tokens[n_train:]}
    vocab = [chr(code_point) for code_point in vocab_code_points]
    return LanguageModelDataset("tinyshakespeare", "char", splits, vocab, seq_len, seed)


def _read_words(path: Path) -> list[str]:
    """The whitespace-separated words of a file with END_OF_LINE after every line."""
    words: list[str] = []
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            words += line.split()
            words.append(END_OF_LINE)
    return words


def load_word_corpus(name: str, files: dict[str, str], data_dir: Path, seq_len: int,
                     seed: int) -> LanguageModelDataset:
    """A word-level corpus whose `files` map split -> path relative to `data_dir`.

    The vocabulary comes from the train split; a word of another split that is not in it means
    the files do not belong together, which is reported as a DatasetError.
    """
    for relative in files.values():
        verify_file(data_dir / relative, EXPECTED[relative], source_hint(relative))
    word_ids: dict[str, int] = {}
    train_ids = [word_ids.setdefault(word, len(word_ids)) for word in _read_words(data_dir / files["train"])]
    splits = {"train": torch.tensor(train_ids, dtype=torch.int64)}
    for split, relative in files.items():
        if split == "train":
            continue
        words = _read_words(data_dir / relative)
        unknown = next((word for word in words if word not in word_ids), None)
        if unknown is not None:
            raise DatasetError(f"{data_dir / relative}: word {unknown!r} is not in the vocabulary "
                               f"of {files['train']}; the split files do not belong together")
        splits[split] = torch.tensor([word_ids[word] for word in words], dtype=torch.int64)
    return LanguageModelDataset(name, "word", splits, list(word_ids), seq_len, seed)


def load_wikitext2(data_dir: Path, seq_len: int, seed: int) -> LanguageModelDataset:
    """WikiText-2 v1 (tokenized), word level, from `<data_dir>/wikitext-2/`."""
    return load_word_corpus("wikitext2", layout.WIKITEXT2, data_dir, seq_len, seed)


def load_ptb(data_dir: Path, seq_len: int, seed: int) -> LanguageModelDataset:
    """Penn Treebank (Mikolov's LM version), word level, from `<data_dir>/ptb/`."""
    return load_word_corpus("ptb", layout.PTB, data_dir, seq_len, seed)
