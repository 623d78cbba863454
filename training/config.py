"""Every setting of a training run, with its default and its help, in one place.

The command line (``python -m training``) is generated from these dataclasses: each field marked with
``option`` is a ``--flag`` whose default and help come from here and nowhere else.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from training.model import ModelConfig, option


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = option(6, "maximum epochs (early stopping may end sooner)")
    batch_size: int = option(64, "texts per training step")
    learning_rate: float = option(2e-3, "AdamW learning rate")
    weight_decay: float = option(1e-4, "AdamW weight decay")
    grad_clip: float = option(1.0, "gradient norm clip")
    patience: int = option(3, "epochs without a better validation score before stopping")
    max_train_seconds: float | None = option(None, "stop after the epoch in which classifier training passes this")
    seed: int = option(1234, "seeds the network, the batches and the spans")
    vocab_size: int = option(40_000, "tokens in the vocabulary: words, then sub-word pieces")
    min_frequency: int = option(5, "a training word seen this often is a whole word of the vocabulary")
    pieces: int = option(3_000, "sub-word pieces (byte-pair encoding on the training texts)")
    vectors: bool = option(True, "embed words through the general-English word vectors (training.vectors)")
    max_tokens: int = option(800, "longer texts keep their last MAX_TOKENS tokens")
    max_samples: int | None = option(None, "use at most this many texts per split (tests train in seconds)")
    device: str = option("auto", "auto, cpu or cuda")
    span_fraction: float = option(0.5, "share of long training texts also given as a 1-3 sentence span each epoch")
    negation_phrases: int = option(
        2000, "negated polar words of the training data, with the other label, added each epoch (training.augment)"
    )
    contrast_pairs: int = option(2000, "'A, but B' pairs of short training texts, with B's label, added each epoch")
    source_balance: float = option(
        0.0, "weigh each text by (its source's size)^-SOURCE_BALANCE, renormalised (0: every text the same)"
    )
    class_balance: float = option(
        0.0,
        "weigh each text by (its class's share of its source)^-CLASS_BALANCE within its source, which keeps its "
        "total weight (1: every class of a source weighs the same; 0: every text does)",
    )
    adversarial_eps: float = option(0.5, "adversarial embedding perturbation per token (0: off; doubles a step's cost)")
    pretrain_epochs: int = option(0, "language-model pretraining epochs on the training texts (0: off)")
    pretrain_learning_rate: float = option(2e-3, "language-model pretraining learning rate")
    pretrained_encoder: str | None = option(
        None, "checkpoints/pretrained.pt of an earlier run (same split and tokenizer) instead of pretraining again"
    )
    model: ModelConfig = field(default_factory=ModelConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__ and k != "model"}
        model = {k: v for k, v in values.get("model", {}).items() if k in ModelConfig.__dataclass_fields__}
        return cls(**known, model=ModelConfig(**model))
