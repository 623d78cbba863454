"""The model card rendered for people: ``README.md`` beside ``model_card.json`` (the source of truth),
every figure taken from the card."""

from __future__ import annotations

import math
from typing import Any

from model_runtime import ModelCard
from training.export import INVARIANCE_TOLERANCE
from training.readme_comparisons import adaptation_lines, register_lines, steps_lines


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
        f"- int8 dynamic quantization: {_int8_summary(card.quantization.get('int8', {}))}",
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
    lines += _three_class_lines(card.labels, test)
    floors = {name: m["ece_if_calibrated"] for name, m in test.get("by_source", {}).items() if "ece_if_calibrated" in m}
    if floors:
        lines += [
            "",
            "The ECE a perfectly calibrated model with the same confidences shows on the same texts (labels drawn "
            "from its own probabilities; median, 90% range): "
            + "; ".join(f"{n} {f['median']:.4f} ({f['p05']:.4f}-{f['p95']:.4f})" for n, f in floors.items())
            + ". An ECE within that range is sampling noise of the split's size.",
        ]
    slices = test.get("by_slice", {})
    if slices:
        sources = [n for n in test.get("by_source", {})]
        lines += [
            "",
            "Negation and contrast (test texts with a negator: not, n't, never, no, nothing, hardly...; with a "
            "contrast: but, though, however, yet...), accuracy (texts) beside the source's overall accuracy:",
            "",
            "| source | all texts | negation | contrast |",
            "|---|---|---|---|",
        ]
        for source in [*sources, "all"]:
            overall = test["by_source"][source]["accuracy"] if source in test.get("by_source", {}) else test["accuracy"]
            cells = [
                f"{slices[k][source]['accuracy']:.4f} ({slices[k][source]['examples']:,})"
                if source in slices[k]
                else "-"
                for k in ("negation", "contrast")
            ]
            lines.append(f"| {source} | {overall:.4f} | {' | '.join(cells)} |")
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


def _three_class_lines(labels: list[str], test: dict[str, Any]) -> list[str]:
    """Per source, what each kind of label asks: per-class F1 where a source has the class; on its polar texts,
    P(positive) against P(negative) (``polarity``, what a binary label says); how often it answers neutral."""
    if "answered_neutral" not in test:
        return []

    def cell(m: dict[str, Any], label: str) -> str:
        c = m["per_class"][label]
        return f"{c['f1']:.3f}" if c["support"] else "-"

    lines = [
        "",
        "Three classes and polarity (accuracy and macro-F1 over the labels a source has; polarity: on its "
        "negative and positive texts, P(positive) against P(negative), and the ECE of that choice):",
        "",
        "| test set | "
        + " | ".join(f"F1 {label}" for label in labels)
        + " | polarity accuracy | polarity ECE | answered neutral | confidence when wrong |",
        "|---|" + "---|" * (len(labels) + 4),
    ]
    for name, m in [("all", test), *test.get("by_source", {}).items()]:
        polarity = f"{m['polarity_accuracy']:.4f} ({m['polarity_examples']:,})" if "polarity_accuracy" in m else "-"
        polarity_ece = f"{m['polarity_ece']:.4f}" if "polarity_ece" in m else "-"
        wrong = m.get("mean_confidence_when_wrong")
        lines.append(
            f"| {name} | {' | '.join(cell(m, label) for label in labels)} | {polarity} | {polarity_ece} | "
            f"{m['answered_neutral']:.2%} | {f'{wrong:.3f}' if wrong is not None else '-'} |"
        )
    return lines


def _sources_lines(data: dict[str, Any]) -> list[str]:
    kept = data.get("kept_and_dropped_by_source", {})
    lines = [
        "",
        "| source | package | licence | domain | kept | dropped | sha256 of the file |",
        "|---|---|---|---|---|---|---|",
    ]
    for source in data.get("sources", []):
        counts = kept.get(source["name"], {})
        dropped = "; ".join(f"{v:,} {k}" for k, v in counts.items() if k != "kept") or "none"
        lines.append(
            f"| {source['name']} | {source['package']} {source['installed_version']} | {source['licence']} | "
            f"{source['domain']} | {counts.get('kept', 0):,} | {dropped} | `{source['file_sha256'][:16]}...` |"
        )
    vectors = data.get("vectors")
    if vectors:
        lines += [
            "",
            f"Word vectors: {vectors['package']} {vectors['version']} ({vectors['licence']}), {vectors['words']:,} "
            f"words x {vectors['dimensions']}; files "
            + ", ".join(f"`{name}` `{digest[:16]}...`" for name, digest in vectors["files"].items())
            + ".",
        ]
    word_list = data.get("word_list")
    if word_list:
        lines += [
            "",
            f"Opinion word list: {word_list['package']} {word_list['version']} ({word_list['licence']}); "
            f"{word_list['attribution']}; files "
            + ", ".join(f"`{name}` `{digest[:16]}...`" for name, digest in word_list["files"].items())
            + ".",
        ]
    return lines


def _provenance_lines(card: ModelCard) -> list[str]:
    data, train = card.data, card.training
    by_source = data.get("split_sizes_by_source", {"all": data["split_sizes"]})
    lines = [
        "",
        "## Data",
        "",
        f"- Provenance: {data['provenance']}",
        f"- Split (stratified per source, keyed by sha256(seed + text), seeds `{data['split_seed']}`): "
        + "; ".join(f"{s}: " + ", ".join(f"{k} {v:,}" for k, v in sizes.items()) for s, sizes in by_source.items())
        + ".",
        "- `splits.tsv` lists the sha256 and source of every text per split; digests of the sorted lists: "
        + ", ".join(f"{k} `{v[:16]}...`" for k, v in data["split_sha256"].items())
        + ".",
        *_sources_lines(data),
    ]
    if "learning_rate" not in train:
        return lines
    pretraining = train.get("pretrain_epochs", 0)
    return [
        *lines,
        "",
        "## Training",
        "",
        f"- Device: {train.get('device')}; {pretraining} epoch(s) of language-model pretraining, then "
        f"{train.get('epochs_run')} epochs, best epoch {train.get('best_epoch')} (mean per-source validation "
        f"accuracy {train.get('best_val_selection', 0):.4f}); {train.get('train_seconds')} s of classifier training, "
        f"{train.get('wall_seconds', '-')} s for the whole command"
        + (f" ({train['wall_seconds_note']})." if train.get("wall_seconds_note") else "."),
        f"- AdamW lr {train['learning_rate']}, weight decay {train['weight_decay']}, batch {train['batch_size']}, "
        f"grad clip {train['grad_clip']}, early stopping patience {train['patience']}, seed {train['seed']}, "
        f"vocabulary {train['vocab_size']:,} from the training split (words seen {train['min_frequency']}+ times, "
        f"then the word vectors' words, {train['pieces']:,} sub-word pieces); sentence spans "
        f"{train.get('span_fraction', 0)}, source balance {train.get('source_balance', 0)}, adversarial eps "
        f"{train.get('adversarial_eps', 0)}; what each source's labels say: "
        + ", ".join(f"{k} {v}" for k, v in card.data.get("supervision", {}).items())
        + ".",
    ]


def render_readme(card: ModelCard) -> str:
    """The human-readable model card, generated from model_card.json."""
    files = [f"| `{name}` | {f.bytes:,} | `{f.sha256}` |" for name, f in card.files.items()]
    return "\n".join(
        [
            *_summary_lines(card),
            *adaptation_lines(card),
            *_metrics_lines(card),
            *register_lines(card.metrics.get("test", {})),
            *steps_lines(card),
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
