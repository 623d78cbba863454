"""Training: seeded, length-bucketed mini-batches, early stopping on validation accuracy, resumable.

``train`` returns what the next step needs in memory (``TrainResult``: the best network with its fitted
temperature, the tokenizer, the run's record and history). The run directory is written for people and
for ``--resume``, never read back by the next step::

    run_dir/
      run.json            data, split, settings, vocabulary, pretraining, temperature (what happened)
      tokenizer.json      built from the training split only
      splits.tsv          <split>\t<sha256 of text>\t<source> for every text (leak check)
      history.json        per-epoch train loss, validation loss/accuracy, learning rate, throughput
      checkpoints/last.pt model + optimizer + scheduler + RNG state after the last finished epoch (resume)
      checkpoints/best.pt model weights of the best validation epoch and its temperature
"""

from __future__ import annotations

import copy
import json
import logging
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import nn
from tqdm import tqdm

from model_runtime.contract import SPLITS_FILE, TOKENIZER_FILE
from training.augment import Counterfactuals, SpanSampler
from training.batching import bucketed_batches, collate, predict_logits
from training.calibration import calibrate
from training.config import TrainConfig
from training.data import Dataset, Example, Split, digest_of_hashes, write_split_manifest
from training.model import BiLSTMClassifier
from training.objective import (
    FULL,
    OR_NEUTRAL,
    POLARITY,
    adversarial_loss,
    label_masks,
    source_kinds,
    source_weights,
    validation_record,
)
from training.pretrain import load_encoder, pretrain, save_encoder
from training.tokenizer import train_tokenizer
from training.vectors import load_glove
from training.wordlist import load_word_list

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    model: BiLSTMClassifier  # the best epoch's weights, temperature set, in eval mode, on the CPU
    tokenizer: Tokenizer
    summary: dict[str, Any]  # run.json
    history: list[dict[str, Any]]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but torch sees no CUDA device")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def encode(tokenizer: Tokenizer, examples: list[Example]) -> list[list[int]]:
    return [enc.ids for enc in tokenizer.encode_batch([ex.text for ex in examples])]


def cap(examples: list[Example], n: int | None, seed: int) -> list[Example]:
    """At most ``n`` of the examples, a seeded sample (tests train in seconds on a few hundred)."""
    if n is None or n >= len(examples):
        return examples
    return random.Random(seed).sample(examples, n)


def build_tokenizer(texts: list[str], config: TrainConfig) -> Tokenizer:
    vectors = load_glove() if config.vectors else None
    required = sorted(load_word_list().values) if config.model.word_prior else []
    return train_tokenizer(
        texts, config.vocab_size, config.max_tokens, config.min_frequency, config.pieces, vectors, required
    )


def new_model(tokenizer: Tokenizer, labels: tuple[str, ...], config: TrainConfig) -> BiLSTMClassifier:
    """A fresh network for this tokenizer: its embedding holds the word vectors of the vocabulary."""
    vectors = load_glove() if config.vectors else None
    shape = replace(
        config.model,
        vocab_size=tokenizer.get_vocab_size(),
        num_classes=len(labels),
        vector_dim=vectors.dim if vectors else 0,
    )
    model = BiLSTMClassifier(shape)
    tokens = [t for t, _ in sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])]
    if vectors is not None:
        table, found = vectors.lookup(tokens)
        model.embedding.vectors.copy_(torch.from_numpy(table))
        log.info("word vectors for %d of %d tokens", found, len(tokens))
    if shape.word_prior:
        word_list = load_word_list()
        model.embedding.prior.copy_(torch.tensor([word_list.prior(t) for t in tokens]))
        log.info("word-list values for %d tokens", int((model.embedding.prior != 0).sum()))
    return model


