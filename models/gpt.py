"""A GPT-2-style causal Transformer language model, cut into blocks.

Architecture as in Radford et al. 2019, "Language Models are Unsupervised Multitask Learners"
(GPT-2): pre-LayerNorm residual blocks (LN -> causal self-attention -> add, LN -> 4x MLP with
GELU -> add), learned position embeddings, a final LayerNorm, and an output projection that
reuses the token embedding matrix (weight tying; Press & Wolf 2017, "Using the Output Embedding
to Improve Language Models").

Blocks, in forward order:

    0            Embedding       token ids (B, T) -> token + position embeddings (B, T, d)
    1..n_layer   TransformerBlock                (B, T, d) -> (B, T, d)
    n_layer + 1  Head            final LN + projection to the vocabulary -> logits (B, T, V)

The tie is declared as `TiedParameter("token_embedding", ((0, "token.weight"),
(n_layer + 1, "proj.weight")))`: in this single-process model both names are the same
`nn.Parameter`; an algorithm that puts blocks 0 and n_layer + 1 on different workers keeps a copy
on each and sums the two gradient contributions.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mpbench.blocks import BlockModel, TiedParameter
from mpbench.data.base import DataInfo
from mpbench.settings import Settings
from models.heads import ShapedHeads

INIT_STD = 0.02  # GPT-2's initialisation scale for every weight matrix and embedding


@dataclass(frozen=True)
class GPTSettings(Settings):
    """Shape of the Transformer; the vocabulary comes from the dataset."""

    n_layer: int
    """Number of Transformer blocks."""
    n_head: int
    """Attention heads per block; must divide d_model."""
    d_model: int
    """Residual stream width."""
    context: int
    """Maximum sequence length (the size of the position embedding table)."""
    dropout: float = 0.0
    """Dropout on the embeddings, the attention weights and both residual branches."""
    bias: bool = True
    """Biases in the Linear layers and LayerNorms (GPT-2 has them)."""

    def validate(self):
        for key in ("n_layer", "n_head", "d_model", "context"):
            if getattr(self, key) < 1:
                raise ValueError(f"gpt {key} must be a positive integer, got {getattr(self, key)!r}")
        if self.d_model % self.n_head != 0:
            raise ValueError(f"gpt d_model must be divisible by n_head; got d_model={self.d_model}, "
                             f"n_head={self.n_head}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"gpt dropout must be in [0, 1), got {self.dropout!r}")


class Embedding(nn.Module):
    """Token ids (B, T) -> token embedding + learned position embedding, then dropout."""

    def __init__(self, vocab_size: int, s: GPTSettings):
        super().__init__()
        self.context = s.context
        self.token = nn.Embedding(vocab_size, s.d_model)
        self.position = nn.Embedding(s.context, s.d_model)
        self.drop = nn.Dropout(s.dropout)
        nn.init.normal_(self.token.weight, std=INIT_STD)
        nn.init.normal_(self.position.weight, std=INIT_STD)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.size(1)
        if t > self.context:
            raise ValueError(f"sequence of length {t} is longer than the model's context {self.context}")
        pos = torch.arange(t, device=idx.device)
        return self.drop(self.token(idx) + self.position(pos))


class CausalSelfAttention(nn.Module):
    def __init__(self, s: GPTSettings):
        super().__init__()
        self.n_head = s.n_head
        self.dropout = s.dropout
        self.qkv = nn.Linear(s.d_model, 3 * s.d_model, bias=s.bias)  # all heads' q, k, v in one matmul
        self.proj = nn.Linear(s.d_model, s.d_model, bias=s.bias)
        self.resid_drop = nn.Dropout(s.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)
        # (B, T, d) -> (B, heads, T, d / heads)
        q, k, v = (z.view(b, t, self.n_head, d // self.n_head).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(b, t, d)
        return self.resid_drop(self.proj(y))


class MLP(nn.Module):
    def __init__(self, s: GPTSettings):
        super().__init__()
        self.fc = nn.Linear(s.d_model, 4 * s.d_model, bias=s.bias)
        self.gelu = nn.GELU()  # exact GELU; GPT-2 used the tanh approximation, a negligible change
        self.proj = nn.Linear(4 * s.d_model, s.d_model, bias=s.bias)
        self.drop = nn.Dropout(s.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(self.gelu(self.fc(x))))


class TransformerBlock(nn.Module):
    """Pre-LN residual block: x + attn(LN(x)), then x + mlp(LN(x))."""

    def __init__(self, s: GPTSettings):
        super().__init__()
        self.ln1 = nn.LayerNorm(s.d_model, bias=s.bias)
        self.attn = CausalSelfAttention(s)
        self.ln2 = nn.LayerNorm(s.d_model, bias=s.bias)
        self.mlp = MLP(s)
        for linear in (self.attn.qkv, self.attn.proj, self.mlp.fc, self.mlp.proj):
            nn.init.normal_(linear.weight, std=INIT_STD)
            if linear.bias is not None:
                nn.init.zeros_(linear.bias)
        # GPT-2: scale the projections that write into the residual stream by 1/sqrt(N), N = 2 per
        # block, so that the stream's variance does not grow with depth.
        for linear in (self.attn.proj, self.mlp.proj):
            nn.init.normal_(linear.weight, std=INIT_STD / math.sqrt(2 * s.n_layer))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class Head(nn.Module):
    """Final LayerNorm and the projection to vocabulary logits, whose weight is the token embedding."""

    def __init__(self, token_weight: nn.Parameter, s: GPTSettings):
        super().__init__()
        self.ln_f = nn.LayerNorm(s.d_model, bias=s.bias)
        vocab_size = token_weight.size(0)
        # Built on the meta device (no memory, no random draws), then given the shared weight.
        self.proj = nn.Linear(s.d_model, vocab_size, bias=False, device="meta")
        self.proj.weight = token_weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.ln_f(x))


def build(settings: GPTSettings, data: DataInfo) -> BlockModel:
    """[Embedding, TransformerBlock x n_layer, Head] with the token embedding tied to the head."""
    if data.task != "lm":
        raise ValueError(f"model gpt needs a language-modelling dataset; "
                         f"{data.name} is a {data.task} dataset")
    if not data.vocab_size:
        raise ValueError(f"model gpt needs the vocabulary size of dataset {data.name}; it has none")
    seq_len = data.input_shape[0]
    if seq_len > settings.context:
        raise ValueError(f"model.context={settings.context} of gpt is shorter than the sequences of {data.name} "
                         f"(dataset.seq_len={seq_len}); raise model.context or lower dataset.seq_len")
    embedding = Embedding(data.vocab_size, settings)
    layers = [TransformerBlock(settings) for _ in range(settings.n_layer)]
    head = Head(embedding.token.weight, settings)
    tie = TiedParameter("token_embedding", ((0, "token.weight"), (settings.n_layer + 1, "proj.weight")))
    # A local head on the residual stream may hold fresh blocks like these, their residual
    # projections scaled as in a one-block model (critic_blocks of the local-critic family).
    one_block = dataclasses.replace(settings, n_layer=1)
    heads = ShapedHeads(block=functools.partial(TransformerBlock, one_block))
    return BlockModel([embedding, *layers, head], task="lm", ties=(tie,), heads=heads)
