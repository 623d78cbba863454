"""Export: the ONNX graph equals the packed PyTorch model and is batch-invariant, or export fails."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from model_runtime import Predictor, file_sha256
from training.data import Split
from training.export import ExportVerificationError, build_onnx, load_best_model, verify_export
from training.model import BiLSTMClassifier, ModelConfig


def real_ids(model_dir: Path, texts: list[str]) -> list[list[int]]:
    return [e.ids for e in Predictor.load(model_dir, provider="cpu").encode(texts)]


def mixed_length_texts(imdb_split: Split) -> list[str]:
    texts = sorted((ex.text for ex in imdb_split.validation), key=len)
    return [texts[i] for i in range(0, len(texts), len(texts) // 40)] + ["!", "<br />"]


@pytest.mark.parametrize("layers", [1, 2])
def test_graph_matches_packed_torch_and_is_batch_invariant(
    tmp_path: Path, tiny_run: Path, tiny_model_dir: Path, imdb_split: Split, layers: int
) -> None:
    torch.manual_seed(layers)
    vocab = json.loads((tiny_model_dir / "model_card.json").read_text())["tokenizer"]["vocab_size"]
    model = BiLSTMClassifier(
        ModelConfig(vocab_size=vocab, num_classes=2, embedding_dim=8, hidden_size=8, num_layers=layers)
    ).eval()
    path = tmp_path / "m.onnx"
    onnx.save(build_onnx(model), path)
    report = verify_export(model, path, real_ids(tiny_model_dir, mixed_length_texts(imdb_split)))
    assert report.parity_max_abs_diff <= 1e-4
    assert report.invariance_max_abs_diff <= 1e-5
    assert report.invariance_cases > 40


def test_a_wrong_graph_is_caught(tmp_path: Path, tiny_run: Path, tiny_model_dir: Path, imdb_split: Split) -> None:
    """Swap the LSTM directions in the graph: verification must refuse it."""
    model = load_best_model(tiny_run)
    broken = load_best_model(tiny_run)
    with torch.no_grad():
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            forward, backward = getattr(broken.lstm, name), getattr(broken.lstm, name + "_reverse")
            tmp = forward.clone()
            forward.copy_(backward)
            backward.copy_(tmp)
    path = tmp_path / "broken.onnx"
    onnx.save(build_onnx(broken), path)
    with pytest.raises(ExportVerificationError, match="differs from the PyTorch packed-sequence model"):
        verify_export(model, path, real_ids(tiny_model_dir, mixed_length_texts(imdb_split)))


def test_exported_directory_is_complete_and_consistent(tiny_model_dir: Path) -> None:
    card = json.loads((tiny_model_dir / "model_card.json").read_text())
    for name in ("model.onnx", "tokenizer.json", "splits.tsv"):
        assert card["files"][name]["sha256"] == file_sha256(tiny_model_dir / name)
    assert card["labels"] == ["negative", "positive"]
    assert card["truncation"]["side"] == "keep_end"
    assert card["export"]["verification"]["parity_max_abs_diff"] <= 1e-4
    assert 0.0 <= card["metrics"]["test"]["accuracy"] <= 1.0
    session_inputs = onnx.load(tiny_model_dir / "model.onnx").graph.input
    dims = [[d.dim_param for d in i.type.tensor_type.shape.dim] for i in session_inputs]
    assert dims == [["batch", "sequence"], ["batch"]]  # dynamic batch and sequence axes
    assert "Not evaluated" not in (tiny_model_dir / "README.md").read_text()


def test_onnx_runs_any_batch_and_length(tiny_model_dir: Path) -> None:
    predictor = Predictor.load(tiny_model_dir, provider="cpu")
    rng = random.Random(0)
    for batch, steps in ((1, 1), (3, 500), (33, 17)):
        ids = [[rng.randrange(2, 100) for _ in range(steps)] for _ in range(batch)]
        probs = predictor.probabilities(ids)
        assert probs.shape == (batch, 2)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
