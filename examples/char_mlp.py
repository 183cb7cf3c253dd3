"""Bring your own model: a character language model written as a plain `nn.Sequential`.

    python run.py model=custom model.target=examples.char_mlp:build algorithm=pipeline gpus=2
    python run.py model=custom model.target=examples.char_mlp:build model.options={width:64,depth:4}

Each child of the Sequential becomes one block, between which algorithms may cut. The output
projection reuses the embedding's weight: the wrapper finds that shared parameter and declares it
a tied tensor, so pipelines, the stale-gradient family and local learning keep its copies equal.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Embed(nn.Module):
    """Token ids (B, T) -> token + position embeddings (B, T, width)."""

    def __init__(self, vocab: int, context: int, width: int):
        super().__init__()
        self.token = nn.Embedding(vocab, width)
        self.position = nn.Embedding(context, width)
        for table in (self.token, self.position):
            nn.init.normal_(table.weight, std=0.02)  # small: the token table is also the output layer

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.token(ids) + self.position(torch.arange(ids.size(1), device=ids.device))


class Residual(nn.Module):
    """x + MLP(LayerNorm(x)), position by position (no attention: a small, fast model)."""

    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.up = nn.Linear(width, 4 * width)
        self.down = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(F.gelu(self.up(self.norm(x))))


class Project(nn.Module):
    """LayerNorm, then logits over the vocabulary with the embedding's own weight (tied)."""

    def __init__(self, embedding: nn.Embedding):
        super().__init__()
        self.norm = nn.LayerNorm(embedding.embedding_dim)
        self.weight = embedding.weight  # the same Parameter: a tied tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.norm(x), self.weight)


def build(data, width: int = 32, depth: int = 2) -> nn.Sequential:
    """`data` is the dataset's mpbench.data.DataInfo; `width` and `depth` come from model.options."""
    if data.task != "lm":
        raise ValueError(f"examples.char_mlp needs a language-modelling dataset; {data.name} is a {data.task} dataset")
    embed = Embed(data.vocab_size, data.input_shape[0], width)
    return nn.Sequential(embed, *(Residual(width) for _ in range(depth)), Project(embed.token))
