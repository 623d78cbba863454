"""The network: embedding -> bidirectional LSTM over packed sequences -> max+mean pooling -> linear head.

The embedding (``TokenEmbedding``) knows general English: a token that has a pretrained word vector
(``training.vectors``) is embedded as a learned projection of that frozen vector plus a learned residual
of its own (zero at the start); a token without one has the residual only. A word no training text
contains keeps a zero residual, so it is embedded where the projection puts its vector, among the words
with similar vectors that training did see. Exported, the embedding is one (V, E) table.

Packing means the LSTM only ever sees a text's true tokens: the backward direction starts at the last
real token, not at the padding, and the pooling only covers real positions. So padding (and therefore
which other texts share a batch) never changes a prediction. ``export.py`` builds an ONNX graph with
the same property and proves it against this module.

Two computations of the same function share one ``nn.LSTM(bidirectional=True)``:

- ``packed=True``: ``pack_padded_sequence`` through the bidirectional LSTM, PyTorch's own definition of
  true-length processing. It is the reference the export and the tests compare against.
- ``packed=False`` (the default, used for training): each direction on its own over a right-padded
  batch; the backward direction runs over each sequence reversed within its true length. Positions
  past a sequence's length hold garbage that nothing reads (the pooling masks them; in a stacked layer
  the forward direction never looks ahead and the backward one only sees reversed real positions).
  On CPU it is 10-50x faster than packing (PyTorch's packed CPU kernel re-allocates every time step),
  and a test proves it equal to the packed computation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from model_runtime.contract import PAD_ID


def option(default: Any, help: str, cli: bool = True) -> Any:
    """A dataclass field that the command line offers as ``--name`` with this help (``training.__main__``)."""
    return field(default=default, metadata={"help": help, "cli": cli})


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = option(0, "set from the tokenizer", cli=False)
    num_classes: int = option(2, "set from the labels", cli=False)
    embedding_dim: int = option(128, "embedding width E")
    hidden_size: int = option(128, "LSTM units per direction H")
    num_layers: int = option(1, "stacked bidirectional LSTM layers")
    dropout: float = option(0.5, "on embeddings and pooled features (and between LSTM layers)")
    vector_dim: int = option(0, "dimensions of the frozen word vectors (set from them; 0: none)", cli=False)
    word_prior: bool = option(
        False,
        "read each token's opinion-word-list value (training.wordlist, frozen) beside its vector, through a "
        "learned direction of the embedding space",
    )
    ends: bool = option(
        False,
        "also pool each direction's final state (order-aware: the forward state at the "
        "last token, the backward state at the first)",
    )

    def to_dict(self) -> dict[str, int | float]:
        return asdict(self)


class TokenEmbedding(nn.Module):
    """Token ids (B, T) -> (B, T, E): ``residual[id] + projection(vectors[id])`` with ``vectors`` frozen,
    plus ``prior[id] * prior_direction`` with ``prior`` (V,) frozen when the word prior is on: a word of the
    opinion word list carries its sign even where no training text used it."""

    vectors: torch.Tensor
    prior: torch.Tensor

    def __init__(self, vocab_size: int, dim: int, vector_dim: int, word_prior: bool = False) -> None:
        super().__init__()
        self.residual = nn.Embedding(vocab_size, dim, padding_idx=PAD_ID)
        self.vector_dim, self.word_prior = vector_dim, word_prior
        if vector_dim:
            self.register_buffer("vectors", torch.zeros(vocab_size, vector_dim))
            self.projection = nn.Linear(vector_dim, dim, bias=False)
            nn.init.zeros_(self.residual.weight)
            # about the norm of a unit-normal E-dimensional embedding for a typical GloVe vector (norm ~5)
            nn.init.normal_(self.projection.weight, std=0.15)
        if word_prior:
            self.register_buffer("prior", torch.zeros(vocab_size))  # values in [-1, 1]; 0 off the list
            self.prior_direction = nn.Parameter(torch.randn(dim))  # (E,): a value of 1 moves a word this far

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out = self.learned(ids)
        if self.word_prior:
            out = out + self.prior[ids][..., None] * self.prior_direction  # (B, T, E)
        return out

    def learned(self, ids: torch.Tensor) -> torch.Tensor:
        """The embedding without the word prior: residual plus projected vector."""
        out: torch.Tensor = self.residual(ids)
        if self.vector_dim:
            out = out + self.projection(nn.functional.embedding(ids, self.vectors))
        return out

    def table(self) -> torch.Tensor:
        """The (V, E) table of ``learned`` (what the exported graph gathers from; the prior is its own column)."""
        return self.learned(torch.arange(self.residual.num_embeddings, device=self.residual.weight.device))


class BiLSTMClassifier(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = TokenEmbedding(config.vocab_size, config.embedding_dim, config.vector_dim, config.word_prior)
        self.lstm = nn.LSTM(
            config.embedding_dim,
            config.hidden_size,
            num_layers=config.num_layers,
            bidirectional=True,
            batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(config.dropout)
        features = (6 if config.ends else 4) * config.hidden_size  # [max ; mean (; ends)] of 2H each
        self.head = nn.Linear(features, config.num_classes)
        # Calibration, fitted after training (training.recipe): logits / exp(scale + slope ln length).
        self.temperature_log_scale = 0.0
        self.temperature_log_slope = 0.0

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor, packed: bool = False) -> torch.Tensor:
        """Logits (B, C) for token ids (B, T) right-padded with PAD_ID and true lengths (B,).

        A length of 0 (a text with no tokens) is scored as a single padding token, as the ONNX graph does.
        """
        return self.classify_embedded(self.embedding(input_ids), lengths, packed)

    def encode(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The BiLSTM's states (B, T, 2H) = [forward ; backward] (language-model pretraining reads them)."""
        lengths = lengths.clamp(min=1)
        mask = torch.arange(input_ids.shape[1], device=input_ids.device)[None, :] < lengths[:, None]  # (B, T)
        return self._per_direction_lstm(self.dropout(self.embedding(input_ids)), lengths, mask)

    def classify_embedded(self, embedded: torch.Tensor, lengths: torch.Tensor, packed: bool = False) -> torch.Tensor:
        """Logits (B, C) from already embedded tokens (B, T, E): adversarial training perturbs them."""
        steps = embedded.shape[1]
        lengths = lengths.clamp(min=1)
        mask = torch.arange(steps, device=embedded.device)[None, :] < lengths[:, None]  # (B, T)
        x = self.dropout(embedded)  # (B, T, E)
        out = self._packed_lstm(x, lengths) if packed else self._per_direction_lstm(x, lengths, mask)
        out = out * mask[:, :, None]  # (B, T, 2H), zero past each length
        pooled_max = out.masked_fill(~mask[:, :, None], float("-inf")).amax(dim=1)  # (B, 2H)
        pooled_mean = out.sum(dim=1) / lengths[:, None].to(out.dtype)  # (B, 2H)
        pooled = [pooled_max, pooled_mean]
        if self.config.ends:
            hidden = self.config.hidden_size
            last = out.gather(1, (lengths - 1)[:, None, None].expand(-1, 1, 2 * hidden))[:, 0]  # (B, 2H)
            pooled.append(torch.cat([last[:, :hidden], out[:, 0, hidden:]], dim=1))  # (B, 2H)
        features = torch.cat(pooled, dim=1)  # (B, 4H or 6H)
        logits: torch.Tensor = self.head(self.dropout(features))  # (B, C)
        if self.temperature_log_scale or self.temperature_log_slope:
            log_length = lengths.to(logits.dtype).log()[:, None]  # (B, 1); lengths >= 1 here
            logits = logits / (self.temperature_log_scale + self.temperature_log_slope * log_length).exp()
        return logits

    def _packed_lstm(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        return pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]  # (B, T, 2H)

    def _per_direction_lstm(self, x: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        steps = x.shape[1]
        t = torch.arange(steps, device=x.device)[None, :]
        # For each row, position t reads position len-1-t (t < len) or itself (padding): an involution.
        reverse_index = torch.where(mask, lengths[:, None] - 1 - t, t)  # (B, T)

        def flip(seq: torch.Tensor) -> torch.Tensor:
            return seq.gather(1, reverse_index[:, :, None].expand(-1, -1, seq.shape[2]))

        for layer in range(self.config.num_layers):
            if layer > 0 and self.training and self.config.dropout > 0:
                x = nn.functional.dropout(x, self.config.dropout)  # what nn.LSTM does between layers
            forward_out = self._one_direction(x, layer, "")  # (B, T, H)
            backward_out = flip(self._one_direction(flip(x), layer, "_reverse"))  # (B, T, H)
            x = torch.cat([forward_out, backward_out], dim=2)  # (B, T, 2H)
        return x

    def _one_direction(self, x: torch.Tensor, layer: int, suffix: str) -> torch.Tensor:
        """One direction of one layer of self.lstm, run forward in time over x (B, T, in)."""
        weights = [
            getattr(self.lstm, f"{name}_l{layer}{suffix}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        ]
        zeros = x.new_zeros(1, x.shape[0], self.config.hidden_size)
        # The ATen op behind nn.LSTM: (input, (h0, c0), weights, has_biases, num_layers, dropout, train,
        # bidirectional, batch_first).
        out, _, _ = torch.lstm(x, (zeros, zeros), weights, True, 1, 0.0, self.training, False, True)
        return out
