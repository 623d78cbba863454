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
from torch import nn
from tqdm import tqdm

from training.data import Dataset, Example, Split, digest_of_hashes, split_dataset, write_split_manifest
from training.model import BiLSTMClassifier, ModelConfig
from training.tokenizer import PAD_ID, train_tokenizer

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


def bucketed_batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffle, then sort by length inside pools of 50 batches so a batch holds texts of similar length."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    pool = batch_size * 50
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start:start + pool], key=lengths.__getitem__)
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(ids: list[list[int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad with PAD_ID: (B, T) int64 ids and (B,) int64 true lengths."""
    lengths = torch.tensor([len(x) for x in ids], dtype=torch.int64)
    steps = max(1, int(lengths.max()))
    batch = torch.full((len(ids), steps), PAD_ID, dtype=torch.int64)
    for row, x in enumerate(ids):
        batch[row, : len(x)] = torch.tensor(x, dtype=torch.int64)
    return batch.to(device), lengths.to(device)


@torch.no_grad()
def predict_logits(model: nn.Module, ids: list[list[int]], device: torch.device, batch_size: int = 256) -> torch.Tensor:
    model.eval()
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out = torch.empty(len(ids), model.config.num_classes)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        out[rows] = model(*collate([ids[i] for i in rows], device)).float().cpu()
    return out


def _cap(examples: list[Example], n: int | None, seed: int) -> list[Example]:
    if n is None or n >= len(examples):
        return examples
    return random.Random(seed).sample(examples, n)


def train(dataset: Dataset, run_dir: Path, config: TrainConfig, resume: bool = False) -> dict[str, Any]:
    """Train on ``dataset``'s split, writing the run directory; returns the run summary (run.json)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_dir = run_dir / "checkpoints"
    ckpt_dir.mkdir(exist_ok=True)
    device = resolve_device(config.device)
    seed_everything(config.seed)

    split = split_dataset(dataset)
    train_set = _cap(split.train, config.max_samples, config.seed)
    val_set = _cap(split.validation, config.max_samples, config.seed + 1)
    log.info("split sizes %s; training on %d, validating on %d, device %s",
             split.sizes(), len(train_set), len(val_set), device)

    tokenizer_path = run_dir / "tokenizer.json"
    if resume and tokenizer_path.exists():
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(tokenizer_path))
    else:
        tokenizer = train_tokenizer((ex.text for ex in train_set), config.vocab_size, config.max_tokens,
                                    config.min_frequency)
        tokenizer.save(str(tokenizer_path))
    write_split_manifest(split, run_dir / "splits.tsv")

    model_config = ModelConfig(vocab_size=tokenizer.get_vocab_size(), num_classes=len(dataset.labels),
                               **config.model)
    model = BiLSTMClassifier(model_config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=0)

    train_ids, val_ids = encode(tokenizer, train_set), encode(tokenizer, val_set)
    train_labels = torch.tensor([ex.label for ex in train_set])
    val_labels = torch.tensor([ex.label for ex in val_set])

    summary = _run_summary(dataset, split, config, model_config, len(train_set), len(val_set))
    (run_dir / "run.json").write_text(json.dumps(summary, indent=2))

    history: list[dict[str, float]] = []
    best_acc, best_epoch, start_epoch = -1.0, 0, 1
    if resume and (ckpt_dir / "last.pt").exists():
        state = torch.load(ckpt_dir / "last.pt", map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history, best_acc, best_epoch = state["history"], state["best_acc"], state["best_epoch"]
        start_epoch = state["epoch"] + 1
        torch.set_rng_state(state["torch_rng"])
        log.info("resumed after epoch %d (best validation accuracy %.4f at epoch %d)",
                 state["epoch"], best_acc, best_epoch)

    loss_fn = nn.CrossEntropyLoss()
    lengths = [len(x) for x in train_ids]
    for epoch in range(start_epoch, config.epochs + 1):
        if epoch - best_epoch > config.patience and best_epoch > 0:
            log.info("early stop: no better validation accuracy since epoch %d", best_epoch)
            break
        model.train()
        batches = bucketed_batches(lengths, config.batch_size, random.Random(config.seed * 1000 + epoch))
        started, seen, total_loss = time.perf_counter(), 0, 0.0
        bar = tqdm(batches, desc=f"epoch {epoch}/{config.epochs}", unit="batch", leave=False)
        for rows in bar:
            ids, lens = collate([train_ids[i] for i in rows], device)
            loss = loss_fn(model(ids, lens), train_labels[rows].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            seen += len(rows)
            total_loss += loss.item() * len(rows)
            bar.set_postfix(loss=f"{total_loss / seen:.4f}", reviews_s=f"{seen / (time.perf_counter() - started):.0f}")
        train_seconds = time.perf_counter() - started

        logits = predict_logits(model, val_ids, device)
        val_loss = loss_fn(logits, val_labels).item()
        val_acc = (logits.argmax(1) == val_labels).float().mean().item()
        scheduler.step(val_acc)
        record = {"epoch": epoch, "train_loss": total_loss / max(seen, 1), "val_loss": val_loss,
                  "val_accuracy": val_acc, "lr": optimizer.param_groups[0]["lr"],
                  "train_reviews_per_s": seen / train_seconds, "train_seconds": train_seconds}
        history.append(record)
        improved = val_acc > best_acc
        if improved:
            best_acc, best_epoch = val_acc, epoch
            torch.save({"model": model.state_dict(), "model_config": model_config.to_dict(), "epoch": epoch,
                        "val_accuracy": val_acc}, ckpt_dir / "best.pt")
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "history": history, "best_acc": best_acc,
                    "best_epoch": best_epoch, "epoch": epoch, "torch_rng": torch.get_rng_state()},
                   ckpt_dir / "last.pt")
        (run_dir / "history.json").write_text(json.dumps(history, indent=2))
        tqdm.write(f"epoch {epoch}: train loss {record['train_loss']:.4f}  val loss {val_loss:.4f}  "
                   f"val acc {val_acc:.4f}{'  (best)' if improved else ''}  "
                   f"{record['train_reviews_per_s']:.0f} reviews/s")

    summary["training"] = {"device": str(device), "epochs_run": len(history), "best_epoch": best_epoch,
                           "best_val_accuracy": best_acc,
                           "train_seconds": round(sum(h["train_seconds"] for h in history), 1)}
    (run_dir / "run.json").write_text(json.dumps(summary, indent=2))
    return summary


def _run_summary(dataset: Dataset, split: Split, config: TrainConfig, model_config: ModelConfig,
                 n_train: int, n_val: int) -> dict[str, Any]:
    return {
        "labels": list(dataset.labels),
        "data": {
            "source": dataset.source,
            "spec": dataset.spec,
            "dropped_duplicates": dataset.dropped_duplicates,
            "split_seed": split.seed,
            "split_sizes": split.sizes(),
            "used_for_training": {"train": n_train, "validation": n_val},
            "split_sha256": {name: digest_of_hashes(h) for name, h in split.hashes.items()},
        },
        "train_config": asdict(config),
        "model_config": model_config.to_dict(),
    }
