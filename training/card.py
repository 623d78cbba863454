"""The model card of an exported model: built once from the run, the export proof and the evaluation,
rendered to a README (``model_card.json`` stays the source of truth)."""

from __future__ import annotations

import math
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
from training.export import INVARIANCE_TOLERANCE, OPSET, PARITY_TOLERANCE, VerificationReport
from training.sources import describe_sources
from training.tokenizer import describe_tokenizer
from training.vectors import describe_glove


def provenance(data: dict[str, Any]) -> str:
    spec = data["spec"]
    if spec.get("kind") == "file":
        return f"the labelled file {data['source']}"
    names = ", ".join(spec["sources"].split(","))
    return (
        f"Learned from the labelled sources {names} (each a file inside a PyPI package, listed under sources "
        "with its package, version, licence and sha256; installed by the training extra, nothing downloaded at "
        "run time) and, for the embedding, the general-English word vectors listed under vectors. No sentiment "
        "lexicon and no pretrained network was used."
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
    data = {**run["data"], "provenance": provenance(run["data"])}
    if data["spec"].get("kind") in ("sources", "movie-reviews"):
        data["sources"] = describe_sources(tuple(data["spec"]["sources"].split(",")))
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

    return {
        **trim(evaluation["overall"]),
        "by_source": {k: trim(v) for k, v in evaluation.get("by_source", {}).items()},
        "by_slice": evaluation.get("by_slice", {}),
        "by_length": evaluation["by_length"],
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


def _t(calibration: dict[str, Any], tokens: int) -> float:
    t = calibration["temperature"]
    return float(math.exp(t["log_scale"] + t["log_slope"] * math.log(tokens)))


def _int8_summary(q: dict[str, Any]) -> str:
    if not q.get("tried"):
        return "not tried (`python -m training all --int8` tries it)."
    return (
        f"tried, {'kept' if q['kept'] else 'not kept'}: test accuracy {q['accuracy_int8']:.4f} vs "
        f"{q['accuracy_fp32']:.4f} in float32; a text's probabilities moved by up to "
        f"{q['invariance_max_abs_diff_int8']:.1e} with its batch neighbours (limit {INVARIANCE_TOLERANCE:.0e}: "
        f"dynamic quantization scales activations over the whole batch); {q['bytes_int8'] / 1e6:.1f} MB. "
        f"Rule: {q['rule']}."
    )


def _metric_rows(name: str, m: dict[str, Any]) -> str:
    before = m.get("before_temperature")
    calibration = (
        f"{before['ece']:.4f} → {m['ece']:.4f} | {before['log_loss']:.4f} → {m['log_loss']:.4f}"
        if before
        else f"{m['ece']:.4f} | {m['log_loss']:.4f}"
    )
    return f"| {name} | {m['examples']:,} | {m['accuracy']:.4f} | {m['macro_f1']:.4f} | {calibration} |"


def _summary_lines(card: ModelCard) -> list[str]:
    arch, verification = card.architecture, card.export["verification"]
    lines = [
        f"# Model card: {card.name} {card.version}",
        "",
        f"{card.task.capitalize()}. Labels: {', '.join(f'`{x}`' for x in card.labels)}.",
        f"Architecture: {arch['type']}; embedding {arch['embedding_dim']}, hidden {arch['hidden_size']} per "
        f"direction, {arch['num_layers']} layer(s), vocabulary {arch['vocab_size']:,}, dropout {arch['dropout']}.",
        "",
        f"- Max tokens: {card.max_tokens}. Truncation: {card.truncation['policy']}.",
        f"- Tokenizer: {card.tokenizer['type']}; {card.tokenizer['normalisation']}; "
        f"{card.tokenizer['pre_tokenisation']}.",
        f"- Export: opset {card.export['opset']}, {card.export['graph']}; verified on {verification['texts']} real "
        f"texts: max |ONNX - PyTorch packed| = {verification['parity_max_abs_diff']:.1e}, max batch-invariance "
        f"deviation = {verification['invariance_max_abs_diff']:.1e} over {verification['invariance_cases']} cases.",
        f"- int8 dynamic quantization: {_int8_summary(card.quantization['int8'])}",
    ]
    if card.calibration:
        c = card.calibration
        lines.append(
            f"- Calibration: {c['method']}; log_scale {c['temperature']['log_scale']:.3f}, log_slope "
            f"{c['temperature']['log_slope']:.3f} (T = {_t(c, 20):.2f} at 20 tokens, {_t(c, 300):.2f} at 300); "
            "validation log loss "
            f"{c['val_log_loss_before_temperature']:.4f} → {c['val_log_loss_after_temperature']:.4f}."
        )
    return lines


def _metrics_lines(card: ModelCard) -> list[str]:
    lines = ["", "## Test metrics (exported ONNX model, held-out test splits)", ""]
    test = card.metrics.get("test")
    if not test:
        return [*lines, "Not evaluated yet: run `python -m training evaluate`."]
    lines += ["| test set | texts | accuracy | macro-F1 | ECE (15 bins) | log loss |", "|---|---|---|---|---|---|"]
    lines += [_metric_rows("all", test), *(_metric_rows(name, m) for name, m in test.get("by_source", {}).items())]
    if test.get("by_source") and card.calibration:
        lines += ["", "Per source, ECE and log loss read before → after temperature scaling."]
    floors = {name: m["ece_if_calibrated"] for name, m in test.get("by_source", {}).items() if "ece_if_calibrated" in m}
    if floors:
        lines += [
            "",
            "The ECE a perfectly calibrated model with the same confidences shows on the same texts (labels drawn "
            "from its own probabilities; median, 90% range): "
            + "; ".join(f"{n} {f['median']:.4f} ({f['p05']:.4f}-{f['p95']:.4f})" for n, f in floors.items())
            + ". An ECE within that range is sampling noise of the split's size.",
        ]
    lines += [
        "",
        "By length (tokens the model read):",
        "",
        "| tokens | texts | accuracy | ECE | log loss |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {name} | {m['examples']:,} | {m['accuracy']:.4f} | {m['ece']:.4f} | {m['log_loss']:.4f} |"
        for name, m in test["by_length"].items()
    ]
    matrix = test["confusion_matrix"]
    return [
        *lines,
        "",
        f"Confusion matrix (rows true, columns predicted, order {matrix['labels']}): "
        f"`{matrix['rows_true_columns_predicted']}`. Reliability diagram: `evaluation/calibration.png`.",
    ]


def _provenance_lines(card: ModelCard) -> list[str]:
    data, train = card.data, card.training
    by_source = data.get("split_sizes_by_source", {"all": data["split_sizes"]})
    pretraining = train.get("pretrain_epochs", 0)
    return [
        "",
        "## Data",
        "",
        f"- Provenance: {data['provenance']}",
        f"- Source: {data['source']} ({data['dropped_duplicates']} duplicate texts dropped before splitting).",
        f"- Split (stratified per source, keyed by sha256(seed + text), seeds `{data['split_seed']}`): "
        + "; ".join(f"{s}: " + ", ".join(f"{k} {v:,}" for k, v in sizes.items()) for s, sizes in by_source.items())
        + ".",
        "- `splits.tsv` lists the sha256 and source of every text per split; digests of the sorted lists: "
        + ", ".join(f"{k} `{v[:16]}...`" for k, v in data["split_sha256"].items())
        + ".",
        "",
        "## Training",
        "",
        f"- Device: {train.get('device')}; {pretraining} epoch(s) of language-model pretraining, then "
        f"{train.get('epochs_run')} epochs, best epoch {train.get('best_epoch')} (mean per-source validation "
        f"accuracy {train.get('best_val_selection', 0):.4f}); {train.get('train_seconds')} s of classifier training.",
        f"- AdamW lr {train['learning_rate']}, weight decay {train['weight_decay']}, batch {train['batch_size']}, "
        f"grad clip {train['grad_clip']}, early stopping patience {train['patience']}, seed {train['seed']}, "
        f"vocabulary from the training split only (min frequency {train['min_frequency']}); sentence spans "
        f"{train.get('span_fraction', 0)}, label smoothing {train.get('label_smoothing', 0)}, adversarial eps "
        f"{train.get('adversarial_eps', 0)}.",
    ]


def render_readme(card: ModelCard) -> str:
    """The human-readable model card, generated from model_card.json."""
    files = [f"| `{name}` | {f.bytes:,} | `{f.sha256}` |" for name, f in card.files.items()]
    return "\n".join(
        [
            *_summary_lines(card),
            *_metrics_lines(card),
            *_provenance_lines(card),
            "",
            "## Files",
            "",
            "| file | bytes | sha256 |",
            "|---|---|---|",
            *files,
            "",
            "## Reproduce",
            "",
            f"```\n{card.reproduce}\n```",
            "",
        ]
    )
