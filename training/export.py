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
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer

from model_runtime.contract import (
    INPUT_IDS,
    LENGTHS,
    LOGITS,
    MODEL_FILE,
    PROBABILITIES,
    TOKENIZER_FILE,
    pad_ids,
)
from training.data import Example
from training.model import BiLSTMClassifier, ModelConfig

log = logging.getLogger(__name__)

OPSET = 17
EMBEDDING = "embedding"  # the graph's (V, E) float16 table
WORD_PRIOR, PRIOR_DIRECTION = "word_prior", "prior_direction"  # (V,) float32 column and (E,) direction
PARITY_TOLERANCE = 1e-4
INVARIANCE_TOLERANCE = 1e-5

# torch stores LSTM gates as (input, forget, cell, output); ONNX as (input, output, forget, cell).
_TORCH_TO_ONNX_GATES = (0, 3, 1, 2)


class ExportVerificationError(RuntimeError):
    """The ONNX graph does not reproduce the PyTorch model; nothing is written."""


def embedding_table(model: BiLSTMClassifier) -> np.ndarray:
    """The (V, E) float32 table the network's embedding amounts to."""
    with torch.no_grad():
        table: np.ndarray = model.embedding.table().cpu().numpy()
    return table


def as_served(model: BiLSTMClassifier) -> BiLSTMClassifier:
    """A copy of ``model`` that computes exactly what the exported graph does: its embedding one plain
    table, rounded to float16 as the graph stores it (the reference for the parity proof)."""
    served = BiLSTMClassifier(replace(model.config, vector_dim=0))
    kept = ("embedding.prior", "embedding.prior_direction")  # the word prior stays as it is (float32)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("embedding.") or k in kept}
    rounded = torch.from_numpy(embedding_table(model).astype(np.float16).astype(np.float32))
    served.load_state_dict({**state, "embedding.residual.weight": rounded})
    served.temperature_log_scale = model.temperature_log_scale
    served.temperature_log_slope = model.temperature_log_slope
    return served.eval()


def _onnx_gates(weight: np.ndarray, hidden: int, order: Sequence[int] = _TORCH_TO_ONNX_GATES) -> np.ndarray:
    """The four gate blocks of ``weight`` (4H, ...) put in ``order`` (PyTorch's to ONNX's by default)."""
    blocks = [weight[g * hidden : (g + 1) * hidden] for g in order]
    return np.concatenate(blocks, axis=0)


def _lstm_initializers(lstm: torch.nn.LSTM, layer: int) -> list[np.ndarray]:
    """W (2, 4H, in), R (2, 4H, H) and B (2, 8H) for one bidirectional layer, in ONNX gate order."""
    hidden = lstm.hidden_size
    ws, rs, bs = [], [], []
    for suffix in ("", "_reverse"):
        p = {
            n: getattr(lstm, f"{n}_l{layer}{suffix}").detach().cpu().numpy()
            for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        }
        ws.append(_onnx_gates(p["weight_ih"], hidden))
        rs.append(_onnx_gates(p["weight_hh"], hidden))
        bs.append(np.concatenate([_onnx_gates(p["bias_ih"], hidden), _onnx_gates(p["bias_hh"], hidden)]))
    return [np.stack(ws), np.stack(rs), np.stack(bs)]


class _Constants:
    """The graph's initializers, named as they are added."""

    def __init__(self) -> None:
        self.tensors: list[onnx.TensorProto] = []

    def __call__(self, name: str, value: np.ndarray) -> str:
        self.tensors.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name


