"""Command line: ``python -m training {train,export,evaluate,all} ...``.

The shipped model is reproduced with ``python -m training all`` (train, export + verify, evaluate, card:
``training.pipeline``). The training flags are generated from ``TrainConfig`` and ``ModelConfig``: each
default and its help are written once, there.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import json
import logging
import sys
import typing
from pathlib import Path
from typing import Any

from model_runtime import ModelCard
from model_runtime.contract import SHIPPED_MODEL_DIR, SHIPPED_MODEL_NAME, SHIPPED_MODEL_VERSION
from training.adapt import AdaptConfig
from training.config import TrainConfig
from training.data import DataError, Dataset
from training.files import load_labelled_file
from training.model import ModelConfig
from training.sources import DEFAULT_SOURCES, load_sources, make_split

DEFAULT_RUN_DIR = Path("runs") / SHIPPED_MODEL_NAME


def add_options(p: argparse.ArgumentParser, cls: type[Any], group: str) -> None:
    """One ``--flag`` per field of the dataclass ``cls`` marked for the command line, in its own group."""
    g = p.add_argument_group(group)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.metadata.get("cli"):
            continue
        flag, kind = "--" + f.name.replace("_", "-"), hints[f.name]
        base = next((t for t in typing.get_args(kind) if t is not type(None)), kind)  # X | None -> X
        if base is bool:
            g.add_argument(
                flag, dest=f.name, action=argparse.BooleanOptionalAction, default=f.default, help=f.metadata["help"]
            )
        else:
            g.add_argument(
                flag, dest=f.name, type=base, default=f.default, help=f"{f.metadata['help']} (default: %(default)s)"
            )


def train_config(args: argparse.Namespace) -> TrainConfig:
    values = vars(args)

    def chosen(cls: type[Any]) -> dict[str, Any]:
        return {f.name: values[f.name] for f in dataclasses.fields(cls) if f.metadata.get("cli") and f.name in values}

    return TrainConfig(**chosen(TrainConfig), model=ModelConfig(**chosen(ModelConfig)))


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data", type=Path, default=None, help="a labelled CSV/TSV/JSONL file instead of the packaged sources"
    )
    p.add_argument("--text-column", default="text")
    p.add_argument("--label-column", default="label")
    p.add_argument(
        "--sources",
        default=",".join(DEFAULT_SOURCES),
        help="packaged labelled sources (training.sources), comma-separated (default: %(default)s)",
    )


def _add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR)
    _add_data_args(p)
    add_options(p, TrainConfig, "training")
    add_options(p, ModelConfig, "network")
    p.add_argument("--resume", action="store_true", help="continue from run-dir/checkpoints/last.pt")


def _add_export_args(p: argparse.ArgumentParser, with_run_dir: bool = True) -> None:
    if with_run_dir:
        p.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR)
    p.add_argument("--model-dir", type=Path, default=SHIPPED_MODEL_DIR)
    p.add_argument("--name", default=SHIPPED_MODEL_NAME)
    p.add_argument("--version", default=SHIPPED_MODEL_VERSION)


def _dataset(args: argparse.Namespace) -> Dataset:
    if args.data is None:
        return load_sources(tuple(args.sources.split(",")))
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


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
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
    adapt_parser = sub.add_parser("adapt", help="fine-tune a trained model on your own labelled texts")
    adapt_parser.add_argument("--data", type=Path, required=True, help="a labelled CSV/TSV/JSONL/Parquet file")
    adapt_parser.add_argument("--text-column", default="text")
    adapt_parser.add_argument("--label-column", default="label")
    adapt_parser.add_argument("--model-dir", type=Path, required=True, help="where the adapted model is written")
    adapt_parser.add_argument("--from", dest="base", type=Path, default=SHIPPED_MODEL_DIR, help="the model to adapt")
    adapt_parser.add_argument("--name", default=None, help="default: the base's name + '-adapted'")
    adapt_parser.add_argument("--version", default=None, help="default: the base's version + the data's hash")
    add_options(adapt_parser, AdaptConfig, "adapting")
    return p


def side_by_side(card: ModelCard) -> str:
    """The table ``adapt`` ends with, and the commands that put the model live."""
    base, adapted = card.adaptation["user_test"]["base"], card.adaptation["user_test"]["adapted"]
    rows = [f"{'':28}{'base':>10}{'adapted':>10}"]
    names = {"accuracy": "label right (accuracy)"}
    rows += [
        f"{names.get(k, k):28}{base[k]:>10.4f}{adapted[k]:>10.4f}" for k in ("accuracy", "macro_f1", "ece", "log_loss")
    ]
    rows += [
        f"{'F1 ' + label:28}{base['per_class'][label]['f1']:>10.4f}{adapted['per_class'][label]['f1']:>10.4f}"
        for label in adapted["per_class"]
        if label in base["per_class"]
    ]
    if "polarity_accuracy" in base:  # the base answers neutral too: how often it said the right side
        rows.append(f"{'polarity (base)':28}{base['polarity_accuracy']:>10.4f}{'':>10}")
    before, after = card.adaptation["base_sources"]["before"], card.adaptation["base_sources"]["after"]
    rows += [
        f"{'base source ' + s:28}{before[s]['accuracy']:>10.4f}{after[s]['accuracy']:>10.4f}"
        for s in after
        if s in before
    ]
    if adapted["macro_f1"] < base["macro_f1"] - 0.01:
        rows += ["", "note: macro-F1 fell, so the accuracy gained leans on the more frequent label (see F1 per label)"]
    gain = adapted["accuracy"] - base["accuracy"]
    verdict = (
        f"adapting raised accuracy on your held-out texts by {100 * gain:.1f} points"
        if gain > 0
        else "adapting did not help on your held-out texts: keep serving the base model"
    )
    target = card.adaptation["model_dir"]
    return "\n".join(
        [
            *rows,
            "",
            verdict + f" ({card.adaptation['seconds']:.0f} s).",
            "Put it live without downtime (a server started with SENTIMENT_ADMIN_KEY set):",
            f'  curl -X POST http://127.0.0.1:8000/admin/model -H "Authorization: Bearer $SENTIMENT_ADMIN_KEY" '
            f"-H 'Content-Type: application/json' -d '{{\"model_dir\": \"{target}\"}}'",
            f"or start a server on it: SENTIMENT_MODEL_DIR={target} ./scripts/serve.sh",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    _keep_freed_memory()
    from training import adapt, evaluate, export, pipeline, train

    command = " ".join(["python -m training", *(argv if argv is not None else sys.argv[1:])])
    try:
        if args.command == "train":
            dataset = _dataset(args)
            train.train(dataset, make_split(dataset), args.run_dir, train_config(args), resume=args.resume)
        elif args.command == "all":
            spec = pipeline.ExportSpec(args.model_dir, args.name, args.version, command)
            pipeline.run_all(_dataset(args), args.run_dir, train_config(args), spec, int8=args.int8, resume=args.resume)
        elif args.command == "adapt":
            values = {f.name: getattr(args, f.name) for f in dataclasses.fields(AdaptConfig)}
            card = adapt.adapt(
                args.data,
                args.text_column,
                args.label_column,
                args.base,
                args.model_dir,
                AdaptConfig(**values),
                args.name,
                args.version,
            )
            print(side_by_side(card))
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
