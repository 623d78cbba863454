"""Adapt a trained model to a user's own labelled texts in minutes, and say whether it helped.

    python -m training adapt --data my.csv --text-column review --label-column stars --star-threshold 4 \\
        --model-dir models/my-adapted [--from models/sentiment-bilstm]

The base network is rebuilt exactly from its ``model.onnx`` (``training.export.model_from_onnx``) and its
tokenizer is kept as it is (a word of the user's texts that the vocabulary lacks is spelled with pieces,
as in serving). The user's labels are mapped onto the base's (names and common spellings, numbers with a
star threshold, or an explicit map; anything else is refused with its value and line), the texts split
by content (``training.data.split_dataset``), and the network fine-tuned with what keeps it from
forgetting what it knew (ULMFiT, Howard & Ruder 2018): discriminative learning rates (the embedding
learns slowest, the head fastest), gradual unfreezing (the head alone first, then the LSTM, then the
embedding) and rehearsal on a sample of the base's own training texts each epoch. The epoch to keep is
chosen on the user's validation texts, the base's weights among the candidates, so the adapted model is
never worse than the base there. The temperature is fitted again on the user's validation texts; the
export is proven as any other (parity, batch invariance); the card puts the base and the adapted model
side by side on the user's held-out texts, and the base's own test sources before and after.
"""

from __future__ import annotations

import copy
import logging
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer
from torch import nn
from tqdm import tqdm

from model_runtime import ModelCard, Predictor, read_card, write_card
from model_runtime.contract import MODEL_FILE, SPLITS_FILE, TOKENIZER_FILE, file_sha256
from training.adapt_labels import base_figures, the_users_labels
from training.batching import bucketed_batches, collate, predict_logits
from training.calibration import calibrate
from training.card import adapted_card, card_metrics
from training.data import DataError, Dataset, Example, Split, split_dataset, write_split_manifest
from training.evaluate import evaluate_examples
from training.export import export_model
from training.files import read_labelled_rows
from training.model import BiLSTMClassifier, option
from training.objective import FULL, POLARITY, label_masks, label_set_nll, source_kinds, validation_record
from training.readme import render_readme
from training.sources import SOURCES_BY_NAME

log = logging.getLogger(__name__)
ALIASES = {
    "positive": {"positive", "pos", "p", "1", "1.0", "true", "yes", "y", "good", "+", "👍"},
    "negative": {"negative", "neg", "n", "0", "0.0", "false", "no", "bad", "-", "👎"},
}


@dataclass(frozen=True)
class AdaptConfig:
    epochs: int = option(6, "most fine-tuning epochs (the best on the user's validation texts is kept)")
    batch_size: int = option(32, "texts per step")
    learning_rate: float = option(2e-3, "the head's learning rate")
    lstm_lr_factor: float = option(0.3, "the LSTM's learning rate relative to the head's (discriminative)")
    embedding_lr_factor: float = option(0.1, "the embedding's relative learning rate (0 keeps it frozen)")
    unfreeze: bool = option(True, "gradual unfreezing: the head alone, then + LSTM, then + embedding")
    rehearsal: int = option(1000, "texts of the base's own training data mixed into every epoch (0: none)")
    star_threshold: float | None = option(None, "numeric labels (stars): at least this is positive, below negative")
    label_map: str | None = option(None, "explicit label mapping, e.g. 'pos=positive,neg=negative,3=drop'")
    seed: int = option(1234, "seeds the split of batches and the rehearsal sample")
    keep_neutral: bool = option(
        False,
        "a file of two labels on a base that also answers neutral: keep the neutral answer (the file teaches "
        "polarity only) instead of answering the file's two labels",
    )


