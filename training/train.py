"""Training: seeded, length-bucketed mini-batches, early stopping on validation accuracy, resumable.

A run directory holds everything a run produces::

    run_dir/
      run.json            data source, split, tokenizer and model settings (what export/evaluate need)
      tokenizer.json      built from the training split only
      splits.tsv          <split>\t<sha256 of text> for every text (leak check)
      history.json        per-epoch train loss, validation loss/accuracy, learning rate, throughput
      checkpoints/last.pt model + optimizer + scheduler + RNG state after the last finished epoch (resume)
      checkpoints/best.pt model weights of the best validation epoch (what export uses)
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import nn
from tqdm import tqdm

from model_runtime.contract import SPLITS_FILE, TOKENIZER_FILE
from training.batching import bucketed_batches, collate, predict_logits, source_mixed_batches
from training.data import Dataset, Example, Split, digest_of_hashes, split_dataset, write_split_manifest
from training.model import BiLSTMClassifier, ModelConfig
from training.pretrain import load_encoder, pretrain, save_encoder
from training.recipe import SpanSampler, adversarial_loss, calibrate, validation_record
from training.tokenizer import train_tokenizer

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    epochs: int = 12
    batch_size: int = 64
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    patience: int = 3  # epochs without a better validation accuracy before stopping
    seed: int = 1234
    vocab_size: int = 20_000
    min_frequency: int = 2
    max_tokens: int = 800  # covers ~97% of IMDB reviews whole; longer ones keep their end
    max_samples: int | None = None  # cap on each split (tests use it to train in seconds)
    device: str = "auto"
    tokenizer: str = "bpe"  # "word" or "bpe" (see training.tokenizer)
    # Each epoch, this fraction of the long training texts (> SPAN_MIN_SOURCE_TOKENS tokens) also comes as
    # one random run of 1-3 of its sentences, with the review's label, so the network sees short inputs.
    span_fraction: float = 0.5
    label_smoothing: float = 0.0
    mix_sources: bool = False  # every batch holds every source (training.batching.source_mixed_batches)
    # Adversarial training (Miyato et al. 2017): also fit the loss at the embeddings moved by this much per
    # token along the loss gradient. 0 turns it off (it doubles the cost of a step).
    adversarial_eps: float = 0.5
    # Language-model pretraining of the embedding and LSTM on the training texts before the classifier
    # (training.pretrain); 0 epochs turns it off.
    pretrain_epochs: int = 3
    pretrain_learning_rate: float = 2e-3
    # An encoder (checkpoints/pretrained.pt of an earlier run on the same split and tokenizer settings) used
    # instead of pretraining again: experiments on the classifier stage share one language model.
    pretrained_encoder: str | None = None
    model: dict[str, Any] = field(default_factory=dict)  # ModelConfig fields other than vocab/classes


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


def encode(tokenizer: Any, examples: list[Example]) -> list[list[int]]:
    return [enc.ids for enc in tokenizer.encode_batch([ex.text for ex in examples])]


def _cap(examples: list[Example], n: int | None, seed: int) -> list[Example]:
    if n is None or n >= len(examples):
        return examples
    return random.Random(seed).sample(examples, n)


class _Run:
    """One training run: the model, its optimiser, the encoded data and the history so far."""

    def __init__(self, dataset: Dataset, split: Split, run_dir: Path, config: TrainConfig, resume: bool) -> None:
        self.config, self.run_dir, self.ckpt_dir = config, run_dir, run_dir / "checkpoints"
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        self.device = resolve_device(config.device)
        seed_everything(config.seed)
        train_set = _cap(split.train, config.max_samples, config.seed)
        val_set = _cap(split.validation, config.max_samples, config.seed + 1)
        sizes = (split.sizes_by_source(), len(train_set), len(val_set), self.device)
        log.info("split %s; training on %d, validating on %d, device %s", *sizes)
        tokenizer = self._tokenizer(train_set, resume)
        write_split_manifest(split, run_dir / SPLITS_FILE)
        self.model_config = ModelConfig(tokenizer.get_vocab_size(), len(dataset.labels), **config.model)
        self.model = BiLSTMClassifier(self.model_config).to(self.device)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(self.optimizer, mode="max", factor=0.5, patience=0)
        self.train_ids, self.val_ids = encode(tokenizer, train_set), encode(tokenizer, val_set)
        self.train_labels, self.train_sources = [ex.label for ex in train_set], [ex.source for ex in train_set]
        self.val_labels = torch.tensor([ex.label for ex in val_set])
        self.val_sources = [ex.source for ex in val_set]
        self.spans = SpanSampler(tokenizer, self.train_ids, self.train_labels)
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        self.summary = _run_summary(dataset, split, config, self.model_config, len(train_set), len(val_set))
        self.history: list[dict[str, Any]] = []
        self.best_score, self.best_epoch, self.start_epoch = -1.0, 0, 1

    def _tokenizer(self, train_set: list[Example], resume: bool) -> Tokenizer:
        path = self.run_dir / TOKENIZER_FILE
        if resume and path.exists():
            return Tokenizer.from_file(str(path))
        c = self.config
        tokenizer = train_tokenizer(
            (ex.text for ex in train_set), c.vocab_size, c.max_tokens, c.min_frequency, c.tokenizer
        )
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
            self.start_epoch = state["epoch"] + 1
            torch.set_rng_state(state["torch_rng"])
            previous = json.loads((self.run_dir / "run.json").read_text())
            if "pretraining" in previous:
                self.summary["pretraining"] = previous["pretraining"]
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
        (self.run_dir / "run.json").write_text(json.dumps(self.summary, indent=2))

    def epoch(self, epoch: int) -> dict[str, Any]:
        """One pass over the training texts plus this epoch's sentence spans, then validation."""
        c, model = self.config, self.model
        model.train()
        rng = random.Random(c.seed * 1000 + epoch)
        span_ids, span_labels, parents = self.spans.sample(c.span_fraction, rng)
        ids_all, labels_all = self.train_ids + span_ids, torch.tensor(self.train_labels + span_labels)
        lengths, sources = [len(x) for x in ids_all], self.train_sources + [self.train_sources[i] for i in parents]
        started, seen, total = time.perf_counter(), 0, 0.0
        bar = tqdm(
            source_mixed_batches(lengths, sources, c.batch_size, rng)
            if c.mix_sources
            else bucketed_batches(lengths, c.batch_size, rng),
            desc=f"epoch {epoch}/{c.epochs}",
            unit="batch",
            leave=False,
        )
        for rows in bar:
            ids, lens = collate([ids_all[i] for i in rows], self.device)
            loss = adversarial_loss(model, ids, lens, labels_all[rows].to(self.device), self.loss_fn, c.adversarial_eps)
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
            **validation_record(logits, self.val_labels, self.val_sources),
            "lr": self.optimizer.param_groups[0]["lr"],
            "train_reviews_per_s": seen / seconds,
            "train_seconds": seconds,
        }

    def keep(self, record: dict[str, Any]) -> bool:
        """Record the epoch, save last.pt (and best.pt if it improved); True if it did."""
        self.scheduler.step(record["selection"])
        self.history.append(record)
        improved = bool(record["selection"] > self.best_score)
        if improved:
            self.best_score, self.best_epoch = record["selection"], record["epoch"]
            torch.save(
                {
                    "model": self.model.state_dict(),
                    "model_config": self.model_config.to_dict(),
                    "epoch": record["epoch"],
                    "val_accuracy": record["val_accuracy"],
                    "selection": self.best_score,
                },
                self.ckpt_dir / "best.pt",
            )
        torch.save(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "history": self.history,
                "best_acc": self.best_score,
                "best_epoch": self.best_epoch,
                "epoch": record["epoch"],
                "torch_rng": torch.get_rng_state(),
            },
            self.ckpt_dir / "last.pt",
        )
        (self.run_dir / "history.json").write_text(json.dumps(self.history, indent=2))
        return improved

    def finish(self) -> dict[str, Any]:
        """Calibrate the best checkpoint and write the run summary."""
        calibration = calibrate(
            self.ckpt_dir / "best.pt", self.model, self.val_ids, self.val_labels, self.val_sources, self.device
        )
        h = self.history
        self.summary["training"] = {
            "device": str(self.device),
            "epochs_run": len(h),
            "best_epoch": self.best_epoch,
            "best_val_accuracy": h[self.best_epoch - 1]["val_accuracy"] if h else None,
            "best_val_selection": self.best_score,
            **calibration,
            "train_seconds": round(sum(r["train_seconds"] for r in h), 1),
        }
        (self.run_dir / "run.json").write_text(json.dumps(self.summary, indent=2))
        return self.summary