def _encoder_nodes(model: BiLSTMClassifier, const: _Constants) -> list[onnx.NodeProto]:
    """input_ids, lengths -> ``states`` (B, T, 2H): embedding, then each bidirectional LSTM layer over
    exactly each text's first ``lengths`` steps (``sequence_lens``)."""
    table = embedding_table(model).astype(np.float16)  # (V, E), stored at half the bytes
    embedded = "embedded_all" if model.config.word_prior else "embedded"
    nodes = [
        helper.make_node("Max", [LENGTHS, const("one", np.array(1, np.int64))], ["lengths_min1"]),
        helper.make_node("Cast", ["lengths_min1"], ["seq_lens"], to=TensorProto.INT32),
        helper.make_node("Gather", [const(EMBEDDING, table), INPUT_IDS], ["embedded16"]),  # (B, T, E) float16
        helper.make_node("Cast", ["embedded16"], ["embedded"], to=TensorProto.FLOAT),
        *(_prior_nodes(model, const) if model.config.word_prior else []),
        helper.make_node("Transpose", [embedded], ["x0"], perm=[1, 0, 2]),  # (T, B, E)
    ]
    x = "x0"
    for layer in range(model.config.num_layers):
        w, r, b = _lstm_initializers(model.lstm, layer)
        inputs = [x, const(f"W{layer}", w), const(f"R{layer}", r), const(f"B{layer}", b), "seq_lens"]
        shape = const(f"shape{layer}", np.array([0, 0, -1], np.int64))
        nodes += [
            helper.make_node(
                "LSTM", inputs, [f"y{layer}"], direction="bidirectional", hidden_size=model.config.hidden_size
            ),  # (T, 2, B, H)
            helper.make_node("Transpose", [f"y{layer}"], [f"yt{layer}"], perm=[0, 2, 1, 3]),  # (T, B, 2, H)
            helper.make_node("Reshape", [f"yt{layer}", shape], [f"x{layer + 1}"]),  # (T, B, 2H)
        ]
        x = f"x{layer + 1}"
    return [*nodes, helper.make_node("Transpose", [x], ["states"], perm=[1, 0, 2])]  # (B, T, 2H)


def _prior_nodes(model: BiLSTMClassifier, const: _Constants) -> list[onnx.NodeProto]:
    """embedded (B, T, E) -> ``embedded_all``: plus each token's word-list value (the frozen (V,) column,
    stored in float32 as training holds it) times the learned direction (E,)."""
    prior = model.embedding.prior.detach().cpu().numpy().astype(np.float32)
    direction = model.embedding.prior_direction.detach().cpu().numpy().astype(np.float32)
    return [
        helper.make_node("Gather", [const(WORD_PRIOR, prior), INPUT_IDS], ["prior_values"]),  # (B, T)
        helper.make_node("Unsqueeze", ["prior_values", const("axes_last", np.array([2], np.int64))], ["prior3"]),
        helper.make_node("Mul", ["prior3", const(PRIOR_DIRECTION, direction)], ["prior_part"]),  # (B, T, E)
        helper.make_node("Add", ["embedded", "prior_part"], ["embedded_all"]),
    ]


def _pooling_nodes(const: _Constants, hidden: int, ends: bool) -> list[onnx.NodeProto]:
    """states (B, T, 2H) -> ``features`` (B, 4H): max and mean over each text's real positions only; with
    ``ends``, (B, 6H): also the forward state at the last real token and the backward state at the first."""
    pooled = ["pooled_max", "pooled_mean", *(["last_forward", "first_backward"] if ends else [])]
    return [
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
        *(_end_state_nodes(const, hidden) if ends else []),
        helper.make_node("Concat", pooled, ["features"], axis=1),  # (B, 4H or 6H)
    ]


def _end_state_nodes(const: _Constants, hidden: int) -> list[onnx.NodeProto]:
    """``last_forward`` (B, H): states[b, length-1, :H]; ``first_backward`` (B, H): states[b, 0, H:]."""
    return [
        helper.make_node("Sub", ["lengths_col", "one"], ["last_position"]),  # (B, 1)
        helper.make_node("Unsqueeze", ["last_position", "axes2"], ["last_position3"]),  # (B, 1, 1)
        helper.make_node(
            "Expand", ["last_position3", const("width", np.array([1, 1, 2 * hidden], np.int64))], ["last_index"]
        ),  # (B, 1, 2H)
        helper.make_node("GatherElements", ["states", "last_index"], ["last_states"], axis=1),  # (B, 1, 2H)
        helper.make_node("Squeeze", ["last_states", "axes1"], ["last_both"]),  # (B, 2H)
        helper.make_node(
            "Slice",
            ["last_both", const("h0", np.array([0], np.int64)), const("h1", np.array([hidden], np.int64)), "axes1"],
            ["last_forward"],
        ),  # (B, H)
        helper.make_node(
            "Slice",
            [
                "states",
                const("first_starts", np.array([0, hidden], np.int64)),
                const("first_ends", np.array([1, 2 * hidden], np.int64)),
                const("axes12", np.array([1, 2], np.int64)),
            ],
            ["first_slice"],
        ),  # (B, 1, H)
        helper.make_node("Squeeze", ["first_slice", "axes1"], ["first_backward"]),  # (B, H)
    ]


