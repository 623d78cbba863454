"""Score files in process, with no server: ``python -m sentiment_bulk INPUT [-o OUTPUT] [--engine local|ray]``.

    python -m sentiment_bulk reviews.jsonl -o scored.jsonl                      # the shipped model, in process
    python -m sentiment_bulk reviews/ -o scored/ --engine ray [--ray-address ADDR]   # Parquet out, on Ray Data

``--engine local`` reads, scores and writes as ``python -m sentiment_client`` does (same formats, bad-row
handling and progress), with the model loaded here; ``--engine ray`` scores a file or a directory of
CSV, JSON Lines and Parquet files on a Ray cluster (local by default) into a directory of Parquet files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from model_runtime import ModelLoadError, Predictor, document_sentences
from model_runtime import Prediction as RuntimePrediction
from model_runtime.batch import score_documents
from model_runtime.contract import SHIPPED_MODEL_DIR
from sentiment_client import Document, DocumentError, Language, Prediction, Sentence
from sentiment_client.cli import add_file_options, score_file

MAX_BATCH_TOKENS = 4096


def as_client(p: RuntimePrediction) -> Prediction:
    language = Language(p.language.code, p.language.supported) if p.language else None
    return Prediction(p.label, p.score, p.probabilities, p.tokens, p.truncated, language)


def sentence(text: str, result: dict[str, Any]) -> Sentence:
    start, length = result["offset"], result["length"]
    return Sentence(start, length, text[start : start + length], result["label"], result["probabilities"])


def analyze(predictor: Predictor, texts: list[str]) -> list[Document]:
    """The service's /analyze in process (model_runtime.batch.score_documents: every sentence and every
    document whole scored together, a verdict each)."""
    readable = [i for i, text in enumerate(texts) if document_sentences(text)]
    results = score_documents(predictor, [texts[i] for i in readable], max_sentences=10**9)
    found = dict(zip(readable, results, strict=True))
    documents = []
    for index, text in enumerate(texts):
        if index not in found:
            documents.append(
                Document(index, None, {}, None, [], DocumentError("empty_document", "no sentence to score"))
            )
            continue
        result, language = found[index], found[index]["language"]
        documents.append(
            Document(
                index,
                result["label"],
                result["probabilities"],
                Language(language["code"], language["supported"]),
                [
                    Sentence(
                        s["offset"],
                        s["length"],
                        text[s["offset"] : s["offset"] + s["length"]],
                        s["label"],
                        s["probabilities"],
                    )
                    for s in result["sentences"]
                ],
            )
        )
    return documents


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sentiment_bulk", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_file_options(parser)
    parser.add_argument("--model-dir", type=Path, default=SHIPPED_MODEL_DIR, help="default: the shipped model")
    parser.add_argument("--provider", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="ray: INPUT may be a directory of CSV/JSONL/Parquet files; -o names an output "
        "directory of Parquet files (needs the 'ray' extra)",
    )
    parser.add_argument("--ray-address", default=None, help="with --engine ray: a cluster to join (default: local)")
    args = parser.parse_args(argv)
    if args.engine == "ray":
        if not args.output:
            parser.error("--engine ray writes a directory of Parquet files: give -o OUTPUT_DIR")
        if not Path(args.input).exists():
            parser.error(f"no such file or directory: {args.input}")
        from sentiment_bulk import ray_engine

        return ray_engine.run(
            Path(args.input),
            Path(args.output),
            args.model_dir,
            args.provider,
            args.text_field,
            args.on_error,
            args.ray_address,
            max(args.batch_size, 256),
        )
    if args.input != "-" and not Path(args.input).is_file():
        parser.error(f"no such file: {args.input}")
    try:
        predictor = Predictor.load(args.model_dir, provider=args.provider)
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def score(texts: list[str]) -> list[Prediction]:
        return [as_client(p) for p in predictor.predict(texts, max_batch_tokens=MAX_BATCH_TOKENS)]

    if args.sentences:
        return score_file(args, lambda texts: analyze(predictor, texts), lambda: None, lambda: list(predictor.labels))
    return score_file(args, score, lambda: None)


if __name__ == "__main__":
    raise SystemExit(main())
