"""The model card of an exported model: built once from the run, the export proof and the evaluation,
rendered to a README (``model_card.json`` stays the source of truth)."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from model_runtime import FileEntry, ModelCard, file_sha256
from model_runtime.contract import (
    INPUT_IDS,
    LENGTHS,
    LOGITS,
    MODEL_FILE,
    PROBABILITIES,
    SPLITS_FILE,
    TOKENIZER_FILE,
    TRUNCATION_POLICY,
)
from training.data import Split, digest_of_hashes
from training.export import INVARIANCE_TOLERANCE, OPSET, PARITY_TOLERANCE, VerificationReport
from training.sources import describe_sources
from training.tokenizer import describe_tokenizer
from training.vectors import describe_glove
from training.wordlist import describe_word_lists

# What each step of the shipped recipe bought: rows measured by separate runs (docs/model.md), carried into
# the card of a model trained on the packaged sources.
RECIPE_STEPS = Path(__file__).resolve().parent / "recipe_steps.json"


def provenance(data: dict[str, Any], word_prior: bool = False) -> str:
    spec = data["spec"]
    if spec.get("kind") == "file":
        return f"the labelled file {data['source']}"
    names = ", ".join(spec["sources"].split(","))
    inside = " and each token's value on it is an input of the network (a frozen column)" if word_prior else ""
    return (
        f"Learned from the labelled sources {names} (each a file inside a PyPI package, listed under sources "
        "with its package, version, licence and sha256; installed by the training command, nothing downloaded "
        "at run time) and, for the embedding, the general-English word vectors listed under vectors. The opinion "
        "word list listed under word_list (AFINN, Finn Årup Nielsen, Open Database License 1.0; this model is a "
        "Produced Work of that database) decided which sentences carry an opinion (training.evidence)"
        f"{inside}. No pretrained network was used."
    )


def file_entries(
    model_dir: Path, names: tuple[str, ...] = (MODEL_FILE, TOKENIZER_FILE, SPLITS_FILE)
) -> dict[str, FileEntry]:
    """sha256 and size of each named file of ``model_dir``, for the card (the runtime checks them)."""
    return {name: FileEntry(file_sha256(model_dir / name), (model_dir / name).stat().st_size) for name in names}


def build_card(
    run: dict[str, Any],
    history: list[dict[str, Any]],
    report: VerificationReport,
    model_dir: Path,
    export: Any,
    quantization: dict[str, Any] | None = None,
) -> ModelCard:
    """The card of a freshly exported model (metrics come after evaluation); ``export`` is the pipeline's
    ExportSpec (name, version, command)."""
    max_tokens = run["train_config"]["max_tokens"]
    training = {**run["train_config"], **run.get("training", {}), "history": history}
    training["pretraining_history"] = run.get("pretraining", [])
    data = {**run["data"], "provenance": provenance(run["data"], bool(run["model_config"].get("word_prior")))}
    if data["spec"].get("kind") in ("sources", "movie-reviews"):
        data["sources"] = describe_sources(tuple(data["spec"]["sources"].split(",")))
        data["word_list"] = describe_word_lists()
        training["recipe_steps"] = json.loads(RECIPE_STEPS.read_text())  # measured, for the shipped recipe
    if run["model_config"].get("vector_dim"):
        data["vectors"] = describe_glove()
    return ModelCard(
        name=export.name,
        version=export.version,
        created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        labels=run["labels"],
        max_tokens=max_tokens,
        truncation={
            "side": TRUNCATION_POLICY,
            "policy": f"texts longer than {max_tokens} tokens keep their LAST {max_tokens} tokens; "
            "the service flags them truncated",
        },
        tokenizer=describe_tokenizer(run["model_config"]["vocab_size"], bool(run["model_config"].get("vector_dim"))),
        inputs={
            INPUT_IDS: "int64 (batch, sequence): token ids right-padded with 0",
            LENGTHS: "int64 (batch): true token counts (0 is scored as one padding token)",
        },
        outputs={
            LOGITS: "float32 (batch, labels), divided by each text's temperature",
            PROBABILITIES: "float32 (batch, labels), softmax of logits",
        },
        architecture={
            "type": "embedding (projected word vectors + learned residual) -> bidirectional LSTM (true lengths) "
            "-> max+mean pooling -> linear",
            **run["model_config"],
        },
        training=training,
        data=data,
        export={
            "opset": OPSET,
            "graph": "ONNX LSTM with sequence_lens (exact packed semantics); embedding table stored in float16",
            "verification": asdict(report),
            "parity_tolerance": PARITY_TOLERANCE,
            "invariance_tolerance": INVARIANCE_TOLERANCE,
        },
        calibration=_calibration(training),
        quantization=quantization or {"int8": {"tried": False}},
        files=file_entries(model_dir),
        reproduce=export.command,
    )


def card_metrics(evaluation: dict[str, Any]) -> dict[str, Any]:
    """What the card keeps of an evaluation: the overall figures at the top (as every card had them), per
    source, per slice and per length bucket beside them, without the per-bin calibration tables."""

    def trim(m: dict[str, Any]) -> dict[str, Any]:
        kept = {k: v for k, v in m.items() if k != "calibration"}
        if "before_temperature" in kept:
            kept["before_temperature"] = {k: v for k, v in kept["before_temperature"].items() if k != "calibration"}
        return kept

    registers: dict[str, Any] = {
        k: evaluation[k] for k in ("word_list_rule", "cross_register", "source_leak") if k in evaluation
    }
    return {
        **trim(evaluation["overall"]),
        "by_source": {k: trim(v) for k, v in evaluation.get("by_source", {}).items()},
        "by_slice": evaluation.get("by_slice", {}),
        "by_length": evaluation["by_length"],
        **registers,
    }


def _calibration(training: dict[str, Any]) -> dict[str, Any]:
    """The temperature and what it did, moved out of the training record into their own card section."""
    keys = ("temperature", "val_log_loss_before_temperature", "val_log_loss_after_temperature")
    calibration: dict[str, Any] = {k: training.pop(k) for k in keys if k in training}
    if calibration:
        calibration["method"] = (
            "temperature scaling (Guo et al. 2017), T = exp(log_scale + log_slope ln length), fitted on the "
            "validation splits and computed in the exported graph per text (logits / T)"
        )
    return calibration


def adapted_card(
    base: ModelCard,
    base_ref: dict[str, str],
    model_dir: Path,
    name: str,
    version: str,
    report: VerificationReport,
    calibration: dict[str, Any],
    history: list[dict[str, Any]],
    data: Path,
    split: Split,
    config: Any,
    labels: tuple[str, ...],
) -> ModelCard:
    """The card of an adapted model answering ``labels`` (metrics and the side-by-side figures come after
    evaluation)."""
    return ModelCard(
        name=name,
        version=version,
        created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        labels=list(labels),
        max_tokens=base.max_tokens,
        truncation=base.truncation,
        tokenizer=base.tokenizer,
        inputs=base.inputs,
        outputs=base.outputs,
        architecture={
            **base.architecture,
            "vector_dim": 0,
            "num_classes": len(labels),
            "embedding": "the base's table, fine-tuned",
        },
        training={"adapt": asdict(config), "history": history},
        data={
            "source": str(data),
            "spec": {"kind": "file", "path": str(data.resolve())},
            "provenance": f"the base model {base.name} {base.version}, then the labelled file {data.name}",
            "split_seed": split.seed,
            "split_sizes": split.sizes(),
            "split_sha256": {part: digest_of_hashes(h) for part, h in split.hashes.items()},
        },
        export={
            "opset": OPSET,
            "graph": base.export.get("graph", ""),
            "verification": asdict(report),
            "parity_tolerance": PARITY_TOLERANCE,
            "invariance_tolerance": INVARIANCE_TOLERANCE,
        },
        calibration={**calibration, "method": "temperature scaling, fitted again on the user's validation texts"},
        files=file_entries(model_dir),
        reproduce=f"python -m training adapt --data {data} --from <base model directory> ...",
        base=base_ref,
    )