def build_onnx(model: BiLSTMClassifier, metadata: dict[str, str] | None = None) -> onnx.ModelProto:
    """The inference graph of ``model`` (eval mode: no dropout), with dynamic batch and sequence axes."""
    const = _Constants()
    weight, bias = model.head.weight.detach().cpu().numpy(), model.head.bias.detach().cpu().numpy()
    scale, slope = model.temperature_log_scale, model.temperature_log_slope
    nodes = [
        *_encoder_nodes(model, const),
        *_pooling_nodes(const, model.config.hidden_size, model.config.ends),
        helper.make_node("Gemm", ["features", const("head_w", weight), const("head_b", bias)], ["raw"], transB=1),
        # temperature scaling per text: logits = raw / exp(scale + slope * ln length)
        helper.make_node("Log", ["lengths_f"], ["log_length"]),  # (B, 1)
        helper.make_node("Mul", ["log_length", const("t_slope", np.array(slope, np.float32))], ["t_tilt"]),
        helper.make_node("Add", ["t_tilt", const("t_scale", np.array(scale, np.float32))], ["log_t"]),
        helper.make_node("Exp", ["log_t"], ["temperature"]),
        helper.make_node("Div", ["raw", "temperature"], [LOGITS]),
        helper.make_node("Softmax", [LOGITS], [PROBABILITIES], axis=1),
    ]
    classes = model.config.num_classes
    graph = helper.make_graph(
        nodes,
        "bilstm_sentiment",
        inputs=[
            helper.make_tensor_value_info(INPUT_IDS, TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info(LENGTHS, TensorProto.INT64, ["batch"]),
        ],
        outputs=[
            helper.make_tensor_value_info(LOGITS, TensorProto.FLOAT, ["batch", classes]),
            helper.make_tensor_value_info(PROBABILITIES, TensorProto.FLOAT, ["batch", classes]),
        ],
        initializer=const.tensors,
    )
    proto = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="sentiment-service training.export"
    )
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
    float16_table_max_abs_diff: float  # what storing the embedding in float16 moved (not a tolerance)


def verify_export(model: BiLSTMClassifier, onnx_path: Path, ids: list[list[int]]) -> VerificationReport:
    """Check parity with PyTorch's packed-sequence computation of the served network (``as_served``) and
    batch invariance on the given token-id lists (mixed lengths)."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])

    def run(batch_ids: list[list[int]], extra_steps: int = 0) -> np.ndarray:
        batch, lengths = pad_ids(batch_ids, extra_steps)
        probs: np.ndarray = session.run([PROBABILITIES], {INPUT_IDS: batch, LENGTHS: lengths})[0]
        return probs

    def torch_probs(network: BiLSTMClassifier) -> np.ndarray:
        batch, lengths = (torch.from_numpy(a) for a in pad_ids(ids))
        with torch.no_grad():
            return torch.softmax(network(batch, lengths, packed=True), dim=1).numpy()

    reference = torch_probs(as_served(model))
    rounding = float(np.abs(torch_probs(model.eval()) - reference).max())
    parity = float(np.abs(run(ids) - reference).max())
    if not parity <= PARITY_TOLERANCE:
        raise ExportVerificationError(
            f"ONNX Runtime differs from the PyTorch packed-sequence model by {parity:.2e} "
            f"(tolerance {PARITY_TOLERANCE:.0e}) on {len(ids)} texts"
        )

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
                    f"({where}; tolerance {INVARIANCE_TOLERANCE:.0e})"
                )
    # Every row of the full mixed batch must also match its own single-text run.
    full = run(ids)
    for row, x in enumerate(ids):
        diff = float(np.abs(full[row] - run([x])[0]).max())
        worst, cases = max(worst, diff), cases + 1
        if not diff <= INVARIANCE_TOLERANCE:
            raise ExportVerificationError(
                f"batch invariance broken at row {row} of a {len(ids)}-text batch: {diff:.2e}"
            )
    return VerificationReport(len(ids), parity, worst, cases, rounding)


def load_best_model(run_dir: Path) -> BiLSTMClassifier:
    """A run's best network from its directory (``python -m training export``), temperature set."""
    run = json.loads((run_dir / "run.json").read_text())
    state = torch.load(run_dir / "checkpoints" / "best.pt", map_location="cpu", weights_only=False)
    model = BiLSTMClassifier(ModelConfig(**run["model_config"]))
    model.load_state_dict(state["model"])
    temperature = state.get("temperature", {})
    model.temperature_log_scale = float(temperature.get("log_scale", 0.0))
    model.temperature_log_slope = float(temperature.get("log_slope", 0.0))
    return model.eval()