def map_labels(
    path: Path, rows: list[tuple[int, str, str]], labels: tuple[str, ...], config: AdaptConfig
) -> list[Example]:
    """The rows as examples of the base's labels; a label that cannot be mapped is refused with its line."""
    explicit = dict(pair.split("=", 1) for pair in config.label_map.split(",")) if config.label_map else {}
    names = {name.lower(): name for name in labels}
    examples, seen = [], set()
    for line, text, raw in rows:
        target: str | None
        if explicit:
            target = explicit.get(raw, explicit.get(raw.lower()))
        elif config.star_threshold is not None:
            try:
                target = labels[-1] if float(raw) >= config.star_threshold else labels[0]
            except ValueError:
                target = None
        else:
            key = raw.lower()
            target = names.get(key) or next(
                (n for n, spellings in ALIASES.items() if key in spellings and n in labels), None
            )
        if target == "drop":
            continue
        if target not in labels:
            hint = "give --label-map, or --star-threshold for numeric ratings"
            raise DataError(f"{path}: line {line}: label {raw!r} cannot be mapped onto {list(labels)}; {hint}")
        examples.append(Example(text, labels.index(target)))
        seen.add(target)
    if len(seen) < 2:
        raise DataError(f"{path}: every text maps to the one label {sorted(seen)}; adapting needs both")
    return examples


@dataclass
class Rehearsal:
    """A fresh sample of the base's own training texts each epoch (none when the base's data is unknown)."""

    examples: list[Example]
    count: int

    def sample(self, rng: random.Random) -> list[Example]:
        return rng.sample(self.examples, min(self.count, len(self.examples)))


def supervision(labels: tuple[str, ...], split: Split) -> dict[str, str]:
    """What each text's label says while adapting: the base's own sources as they say (rehearsal); the
    user's file (source "") the full label, except that a file without a neutral text on a base with a
    neutral label says only which way a text leans, so that adapting on it does not unlearn neutral."""
    has_neutral = "neutral" in labels and any(labels[ex.label] == "neutral" for ex in split.train)
    user = FULL if has_neutral or "neutral" not in labels else POLARITY
    return {**{name: source.supervision for name, source in SOURCES_BY_NAME.items()}, "": user}


def fine_tune(
    model: BiLSTMClassifier,
    tokenizer: Tokenizer,
    split: Split,
    rehearsal: Rehearsal,
    config: AdaptConfig,
    labels: tuple[str, ...],
) -> tuple[BiLSTMClassifier, list[dict[str, Any]]]:
    """The best of the base and each epoch, by accuracy on the user's validation texts; the history."""
    rng = random.Random(config.seed)
    said = supervision(labels, split)
    # (part, its learning rate relative to the head's, the first epoch it learns in when unfreezing gradually)
    stages: list[tuple[nn.Module, float, int]] = [
        (model.head, 1.0, 1),
        (model.lstm, config.lstm_lr_factor, 2),
        (model.embedding, config.embedding_lr_factor, 3),
    ]
    optimizer = torch.optim.AdamW([{"params": list(part.parameters())} for part, _, _ in stages], weight_decay=1e-4)
    val_ids = [e.ids for e in tokenizer.encode_batch([ex.text for ex in split.validation])]
    val_labels = torch.tensor([ex.label for ex in split.validation])
    cpu = torch.device("cpu")
    val_sources = [""] * len(val_ids)
    val_kinds = source_kinds(val_sources, said)
    best = validation_record(predict_logits(model, val_ids, cpu), val_labels, val_sources, labels, val_kinds)
    best_state, history = copy.deepcopy(model.state_dict()), [{"epoch": 0, **best, "kept": "base"}]
    for epoch in range(1, config.epochs + 1):
        for group, (_, factor, first) in zip(optimizer.param_groups, stages, strict=True):
            group["lr"] = config.learning_rate * factor if not config.unfreeze or epoch >= first else 0.0
        examples = split.train + rehearsal.sample(rng)
        ids = [e.ids for e in tokenizer.encode_batch([ex.text for ex in examples])]
        allowed, compared = label_masks(
            labels, torch.tensor([ex.label for ex in examples]), source_kinds([ex.source for ex in examples], said)
        )
        model.train()
        total, started = 0.0, time.perf_counter()
        for rows in tqdm(
            bucketed_batches([len(x) for x in ids], config.batch_size, rng),
            desc=f"adapt epoch {epoch}/{config.epochs}",
            unit="batch",
            leave=False,
        ):
            batch, lengths = collate([ids[i] for i in rows], cpu)
            loss = label_set_nll(model(batch, lengths), allowed[rows], compared[rows]).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward untyped
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            total += loss.item() * len(rows)
        record = validation_record(predict_logits(model, val_ids, cpu), val_labels, val_sources, labels, val_kinds)
        history.append(
            {"epoch": epoch, "train_loss": total / len(ids), **record, "seconds": time.perf_counter() - started}
        )
        tqdm.write(
            f"adapt epoch {epoch}: train loss {total / len(ids):.4f}  validation accuracy {record['selection']:.4f}"
        )
        if record["selection"] > best["selection"]:
            best, best_state = record, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    history.append({"kept_epoch": max(h["epoch"] for h in history if h["selection"] == best["selection"])})
    return model.eval(), history


