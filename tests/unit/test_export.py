"""Export: the ONNX graph equals the packed PyTorch model and is batch-invariant, or export fails; and the
network is rebuilt exactly from the graph (what adapting a shipped model starts from)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from tokenizers import Tokenizer

from model_runtime import Predictor, pad_ids
from tests.support import UNIT_TEXTS, make_model_dir
from training.export import ExportVerificationError, build_onnx, model_from_onnx, verify_export
from training.model import BiLSTMClassifier, ModelConfig
from training.tokenizer import train_tokenizer

TEXTS = [*UNIT_TEXTS, "!", "<br />", "", " ".join(UNIT_TEXTS * 4)]


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return train_tokenizer(UNIT_TEXTS * 2, vocab_size=300, max_tokens=120, min_frequency=1, pieces=100)


def ids_of(tokenizer: Tokenizer) -> list[list[int]]:
    return [e.ids for e in tokenizer.encode_batch(TEXTS)]


def random_model(
    vocab: int, layers: int = 1, ends: bool = False, vectors: bool = True, seed: int = 0, prior: bool = False
) -> BiLSTMClassifier:
    torch.manual_seed(seed)
    config = ModelConfig(
        vocab,
        2,
        embedding_dim=8,
        hidden_size=8,
        num_layers=layers,
        ends=ends,
        vector_dim=5 if vectors else 0,
        word_prior=prior,
    )
    model = BiLSTMClassifier(config)
    if prior:
        model.embedding.prior.copy_(torch.randint(-5, 6, (vocab,)).float() / 5)
    if vectors:
        model.embedding.vectors.copy_(torch.randn(vocab, 5))
        with torch.no_grad():
            model.embedding.residual.weight.normal_()
    model.temperature_log_scale, model.temperature_log_slope = 0.2, 0.1
    return model.eval()


@pytest.mark.parametrize(("layers", "ends", "vectors"), [(1, False, True), (2, False, False), (1, True, True)])
def test_graph_matches_packed_torch_and_is_batch_invariant(
    tmp_path: Path, tokenizer: Tokenizer, layers: int, ends: bool, vectors: bool
) -> None:
    model = random_model(tokenizer.get_vocab_size(), layers, ends, vectors)
    path = tmp_path / "m.onnx"
    onnx.save(build_onnx(model), path)
    report = verify_export(model, path, ids_of(tokenizer))
    assert report.parity_max_abs_diff <= 1e-4
    assert report.invariance_max_abs_diff <= 1e-5
    assert report.invariance_cases > 20
    assert report.float16_table_max_abs_diff < 1e-2  # the table stored in half precision moves little
    table = next(t for t in onnx.load(str(path)).graph.initializer if t.name == "embedding")
    assert table.data_type == onnx.TensorProto.FLOAT16


def test_a_wrong_graph_is_caught(tmp_path: Path, tokenizer: Tokenizer) -> None:
    """Swap the LSTM directions in the graph: verification must refuse it."""
    model = random_model(tokenizer.get_vocab_size())
    broken = random_model(tokenizer.get_vocab_size())
    with torch.no_grad():
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            forward, backward = getattr(broken.lstm, name), getattr(broken.lstm, name + "_reverse")
            tmp = forward.clone()
            forward.copy_(backward)
            backward.copy_(tmp)
    path = tmp_path / "broken.onnx"
    onnx.save(build_onnx(broken), path)
    with pytest.raises(ExportVerificationError, match="differs from the PyTorch packed-sequence model"):
        verify_export(model, path, ids_of(tokenizer))


@pytest.mark.parametrize("ends", [False, True])
def test_the_network_is_rebuilt_exactly_from_its_graph(tmp_path: Path, tokenizer: Tokenizer, ends: bool) -> None:
    """Weights <-> ONNX round trip: the PyTorch network rebuilt from model.onnx gives onnxruntime's
    probabilities within the export tolerance, temperature included, and exports to the same graph."""
    model = random_model(tokenizer.get_vocab_size(), ends=ends)
    path = tmp_path / "m.onnx"
    onnx.save(build_onnx(model), path)
    rebuilt = model_from_onnx(path)
    assert rebuilt.config.ends == ends and rebuilt.config.vector_dim == 0
    assert (rebuilt.temperature_log_scale, rebuilt.temperature_log_slope) == pytest.approx((0.2, 0.1))
    report = verify_export(rebuilt, path, ids_of(tokenizer))
    assert report.parity_max_abs_diff <= 1e-4 and report.float16_table_max_abs_diff == 0
    again = tmp_path / "again.onnx"
    onnx.save(build_onnx(rebuilt), again)
    original = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    for t in onnx.load(str(again)).graph.initializer:
        np.testing.assert_array_equal(onnx.numpy_helper.to_array(t), original[t.name], err_msg=t.name)


def test_a_model_directory_runs_any_batch_and_length(tmp_path: Path) -> None:
    predictor = Predictor.load(make_model_dir(tmp_path / "m"), provider="cpu")
    rng = random.Random(0)
    for batch, steps in ((1, 1), (3, 500), (33, 17)):
        ids = [[rng.randrange(2, 100) for _ in range(steps)] for _ in range(batch)]
        probs = predictor.probabilities(ids)
        assert probs.shape == (batch, 2)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    _, lengths = pad_ids([[]])
    assert predictor.probabilities([[]]).shape == (1, 2) and lengths.tolist() == [0]


def test_the_word_list_column_of_the_graph_is_pytorch_s(tmp_path: Path, tokenizer: Tokenizer) -> None:
    """With the word prior, the graph holds the frozen (V,) column and its learned direction exactly as
    PyTorch has them (float32, apart from the float16 table), computes what PyTorch computes, and the
    network rebuilt from it has them back."""
    model = random_model(tokenizer.get_vocab_size(), prior=True)
    path = tmp_path / "m.onnx"
    onnx.save(build_onnx(model), path)
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    np.testing.assert_array_equal(weights["word_prior"], model.embedding.prior.numpy())
    np.testing.assert_array_equal(weights["prior_direction"], model.embedding.prior_direction.detach().numpy())
    assert weights["word_prior"].dtype == np.float32 and np.count_nonzero(weights["word_prior"]) > 0
    report = verify_export(model, path, ids_of(tokenizer))
    assert report.parity_max_abs_diff <= 1e-4 and report.invariance_max_abs_diff <= 1e-5
    rebuilt = model_from_onnx(path)
    assert rebuilt.config.word_prior
    torch.testing.assert_close(rebuilt.embedding.prior, model.embedding.prior)
    with torch.no_grad():
        model.embedding.prior.zero_()  # the column matters: without it the graph's answers differ
    with pytest.raises(ExportVerificationError):
        verify_export(model, path, ids_of(tokenizer))