class _Run:
    """One training run: the model, its optimiser, the encoded data and the history so far."""

    def __init__(self, dataset: Dataset, split: Split, run_dir: Path, config: TrainConfig, resume: bool) -> None:
        self.config, self.run_dir, self.ckpt_dir = config, run_dir, run_dir / "checkpoints"
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        self.device = resolve_device(config.device)
        seed_everything(config.seed)
        train_set = cap(split.train, config.max_samples, config.seed)
        val_set = cap(split.validation, config.max_samples, config.seed + 1)
        log.info(
            "split %s; training on %d, validating on %d, device %s",
            split.sizes_by_source(),
            len(train_set),
            len(val_set),
            self.device,
        )
        self.tokenizer = self._tokenizer(train_set, resume)
        write_split_manifest(split, run_dir / SPLITS_FILE)
        self.model = new_model(self.tokenizer, dataset.labels, config).to(self.device)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(self.optimizer, mode="max", factor=0.5, patience=0)
        self.train_ids, self.val_ids = encode(self.tokenizer, train_set), encode(self.tokenizer, val_set)
        self.labels, self.supervision = dataset.labels, dataset.supervision
        self.train_labels, self.train_sources = [ex.label for ex in train_set], [ex.source for ex in train_set]
        self.val_labels = torch.tensor([ex.label for ex in val_set])
        self.val_sources = [ex.source for ex in val_set]
        self.val_kinds = source_kinds(self.val_sources, self.supervision)
        self.spans = SpanSampler(self.tokenizer, self.train_ids, self.train_labels)
        polar = (dataset.labels.index("negative"), dataset.labels.index("positive"))
        self.neutral = dataset.labels.index("neutral") if "neutral" in dataset.labels else None
        self.counterfactuals = Counterfactuals(
            self.tokenizer, self.train_ids, self.train_labels, self.train_sources, polar
        )
        self.summary = _run_summary(dataset, split, config, self.model, len(train_set), len(val_set))
        self.history: list[dict[str, Any]] = []
        self.best_state: dict[str, torch.Tensor] = {}
        self.best_score, self.best_epoch, self.start_epoch = -1.0, 0, 1

    def _tokenizer(self, train_set: list[Example], resume: bool) -> Tokenizer:
        path = self.run_dir / TOKENIZER_FILE
        if resume and path.exists():
            return Tokenizer.from_file(str(path))
        tokenizer = build_tokenizer([ex.text for ex in train_set], self.config)
        tokenizer.save(str(path))
        return tokenizer

    def resume_or_pretrain(self, resume: bool) -> None:
        """Continue from last.pt, or (a fresh run) pretrain the encoder as a language model when asked."""
        c, last = self.config, self.ckpt_dir / "last.pt"
        if resume and last.exists():
            state = torch.load(last, map_location=self.device, weights_only=False)
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.history, self.best_score, self.best_epoch = state["history"], state["best_acc"], state["best_epoch"]
            self.best_state = state["best_model"]
            self.start_epoch = state["epoch"] + 1
            torch.set_rng_state(state["torch_rng"])
            self.summary["pretraining"] = state.get("pretraining", [])
            log.info(
                "resumed after epoch %d (best score %.4f at epoch %d)", state["epoch"], self.best_score, self.best_epoch
            )
        elif c.pretrained_encoder:
            self.summary["pretraining"] = load_encoder(self.model, c.pretrained_encoder, self.device)
        elif c.pretrain_epochs:
            model, ids, device = self.model, self.train_ids, self.device
            history = pretrain(model, ids, c.pretrain_epochs, c.batch_size, c.pretrain_learning_rate, c.seed, device)
            self.summary["pretraining"] = history
            save_encoder(model, history, self.ckpt_dir / "pretrained.pt")
        self._write_summary()

    def epoch(self, epoch: int) -> dict[str, Any]:
        """One pass over the training texts plus this epoch's sentence spans, then validation."""
        c, model = self.config, self.model
        model.train()
        rng = random.Random(c.seed * 1000 + epoch)
        span_ids, span_labels, parents = self.spans.sample(c.span_fraction, rng)
        made_ids, made_labels, negations = self.counterfactuals.sample(c.negation_phrases, c.contrast_pairs, rng)
        ids_all = self.train_ids + span_ids + made_ids
        labels_all = torch.tensor(self.train_labels + span_labels + made_labels)
        sources = self.train_sources + [self.train_sources[i] for i in parents] + ["counterfactual"] * len(made_ids)
        # What each label says: a source's own texts as the source says; a span of a polar text only which
        # way it leans (one sentence of a review may state a plain fact); a negated word the other polarity
        # or neutral; the clause after "but" which way the pair leans.
        kinds = (
            source_kinds(self.train_sources, self.supervision)
            + [FULL if label == self.neutral else POLARITY for label in span_labels]
            + [OR_NEUTRAL] * negations
            + [POLARITY] * (len(made_ids) - negations)
        )
        allowed_all, compared_all = label_masks(self.labels, labels_all, kinds)
        weights_all = source_weights(sources, c.source_balance, labels_all.tolist(), c.class_balance)
        started, seen, total = time.perf_counter(), 0, 0.0
        batches = bucketed_batches([len(x) for x in ids_all], c.batch_size, rng)
        bar = tqdm(batches, desc=f"epoch {epoch}/{c.epochs}", unit="batch", leave=False)
        for rows in bar:
            ids, lens = collate([ids_all[i] for i in rows], self.device)
            masks = (allowed_all[rows].to(self.device), compared_all[rows].to(self.device))
            loss = adversarial_loss(model, ids, lens, masks, weights_all[rows].to(self.device), c.adversarial_eps)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward untyped
            nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip)
            self.optimizer.step()
            seen, total = seen + len(rows), total + loss.item() * len(rows)
            bar.set_postfix(loss=f"{total / seen:.4f}", texts_s=f"{seen / (time.perf_counter() - started):.0f}")
        seconds = time.perf_counter() - started
        logits = predict_logits(model, self.val_ids, self.device)
        return {
            "epoch": epoch,
            "train_loss": total / max(seen, 1),
            "train_texts": seen,
            "span_texts": len(span_ids),
            "counterfactual_texts": len(made_ids),
            **validation_record(logits, self.val_labels, self.val_sources, self.labels, self.val_kinds),
            "lr": self.optimizer.param_groups[0]["lr"],
            "train_reviews_per_s": seen / seconds,
            "train_seconds": seconds,
        }

    def keep(self, record: dict[str, Any]) -> bool:
        """Record the epoch, keep the weights if it improved (and save best.pt), save last.pt."""
        self.scheduler.step(record["selection"])
        self.history.append(record)
        improved = bool(record["selection"] > self.best_score)
        if improved:
            self.best_score, self.best_epoch = record["selection"], record["epoch"]
            self.best_state = copy.deepcopy(self.model.state_dict())
            torch.save({"model": self.best_state, "epoch": record["epoch"]}, self.ckpt_dir / "best.pt")
        torch.save(
            {
                "model": self.model.state_dict(),
                "best_model": self.best_state,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "history": self.history,
                "pretraining": self.summary.get("pretraining", []),
                "best_acc": self.best_score,
                "best_epoch": self.best_epoch,
                "epoch": record["epoch"],
                "torch_rng": torch.get_rng_state(),
            },
            self.ckpt_dir / "last.pt",
        )
        (self.run_dir / "history.json").write_text(json.dumps(self.history, indent=2))
        return improved

    def finish(self) -> TrainResult:
        """The best epoch's network, calibrated on the validation split; the run's record written."""
        self.model.load_state_dict(self.best_state)
        masks = label_masks(self.labels, self.val_labels, self.val_kinds)
        calibration = calibrate(self.model, self.val_ids, masks, self.val_sources, self.device)
        h = self.history
        self.summary["training"] = {
            "device": str(self.device),
            "epochs_run": len(h),
            "best_epoch": self.best_epoch,
            "best_val_accuracy": h[self.best_epoch - 1]["val_accuracy"] if h else None,
            "best_val_accuracy_by_source": h[self.best_epoch - 1]["val_accuracy_by_source"] if h else None,
            "best_val_selection": self.best_score,
            **calibration,
            "train_seconds": round(sum(r["train_seconds"] for r in h), 1),
            "pretrain_seconds": round(sum(r["seconds"] for r in self.summary.get("pretraining", [])), 1),
        }
        torch.save({"model": self.best_state, **calibration}, self.ckpt_dir / "best.pt")
        self._write_summary()
        return TrainResult(self.model.cpu().eval(), self.tokenizer, self.summary, self.history)

    def _write_summary(self) -> None:
        (self.run_dir / "run.json").write_text(json.dumps(self.summary, indent=2))