def train(
    dataset: Dataset, run_dir: Path, config: TrainConfig, resume: bool = False, split: Split | None = None
) -> dict[str, Any]:
    """Train on ``dataset``'s split (``split``, when the caller made it already), writing the run directory;
    returns the run summary (run.json)."""
    run = _Run(dataset, split or split_dataset(dataset), run_dir, config, resume)
    run.resume_or_pretrain(resume)
    for epoch in range(run.start_epoch, config.epochs + 1):
        if run.best_epoch > 0 and epoch - run.best_epoch > config.patience:
            log.info("early stop: no better validation score since epoch %d", run.best_epoch)
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
    dataset: Dataset, split: Split, config: TrainConfig, model_config: ModelConfig, n_train: int, n_val: int
) -> dict[str, Any]:
    return {
        "labels": list(dataset.labels),
        "data": {
            "source": dataset.source,
            "spec": dataset.spec,
            "dropped_duplicates": dataset.dropped_duplicates,
            "split_seed": split.seed,
            "split_seeds": split.seeds,
            "split_sizes": split.sizes(),
            "split_sizes_by_source": split.sizes_by_source(),
            "used_for_training": {"train": n_train, "validation": n_val},
            "split_sha256": {name: digest_of_hashes(h) for name, h in split.hashes.items()},
        },
        "train_config": asdict(config),
        "model_config": model_config.to_dict(),
    }