def verification_texts(examples: list[Example], count: int = 48) -> list[str]:
    """Real texts spread over the whole length range: shortest, longest (truncated) and between."""
    by_length = sorted((ex.text for ex in examples), key=len)
    if len(by_length) <= count:
        return by_length
    step = (len(by_length) - 1) / (count - 1)
    return [by_length[round(i * step)] for i in range(count)]


def export_model(
    model: BiLSTMClassifier, tokenizer: Tokenizer, model_dir: Path, examples: list[Example], metadata: dict[str, str]
) -> VerificationReport:
    """Write ``model`` as ``model.onnx`` and its ``tokenizer.json`` into ``model_dir``, but only once the
    graph is proven exact on ``examples`` (``verify_export``); returns the proof."""
    ids = [enc.ids for enc in tokenizer.encode_batch(verification_texts(examples))]
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=model_dir.parent))
    try:
        onnx_path = staging / MODEL_FILE
        onnx.save(build_onnx(model, {"vocab_size": str(tokenizer.get_vocab_size()), **metadata}), onnx_path)
        report = verify_export(model, onnx_path, ids)
        log.info("export verified: %s", report)
        shutil.copyfile(onnx_path, model_dir / MODEL_FILE)
        tokenizer.save(str(model_dir / TOKENIZER_FILE))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report


def model_from_onnx(path: Path) -> BiLSTMClassifier:
    """The PyTorch network that ``model.onnx`` holds, rebuilt from its initializers (adapting a shipped
    model starts from it): the embedding as one plain table, the LSTM gates back in PyTorch's order, the
    head and the temperature. A test proves it reproduces the graph within the export tolerance."""
    weights = {t.name: numpy_helper.to_array(t).astype(np.float32) for t in onnx.load(str(path)).graph.initializer}
    layers = sum(1 for name in weights if name.startswith("W") and name[1:].isdigit())
    vocab, dim = weights[EMBEDDING].shape
    hidden = weights["R0"].shape[-1]
    ends = weights["head_w"].shape[1] == 6 * hidden
    prior = WORD_PRIOR in weights
    config = ModelConfig(vocab, weights["head_b"].shape[0], dim, hidden, layers, ends=ends, word_prior=prior)
    model = BiLSTMClassifier(config)
    state = {
        "embedding.residual.weight": weights[EMBEDDING],
        "head.weight": weights["head_w"],
        "head.bias": weights["head_b"],
    }
    if prior:
        state["embedding.prior"] = weights[WORD_PRIOR]
        state["embedding.prior_direction"] = weights[PRIOR_DIRECTION]
    back = [int(g) for g in np.argsort(_TORCH_TO_ONNX_GATES)]  # ONNX gate order -> PyTorch's
    for layer in range(layers):
        w, r, b = weights[f"W{layer}"], weights[f"R{layer}"], weights[f"B{layer}"]
        for d, suffix in enumerate(("", "_reverse")):
            state[f"lstm.weight_ih_l{layer}{suffix}"] = _onnx_gates(w[d], hidden, back)
            state[f"lstm.weight_hh_l{layer}{suffix}"] = _onnx_gates(r[d], hidden, back)
            state[f"lstm.bias_ih_l{layer}{suffix}"] = _onnx_gates(b[d][: 4 * hidden], hidden, back)
            state[f"lstm.bias_hh_l{layer}{suffix}"] = _onnx_gates(b[d][4 * hidden :], hidden, back)
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()})
    model.temperature_log_scale = float(weights["t_scale"].item())
    model.temperature_log_slope = float(weights["t_slope"].item())
    return model.eval()