def train(dataset: Dataset, split: Split, run_dir: Path, config: TrainConfig, resume: bool = False) -> TrainResult:
    """Train on ``split`` (made from ``dataset``), writing the run directory; returns the best network."""
    run = _Run(dataset, split, run_dir, config, resume)
    run.resume_or_pretrain(resume)
    for epoch in range(run.start_epoch, config.epochs + 1):
        if run.best_epoch > 0 and epoch - run.best_epoch > config.patience:
            log.info("early stop: no better validation score since epoch %d", run.best_epoch)
            break
        if config.max_train_seconds and sum(r["train_seconds"] for r in run.history) > config.max_train_seconds:
            log.info("stop: more than %.0f s of training", config.max_train_seconds)
            break
        record = run.epoch(epoch)
        improved = run.keep(record)
        by_source = "  ".join(f"{k} {v:.4f}" for k, v in record["val_accuracy_by_source"].items())
        tqdm.write(
            f"epoch {epoch}: train loss {record['train_loss']:.4f}  val loss {record['val_loss']:.4f}  "
            f"val acc {by_source}{'  (best)' if improved else ''}  {record['train_reviews_per_s']:.0f} texts/s"
        )
    return run.finish()


def _run_summary(
    dataset: Dataset, split: Split, config: TrainConfig, model: BiLSTMClassifier, n_train: int, n_val: int
) -> dict[str, Any]:
    return {
        "labels": list(dataset.labels),
        "data": {
            "source": dataset.source,
            "spec": dataset.spec,
            "dropped_duplicates": dataset.dropped_duplicates,
            "kept_and_dropped_by_source": dataset.report,
            "supervision": dataset.supervision,
            "split_seed": split.seed,
            "split_seeds": split.seeds,
            "split_sizes": split.sizes(),
            "split_sizes_by_source": split.sizes_by_source(),
            "used_for_training": {"train": n_train, "validation": n_val},
            "split_sha256": {name: digest_of_hashes(h) for name, h in split.hashes.items()},
        },
        "train_config": config.to_dict(),
        "model_config": model.config.to_dict(),
    }
