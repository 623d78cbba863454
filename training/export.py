"""Export the trained network to ONNX, and prove the export exact before anything is written.

``torch.onnx.export`` cannot express ``pack_padded_sequence``: traced, it either fails or bakes in the
padded computation, where the backward direction of the LSTM starts on padding and the prediction
changes with the batch. ONNX's own ``LSTM`` operator has a ``sequence_lens`` input with exactly packed
semantics (each direction runs over a sequence's first ``len`` steps only; the reverse direction starts
at its last real token), so the graph is assembled here directly from the trained weights:

    input_ids (B, T) int64, lengths (B,) int64
      -> Gather(embedding)            (B, T, E)  -> transposed to (T, B, E)
      -> LSTM(bidirectional, sequence_lens=lengths) per layer -> (T, B, 2H)
      -> masked max and masked mean over the first ``lengths`` steps, concatenated (B, 4H)
      -> Gemm(head) -> logits (B, C), Softmax -> probabilities (B, C)

``verify_export`` then checks, and raises ``ExportVerificationError`` otherwise, that (a) ONNX Runtime's
probabilities equal the PyTorch packed-sequence model's within 1e-4 on real texts of mixed lengths, and
(b) each text's probabilities are the same within 1e-5 alone, next to much longer texts, and at every
position in the batch.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer

from service.predictor import CARD_FILE, file_sha256, pad_ids
from training.data import digest_of_hashes, load_from_spec, split_dataset
from training.evaluate import ECE_BINS
from training.model import BiLSTMClassifier
from training.tokenizer import TRUNCATION_SIDE

TRUNCATION_SIDE_NAME = {"left": "keep_end", "right": "keep_start"}[TRUNCATION_SIDE]
ECE_BINS_NOTE = f"{ECE_BINS} bins"

log = logging.getLogger(__name__)

OPSET = 17
INPUT_IDS, LENGTHS = "input_ids", "lengths"
LOGITS, PROBABILITIES = "logits", "probabilities"
PARITY_TOLERANCE = 1e-4
INVARIANCE_TOLERANCE = 1e-5

# torch stores LSTM gates as (input, forget, cell, output); ONNX as (input, output, forget, cell).
_TORCH_TO_ONNX_GATES = (0, 3, 1, 2)


class ExportVerificationError(RuntimeError):
    """The ONNX graph does not reproduce the PyTorch model; nothing is written."""


def _onnx_gates(weight: np.ndarray, hidden: int) -> np.ndarray:
    blocks = [weight[g * hidden:(g + 1) * hidden] for g in _TORCH_TO_ONNX_GATES]
    return np.concatenate(blocks, axis=0)


def _lstm_initializers(lstm: torch.nn.LSTM, layer: int) -> list[np.ndarray]:
    """W (2, 4H, in), R (2, 4H, H) and B (2, 8H) for one bidirectional layer, in ONNX gate order."""
    hidden = lstm.hidden_size
    ws, rs, bs = [], [], []
    for suffix in ("", "_reverse"):
        p = {n: getattr(lstm, f"{n}_l{layer}{suffix}").detach().cpu().numpy()
             for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
        ws.append(_onnx_gates(p["weight_ih"], hidden))
        rs.append(_onnx_gates(p["weight_hh"], hidden))
        bs.append(np.concatenate([_onnx_gates(p["bias_ih"], hidden), _onnx_gates(p["bias_hh"], hidden)]))
    return [np.stack(ws), np.stack(rs), np.stack(bs)]


def build_onnx(model: BiLSTMClassifier, metadata: dict[str, str] | None = None) -> onnx.ModelProto:
    """The inference graph of ``model`` (eval mode: no dropout), with dynamic batch and sequence axes."""
    cfg = model.config
    inits: list[onnx.TensorProto] = []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    nodes = [
        helper.make_node("Max", [LENGTHS, const("one", np.array(1, np.int64))], ["lengths_min1"]),
        helper.make_node("Cast", ["lengths_min1"], ["seq_lens"], to=TensorProto.INT32),
        helper.make_node("Gather", [const("embedding", model.embedding.weight.detach().cpu().numpy()), INPUT_IDS],
                         ["embedded"]),  # (B, T, E)
        helper.make_node("Transpose", ["embedded"], ["x0"], perm=[1, 0, 2]),  # (T, B, E)
    ]
    x = "x0"
    for layer in range(cfg.num_layers):
        w, r, b = _lstm_initializers(model.lstm, layer)
        nodes += [
            helper.make_node("LSTM", [x, const(f"W{layer}", w), const(f"R{layer}", r), const(f"B{layer}", b),
                                      "seq_lens"], [f"y{layer}"],
                             direction="bidirectional", hidden_size=cfg.hidden_size),  # (T, 2, B, H)
            helper.make_node("Transpose", [f"y{layer}"], [f"yt{layer}"], perm=[0, 2, 1, 3]),  # (T, B, 2, H)
            helper.make_node("Reshape", [f"yt{layer}", const(f"shape{layer}", np.array([0, 0, -1], np.int64))],
                             [f"x{layer + 1}"]),  # (T, B, 2H)
        ]
        x = f"x{layer + 1}"
    nodes += [
        helper.make_node("Transpose", [x], ["states"], perm=[1, 0, 2]),  # (B, T, 2H)
        # mask (B, T, 1): position < length
        helper.make_node("Shape", [INPUT_IDS], ["ids_shape"]),
        helper.make_node("Gather", ["ids_shape", const("axis1", np.array(1, np.int64))], ["steps"]),
        helper.make_node("Range", [const("zero", np.array(0, np.int64)), "steps", "one"], ["positions"]),
        helper.make_node("Unsqueeze", ["positions", const("axes0", np.array([0], np.int64))], ["positions_row"]),
        helper.make_node("Unsqueeze", ["lengths_min1", const("axes1", np.array([1], np.int64))], ["lengths_col"]),
        helper.make_node("Less", ["positions_row", "lengths_col"], ["mask2"]),  # (B, T)
        helper.make_node("Unsqueeze", ["mask2", const("axes2", np.array([2], np.int64))], ["mask"]),  # (B, T, 1)
        # masked max (B, 2H)
        helper.make_node("Where", ["mask", "states", const("neg_inf", np.array(-np.inf, np.float32))], ["masked"]),
        helper.make_node("ReduceMax", ["masked"], ["pooled_max"], axes=[1], keepdims=0),
        # masked mean (B, 2H)
        helper.make_node("Cast", ["mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["states", "mask_f"], ["kept"]),
        helper.make_node("ReduceSum", ["kept", "axes1"], ["summed"], keepdims=0),
        helper.make_node("Cast", ["lengths_col"], ["lengths_f"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["summed", "lengths_f"], ["pooled_mean"]),
        helper.make_node("Concat", ["pooled_max", "pooled_mean"], ["features"], axis=1),  # (B, 4H)
        helper.make_node("Gemm", ["features", const("head_w", model.head.weight.detach().cpu().numpy()),
                                  const("head_b", model.head.bias.detach().cpu().numpy())], [LOGITS], transB=1),
        helper.make_node("Softmax", [LOGITS], [PROBABILITIES], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "bilstm_sentiment",
        inputs=[helper.make_tensor_value_info(INPUT_IDS, TensorProto.INT64, ["batch", "sequence"]),
                helper.make_tensor_value_info(LENGTHS, TensorProto.INT64, ["batch"])],
        outputs=[helper.make_tensor_value_info(LOGITS, TensorProto.FLOAT, ["batch", cfg.num_classes]),
                 helper.make_tensor_value_info(PROBABILITIES, TensorProto.FLOAT, ["batch", cfg.num_classes])],
        initializer=inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="sentiment-service training.export")
    proto.ir_version = 8  # readable by every onnxruntime release that supports opset 17
    for key, value in (metadata or {}).items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto, full_check=True)
    return proto


@dataclass
class VerificationReport:
    texts: int
    parity_max_abs_diff: float
    invariance_max_abs_diff: float
    invariance_cases: int


def verify_export(model: BiLSTMClassifier, onnx_path: Path, ids: list[list[int]]) -> VerificationReport:
    """Check parity with PyTorch and batch invariance on the given token-id lists (mixed lengths)."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])

    def run(batch_ids: list[list[int]], extra_steps: int = 0) -> np.ndarray:
        batch, lengths = pad_ids(batch_ids, extra_steps)
        return session.run([PROBABILITIES], {INPUT_IDS: batch, LENGTHS: lengths})[0]

    model.eval()
    with torch.no_grad():
        batch, lengths = pad_ids(ids)
        reference = torch.softmax(model(torch.from_numpy(batch), torch.from_numpy(lengths)), dim=1).numpy()
    parity = float(np.abs(run(ids) - reference).max())
    if not parity <= PARITY_TOLERANCE:
        raise ExportVerificationError(
            f"ONNX Runtime differs from the PyTorch packed-sequence model by {parity:.2e} "
            f"(tolerance {PARITY_TOLERANCE:.0e}) on {len(ids)} texts")

    by_length = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    short, longest = by_length[: max(1, len(ids) // 4)], [ids[i] for i in by_length[-3:]]
    worst, cases = 0.0, 0
    for i in short:
        alone = run([ids[i]])[0]
        contexts = {
            "alone, extra padding": run([ids[i]], extra_steps=37)[0],
            "first of longer texts": run([ids[i], *longest])[0],
            "last of longer texts": run([*longest, ids[i]])[-1],
            "middle of longer texts": run([longest[0], ids[i], *longest[1:]])[1],
        }
        for where, probs in contexts.items():
            diff = float(np.abs(probs - alone).max())
            worst, cases = max(worst, diff), cases + 1
            if not diff <= INVARIANCE_TOLERANCE:
                raise ExportVerificationError(
                    f"batch invariance broken: a {len(ids[i])}-token text's probabilities move by {diff:.2e} "
                    f"({where}; tolerance {INVARIANCE_TOLERANCE:.0e})")
    # Every row of the full mixed batch must also match its own single-text run.
    full = run(ids)
    for row, x in enumerate(ids):
        diff = float(np.abs(full[row] - run([x])[0]).max())
        worst, cases = max(worst, diff), cases + 1
        if not diff <= INVARIANCE_TOLERANCE:
            raise ExportVerificationError(
                f"batch invariance broken at row {row} of a {len(ids)}-text batch: {diff:.2e}")
    return VerificationReport(texts=len(ids), parity_max_abs_diff=parity, invariance_max_abs_diff=worst,
                              invariance_cases=cases)


def load_best_model(run_dir: Path) -> BiLSTMClassifier:
    from training.model import ModelConfig

    state = torch.load(run_dir / "checkpoints" / "best.pt", map_location="cpu", weights_only=False)
    model = BiLSTMClassifier(ModelConfig(**state["model_config"]))
    model.load_state_dict(state["model"])
    return model.eval()


def verification_texts(examples: list, count: int = 48) -> list[str]:
    """Real texts spread over the whole length range: shortest, longest (truncated) and between."""
    by_length = sorted((ex.text for ex in examples), key=len)
    if len(by_length) <= count:
        return by_length
    step = (len(by_length) - 1) / (count - 1)
    return [by_length[round(i * step)] for i in range(count)]


def export_run(run_dir: Path, model_dir: Path, name: str, version: str, command: str) -> dict[str, Any]:
    """Export ``run_dir``'s best checkpoint to a verified model directory; returns the model card."""
    run = json.loads((run_dir / "run.json").read_text())
    model = load_best_model(run_dir)
    tokenizer = Tokenizer.from_file(str(run_dir / "tokenizer.json"))
    split = split_dataset(load_from_spec(run["data"]["spec"]), seed=run["data"]["split_seed"])
    if digest_of_hashes(split.hashes["validation"]) != run["data"]["split_sha256"]["validation"]:
        raise ExportVerificationError("the corpus no longer gives the split this run was trained on")
    ids = [enc.ids for enc in tokenizer.encode_batch(verification_texts(split.validation))]

    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=model_dir.parent))
    try:
        onnx_path = staging / "model.onnx"
        onnx.save(build_onnx(model, {"vocab_size": str(tokenizer.get_vocab_size()), "labels": json.dumps(
            run["labels"]), "name": name, "version": version}), onnx_path)
        report = verify_export(model, onnx_path, ids)
        log.info("export verified: %s", report)
        for src, filename in ((onnx_path, "model.onnx"), (run_dir / "tokenizer.json", "tokenizer.json"),
                              (run_dir / "splits.tsv", "splits.tsv")):
            shutil.copyfile(src, model_dir / filename)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    history = json.loads((run_dir / "history.json").read_text())
    card = {
        "name": name,
        "version": version,
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "task": "sentiment classification (single label)",
        "labels": run["labels"],
        "max_tokens": run["train_config"]["max_tokens"],
        "truncation": {"side": TRUNCATION_SIDE_NAME,
                       "policy": f"texts longer than {run['train_config']['max_tokens']} tokens keep their LAST "
                                 f"{run['train_config']['max_tokens']} tokens; the service flags them truncated"},
        "tokenizer": {"type": "word level (Hugging Face tokenizers)", "vocab_size": tokenizer.get_vocab_size(),
                      "normalisation": "<br /> -> space, NFKC, lower case",
                      "pre_tokenisation": "words (with inner apostrophes) and single non-space symbols",
                      "unknown_token": "[UNK]", "padding_id": 0},
        "inputs": {INPUT_IDS: "int64 (batch, sequence): token ids right-padded with 0",
                   LENGTHS: "int64 (batch): true token counts (0 is scored as one padding token)"},
        "outputs": {LOGITS: "float32 (batch, labels)", PROBABILITIES: "float32 (batch, labels), softmax"},
        "architecture": {"type": "embedding -> bidirectional LSTM (true lengths) -> max+mean pooling -> linear",
                         **run["model_config"]},
        "training": {**run["train_config"], **run.get("training", {}), "history": history},
        "data": run["data"],
        "export": {"opset": OPSET, "graph": "ONNX LSTM with sequence_lens (exact packed semantics)",
                   "verification": asdict(report), "parity_tolerance": PARITY_TOLERANCE,
                   "invariance_tolerance": INVARIANCE_TOLERANCE},
        "quantization": {"int8": {"tried": False}},
        "files": {f: {"sha256": file_sha256(model_dir / f), "bytes": (model_dir / f).stat().st_size}
                  for f in ("model.onnx", "tokenizer.json", "splits.tsv")},
        "metrics": {},
        "reproduce": command,
    }
    (model_dir / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    (model_dir / "README.md").write_text(render_card_readme(card))
    return card


def _int8_summary(q: dict[str, Any]) -> str:
    if not q.get("tried"):
        return "not tried (`python -m training all --int8` tries it)."
    return (f"tried, {'kept' if q['kept'] else 'not kept'}: test accuracy {q['accuracy_int8']:.4f} vs "
            f"{q['accuracy_fp32']:.4f} in float32; a text's probabilities moved by up to "
            f"{q['invariance_max_abs_diff_int8']:.1e} with its batch neighbours (limit {INVARIANCE_TOLERANCE:.0e}: "
            f"dynamic quantization scales activations over the whole batch); {q['bytes_int8'] / 1e6:.1f} MB. "
            f"Rule: {q['rule']}.")


def render_card_readme(card: dict[str, Any]) -> str:
    """The human-readable model card, generated from model_card.json (the source of truth)."""
    arch, train, data = card["architecture"], card["training"], card["data"]
    lines = [
        f"# Model card: {card['name']} {card['version']}",
        "",
        f"{card['task'].capitalize()}. Labels: {', '.join(f'`{x}`' for x in card['labels'])}.",
        f"Architecture: {arch['type']}; embedding {arch['embedding_dim']}, hidden {arch['hidden_size']} per "
        f"direction, {arch['num_layers']} layer(s), vocabulary {arch['vocab_size']:,}, dropout {arch['dropout']}.",
        "",
        f"- Max tokens: {card['max_tokens']}. Truncation: {card['truncation']['policy']}.",
        f"- Tokenizer: {card['tokenizer']['normalisation']}; {card['tokenizer']['pre_tokenisation']}.",
        f"- Export: opset {card['export']['opset']}, {card['export']['graph']}; verified on "
        f"{card['export']['verification']['texts']} real texts: max |ONNX - PyTorch packed| = "
        f"{card['export']['verification']['parity_max_abs_diff']:.1e}, max batch-invariance deviation = "
        f"{card['export']['verification']['invariance_max_abs_diff']:.1e} over "
        f"{card['export']['verification']['invariance_cases']} cases.",
        f"- int8 dynamic quantization: {_int8_summary(card['quantization']['int8'])}",
        "",
        "## Test metrics (exported ONNX model, held-out test split)",
        "",
    ]
    test = card.get("metrics", {}).get("test")
    if test:
        lines += ["| metric | value |", "|---|---|",
                  f"| examples | {test['examples']:,} |", f"| accuracy | {test['accuracy']:.4f} |",
                  f"| macro-F1 | {test['macro_f1']:.4f} |", f"| ECE ({ECE_BINS_NOTE}) | {test['ece']:.4f} |",
                  f"| log loss | {test['log_loss']:.4f} |"]
        lines += [f"| {name}: precision / recall | {m['precision']:.4f} / {m['recall']:.4f} |"
                  for name, m in test["per_class"].items()]
        lines += ["", f"Confusion matrix (rows true, columns predicted, order {test['confusion_matrix']['labels']}): "
                  f"`{test['confusion_matrix']['rows_true_columns_predicted']}`."]
    else:
        lines.append("Not evaluated yet: run `python -m training evaluate`.")
    lines += [
        "",
        "## Data",
        "",
        f"- Source: {data['source']} ({data['dropped_duplicates']} duplicate texts dropped before splitting).",
        f"- Split (stratified, keyed by sha256(seed + text), seed `{data['split_seed']}`): "
        + ", ".join(f"{k} {v:,}" for k, v in data["split_sizes"].items()) + ".",
        "- `splits.tsv` lists the sha256 of every text per split; digests of the sorted lists: "
        + ", ".join(f"{k} `{v[:16]}...`" for k, v in data["split_sha256"].items()) + ".",
        "",
        "## Training",
        "",
        f"- Device: {train.get('device')}; {train.get('epochs_run')} epochs run, best epoch {train.get('best_epoch')} "
        f"(validation accuracy {train.get('best_val_accuracy', 0):.4f}); {train.get('train_seconds')} s of training.",
        f"- AdamW lr {train['learning_rate']}, weight decay {train['weight_decay']}, batch {train['batch_size']}, "
        f"grad clip {train['grad_clip']}, early stopping patience {train['patience']}, seed {train['seed']}, "
        f"vocabulary from the training split only (min frequency {train['min_frequency']}).",
        "",
        "## Files",
        "",
        "| file | bytes | sha256 |",
        "|---|---|---|",
        *[f"| `{name}` | {f['bytes']:,} | `{f['sha256']}` |" for name, f in card["files"].items()],
        "",
        "## Reproduce",
        "",
        f"```\n{card['reproduce']}\n```",
        "",
    ]
    return "\n".join(lines)


def try_int8(model_dir: Path) -> dict[str, Any]:
    """Quantize model.onnx to int8 (dynamic) and keep it only if it loses <= 0.3 accuracy points on the test
    split AND stays batch-invariant within 1e-5; the measured outcome goes into the card either way."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from service.predictor import Predictor
    from training.evaluate import evaluate_model_dir, score, test_split_of

    card = json.loads((model_dir / CARD_FILE).read_text())
    fp32_accuracy = card["metrics"]["test"]["accuracy"]
    staging = Path(tempfile.mkdtemp(prefix=".int8-", dir=model_dir.parent))
    try:
        quantize_dynamic(model_dir / "model.onnx", staging / "model.onnx", weight_type=QuantType.QInt8)
        shutil.copyfile(model_dir / "tokenizer.json", staging / "tokenizer.json")
        staged = json.loads(json.dumps(card))
        staged["files"]["model.onnx"] = {"sha256": file_sha256(staging / "model.onnx"),
                                         "bytes": (staging / "model.onnx").stat().st_size}
        (staging / CARD_FILE).write_text(json.dumps(staged))
        predictor = Predictor.load(staging, provider="cpu")
        examples = test_split_of(card)
        probs = score(predictor, examples)
        accuracy = float((probs.argmax(axis=1) == np.array([ex.label for ex in examples])).mean())
        texts = verification_texts(examples, 24)
        longest = sorted(texts, key=len)[-3:]
        invariance = max(
            float(np.abs(np.array(list(predictor.predict([t])[0].probabilities.values()))
                         - np.array(list(predictor.predict([t, *longest])[0].probabilities.values()))).max())
            for t in texts)
        kept = fp32_accuracy - accuracy <= 0.003 and invariance <= INVARIANCE_TOLERANCE
        record = {"tried": True, "kept": kept, "accuracy_fp32": fp32_accuracy, "accuracy_int8": accuracy,
                  "invariance_max_abs_diff_int8": invariance, "bytes_int8": staged["files"]["model.onnx"]["bytes"],
                  "rule": "kept only if accuracy drops <= 0.3 points and batch invariance holds within 1e-5"}
        log.info("int8: %s", record)
        if kept:
            shutil.copyfile(staging / "model.onnx", model_dir / "model.onnx")
            card["files"]["model.onnx"] = staged["files"]["model.onnx"]
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    card["quantization"] = {"int8": record}
    (model_dir / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    (model_dir / "README.md").write_text(render_card_readme(card))
    if kept:
        evaluate_model_dir(model_dir, update_card=True)
    return record
