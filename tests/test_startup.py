"""Start-up checks of the model directory and the execution provider."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient

from model_runtime import ModelLoadError, Predictor, file_sha256
from service.app import create_app
from service.config import Settings


def _reseal(model_dir: Path, name: str) -> None:
    """Record a file's new hash in the card, so that only the deeper check can catch the damage."""
    card = json.loads((model_dir / "model_card.json").read_text())
    card["files"][name]["sha256"] = file_sha256(model_dir / name)
    (model_dir / "model_card.json").write_text(json.dumps(card))


def _break_hash(d: Path) -> None:
    with (d / "model.onnx").open("ab") as f:
        f.write(b"\0")


def _corrupt_model(d: Path) -> None:
    (d / "model.onnx").write_bytes(b"this is not an onnx file")
    _reseal(d, "model.onnx")


def _mismatched_tokenizer(d: Path) -> None:
    """The tokenizer loses its last 10 tokens (and, for sub-words, the merges that make them)."""
    tok = json.loads((d / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    dropped = list(vocab)[-10:]
    for word in dropped:
        del vocab[word]
    if "merges" in tok["model"]:
        tok["model"]["merges"] = [m for m in tok["model"]["merges"] if "".join(m) not in dropped]
    (d / "tokenizer.json").write_text(json.dumps(tok))
    _reseal(d, "tokenizer.json")


def _edit_card(d: Path, **fields: object) -> None:
    card = json.loads((d / "model_card.json").read_text())
    (d / "model_card.json").write_text(json.dumps({**card, **fields}))


def _card_a_directory(d: Path) -> None:
    (d / "model_card.json").unlink()
    (d / "model_card.json").mkdir()


def _model_a_symlink_loop(d: Path) -> None:
    (d / "model.onnx").unlink()
    (d / "model.onnx").symlink_to(d / "model.onnx")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: shutil.rmtree(d), "does not exist"),
        (lambda d: (d / "model_card.json").unlink(), "model_card.json is missing"),
        (lambda d: (d / "model_card.json").write_text("{not json"), "not valid JSON"),
        (lambda d: (d / "model.onnx").unlink(), "model.onnx is missing"),
        (_break_hash, "does not match the model card"),
        (_corrupt_model, "onnxruntime cannot load it"),
        (_mismatched_tokenizer, "tokenizer has"),
        (lambda d: _edit_card(d, version=3), "'version' must be a non-empty string, not int"),
        (lambda d: _edit_card(d, name={"a": 1}), "'name' must be a non-empty string, not dict"),
        (lambda d: _edit_card(d, name=" "), "'name' must be a non-empty string"),
        (lambda d: _edit_card(d, labels=["negative", "negative", "positive"]), "labels must be unique"),
        (lambda d: _edit_card(d, labels=["negative", ""]), "every label must be a non-empty string"),
        (lambda d: _edit_card(d, max_tokens=-5), "'max_tokens' must be a positive integer, not -5"),
        (lambda d: _edit_card(d, max_tokens=True), "'max_tokens' must be a positive integer"),
        (lambda d: _edit_card(d, files={"model.onnx": {"sha256": "abc", "bytes": 1}}), "sha256 of 64 hexadecimal"),
        (lambda d: _edit_card(d, metrics=[]), "'metrics' must be dict, not list"),
        (lambda d: _edit_card(d, languages=[""]), "'languages' must be language codes"),
        (_card_a_directory, "model_card.json is not a file"),
        (lambda d: (d / "model_card.json").write_text("[" * 100_000 + "]" * 100_000), "nested too deep"),
        (_model_a_symlink_loop, r"the model directory cannot be read|model.onnx is"),
    ],
)
def test_a_bad_model_directory_stops_start_up(model_copy: Path, damage: Callable[[Path], object], message: str) -> None:
    damage(model_copy)
    app = create_app(Settings(model_dir=model_copy))
    with pytest.raises(ModelLoadError, match=message) as info, TestClient(app):
        pass
    assert "\n" not in str(info.value) and str(model_copy) not in str(info.value)  # one line, no path


def test_a_name_too_long_is_a_load_error_not_a_crash(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"cannot be read|does not exist") as info:
        Predictor.load(tmp_path / ("x" * 300))
    assert "x" * 300 not in str(info.value)


def test_cuda_fails_loudly_when_it_cannot_run(tiny_model_dir: Path) -> None:
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this host has a CUDA-capable onnxruntime; the CPU-only failure path cannot be shown")
    with pytest.raises(ModelLoadError, match="no CUDA provider"):
        Predictor.load(tiny_model_dir, provider="cuda")


def test_auto_and_cpu_use_the_cpu_provider_here(tiny_model_dir: Path) -> None:
    expected = (
        "CUDAExecutionProvider"
        if "CUDAExecutionProvider" in ort.get_available_providers()
        else ("CPUExecutionProvider")
    )
    assert Predictor.load(tiny_model_dir, provider="auto").provider in {expected, "CPUExecutionProvider"}
    cpu = Predictor.load(tiny_model_dir, provider="cpu", intra_op_threads=1)
    assert cpu.provider == "CPUExecutionProvider"
    assert cpu.session.get_providers() == ["CPUExecutionProvider"]


def test_settings_come_from_sentiment_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SENTIMENT_MAX_CLIENT_BATCH", "7")
    monkeypatch.setenv("SENTIMENT_PROVIDER", "cpu")
    monkeypatch.setenv("SENTIMENT_MODEL_DIR", str(tmp_path))
    monkeypatch.setenv("SENTIMENT_API_KEY", "s3cret-value")
    settings = Settings()
    assert (settings.max_client_batch, settings.provider, settings.model_dir) == (7, "cpu", tmp_path)
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "s3cret-value"
    assert "s3cret-value" not in repr(settings)
    monkeypatch.setenv("SENTIMENT_PROVIDER", "tpu")
    with pytest.raises(ValueError, match="provider"):
        Settings()
    monkeypatch.setenv("SENTIMENT_PROVIDER", "cpu")
    monkeypatch.setenv("SENTIMENT_MAX_QUEUE", "3")
    with pytest.raises(ValueError, match=r"MAX_QUEUE \(3\) must be at least SENTIMENT_MAX_CLIENT_BATCH \(7\)"):
        Settings()