def calibrated(model: BiLSTMClassifier, tokenizer: Tokenizer, split: Split, labels: tuple[str, ...]) -> dict[str, Any]:
    """The adapted network's temperature, fitted on the user's validation texts."""
    val_ids = [e.ids for e in tokenizer.encode_batch([ex.text for ex in split.validation])]
    val_sources = [""] * len(val_ids)
    kinds = source_kinds(val_sources, supervision(labels, split))
    masks = label_masks(labels, torch.tensor([ex.label for ex in split.validation]), kinds)
    return calibrate(model, val_ids, masks, val_sources, torch.device("cpu"))


def adapt(
    data: Path,
    text_column: str,
    label_column: str,
    base_dir: Path,
    out: Path,
    config: AdaptConfig,
    name: str | None = None,
    version: str | None = None,
) -> ModelCard:
    """Fine-tune the model of ``base_dir`` on the labelled file ``data`` and write the adapted model to ``out``."""
    started = time.perf_counter()
    base_card = read_card(base_dir)
    base_labels = tuple(base_card.labels)
    rows = read_labelled_rows(data, text_column, label_column)
    examples = map_labels(data, rows, base_labels, config)
    model, labels, examples, original = the_users_labels(base_card, base_dir, examples, config.keep_neutral)
    dataset = Dataset(examples=examples, labels=labels, source=str(data), spec={"kind": "file"})
    split = split_dataset(dataset)
    if not split.validation or not split.test:
        raise DataError(f"{data}: {len(examples)} texts are too few to hold out validation and test texts")
    tokenizer = Tokenizer.from_file(str(base_dir / TOKENIZER_FILE))
    rehearsal = Rehearsal(original.train if original else [], config.rehearsal if original else 0)
    model, history = fine_tune(model, tokenizer, split, rehearsal, config, labels)
    calibration = calibrated(model, tokenizer, split, labels)
    name = name or f"{base_card.name}-adapted"
    version = version or f"{base_card.version}+{file_sha256(data)[:8]}"
    report = export_model(
        model, tokenizer, out, split.validation, {"labels": str(list(labels)), "name": name, "version": version}
    )
    write_split_manifest(split, out / SPLITS_FILE)
    base_ref = {"name": base_card.name, "version": base_card.version, "sha256": file_sha256(base_dir / MODEL_FILE)}
    card = adapted_card(
        base_card, base_ref, out, name, version, report, calibration, history, data, split, config, labels
    )
    adapted = Predictor.load(out, provider="cpu", card=card)
    evaluation = evaluate_examples(adapted, labels, split.test, calibration)
    card.metrics = {"test": card_metrics(evaluation), "measured_on": "the user's held-out test texts"}
    in_base = [replace(ex, label=base_labels.index(labels[ex.label])) for ex in split.test]
    card.adaptation = {
        "user_test": {
            "base": evaluate_examples(Predictor.load(base_dir, provider="cpu"), base_labels, in_base)["overall"],
            "adapted": evaluation["overall"],
        },
        "base_sources": {
            "before": base_figures(base_card, labels),
            "after": evaluate_examples(adapted, labels, original.test).get("by_source", {}) if original else {},
        },
        "data": {"file": str(data), "sha256": file_sha256(data), "texts": len(examples), "split": split.sizes()},
        "seconds": round(time.perf_counter() - started, 1),
        "model_dir": str(out.resolve()),
    }
    write_card(out, card, render_readme(card))
    return card
