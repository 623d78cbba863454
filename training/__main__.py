"""Command line: ``python -m training {train,export,evaluate,all} ...``.

The shipped model is reproduced with ``python -m training all`` (train, export + verify, evaluate, card:
``training.pipeline``).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import sys
from dataclasses import fields
from pathlib import Path

from model_runtime.contract import SHIPPED_MODEL_DIR, SHIPPED_MODEL_NAME, SHIPPED_MODEL_VERSION
from training.data import DataError, Dataset, load_movie_reviews
from training.files import load_labelled_file
from training.train import TrainConfig

DEFAULT_RUN_DIR = Path("runs") / SHIPPED_MODEL_NAME


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help="a labelled CSV/TSV/JSONL file; default: the IMDB reviews and Rotten Tomatoes sentences of movie-reviews",
    )
    p.add_argument("--text-column", default="text")
    p.add_argument("--label-column", default="label")


def _add_train_args(p: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    p.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR)
    _add_data_args(p)
    p.add_argument("--epochs", type=int, default=d.epochs, help="maximum epochs (early stopping may end sooner)")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.learning_rate, dest="learning_rate")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--patience", type=int, default=d.patience)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--vocab-size", type=int, default=d.vocab_size)
    p.add_argument(
        "--max-tokens", type=int, default=d.max_tokens, help="longer texts keep their last MAX_TOKENS tokens"
    )
    p.add_argument("--max-samples", type=int, default=None, help="use at most this many texts per split")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--embedding-dim", type=int, default=128)
    p.add_argument("--hidden-size", type=int, default=128)
    p.add_argument("--num-layers", type=int, default=1)
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--tokenizer", choices=["word", "bpe"], default=d.tokenizer)
    p.add_argument(
        "--span-fraction",
        type=float,
        default=d.span_fraction,
        help="share of long training texts also given as a 1-3 sentence span each epoch",
    )
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    p.add_argument(
        "--mix-sources",
        action="store_true",
        help="deal the smaller sources' texts across every batch instead of batching texts of similar length",
    )
    p.add_argument(
        "--adversarial-eps",
        type=float,
        default=d.adversarial_eps,
        help="adversarial embedding perturbation per token (0: off; doubles the step cost)",
    )
    p.add_argument(
        "--pretrain-epochs",
        type=int,
        default=d.pretrain_epochs,
        help="language-model pretraining epochs on the training texts before the classifier (0: off)",
    )
    p.add_argument(
        "--pretrained-encoder",
        default=None,
        help="checkpoints/pretrained.pt of an earlier run (same split and tokenizer) instead of pretraining again",
    )
    p.add_argument("--resume", action="store_true", help="continue from run-dir/checkpoints/last.pt")


def _add_export_args(p: argparse.ArgumentParser, with_run_dir: bool = True) -> None:
    if with_run_dir:
        p.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR)
    p.add_argument("--model-dir", type=Path, default=SHIPPED_MODEL_DIR)
    p.add_argument("--name", default=SHIPPED_MODEL_NAME)
    p.add_argument("--version", default=SHIPPED_MODEL_VERSION)


def _train_config(args: argparse.Namespace) -> TrainConfig:
    names = {f.name for f in fields(TrainConfig)}
    kwargs = {k: v for k, v in vars(args).items() if k in names}
    kwargs["model"] = {
        "embedding_dim": args.embedding_dim,
        "hidden_size": args.hidden_size,
        "num_layers": args.num_layers,
        "dropout": args.dropout,
    }
    return TrainConfig(**kwargs)


def _dataset(args: argparse.Namespace) -> Dataset:
    if args.data is None:
        return load_movie_reviews()
    return load_labelled_file(args.data, args.text_column, args.label_column)


def _keep_freed_memory() -> None:
    """Stop glibc from returning large freed blocks to the OS after every LSTM step.

    PyTorch's CPU LSTM allocates and frees big buffers per batch; with glibc's defaults each one is a
    fresh mmap/munmap and training spends most of its time in the kernel (measured: 2x slower).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 1 << 30)
    libc.mallopt(m_trim_threshold, 1 << 30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train_args(sub.add_parser("train", help="train the BiLSTM; writes a run directory"))
    _add_export_args(sub.add_parser("export", help="export a run to a verified ONNX model directory"))
    ev = sub.add_parser("evaluate", help="evaluate an exported model directory (ONNX) on labelled texts")
    ev.add_argument("--model-dir", type=Path, default=SHIPPED_MODEL_DIR)
    _add_data_args(ev)
    ev.add_argument("--output", type=Path, default=None, help="default: MODEL_DIR/evaluation")
    everything = sub.add_parser("all", help="train, export and evaluate: reproduces the shipped model")
    _add_train_args(everything)
    _add_export_args(everything, with_run_dir=False)
    everything.add_argument(
        "--int8",
        action="store_true",
        help="also try int8 dynamic quantization (kept only if it loses <= 0.3 points "
        "and stays batch-invariant); the outcome is recorded in the card",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    _keep_freed_memory()
    from training import evaluate, export, pipeline, train

    command = " ".join(["python -m training", *(argv if argv is not None else sys.argv[1:])])
    try:
        if args.command == "train":
            train.train(_dataset(args), args.run_dir, _train_config(args), resume=args.resume)
        elif args.command == "all":
            spec = pipeline.ExportSpec(args.model_dir, args.name, args.version, command)
            pipeline.run_all(
                _dataset(args), args.run_dir, _train_config(args), spec, int8=args.int8, resume=args.resume
            )
        elif args.command == "export":
            spec = pipeline.ExportSpec(args.model_dir, args.name, args.version, command)
            pipeline.ship_existing_run(args.run_dir, spec)
        elif args.data is None:
            report = pipeline.evaluate_shipped(args.model_dir)
            print(json.dumps({k: v for k, v in report["overall"].items() if k != "calibration"}, indent=2))
        else:
            data = load_labelled_file(args.data, args.text_column, args.label_column)
            report = evaluate.evaluate_dataset(args.model_dir, data, output=args.output)
            print(json.dumps({k: v for k, v in report["overall"].items() if k != "calibration"}, indent=2))
    except (DataError, export.ExportVerificationError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
