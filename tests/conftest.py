"""Shared fixtures: a tiny but real model (trained, exported, verified, evaluated) built once per session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from bench.run import free_port as pick_free_port
from training.data import Dataset, load_imdb, split_dataset
from training.evaluate import evaluate_model_dir
from training.export import export_run
from training.train import TrainConfig, train

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_MODEL = ROOT / "models" / "imdb-bilstm"
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", ROOT / "test-artifacts"))

# About 5 s of training on 2,000 reviews; reaches ~0.8 validation accuracy.
TINY_CONFIG = TrainConfig(epochs=4, batch_size=32, max_samples=2000, vocab_size=4000, max_tokens=160, seed=7,
                          learning_rate=8e-3,
                          model={"embedding_dim": 32, "hidden_size": 24, "num_layers": 1, "dropout": 0.2})


@pytest.fixture(scope="session")
def imdb() -> Dataset:
    return load_imdb()


@pytest.fixture(scope="session")
def imdb_split(imdb: Dataset):  # type: ignore[no-untyped-def]
    return split_dataset(imdb)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, imdb: Dataset) -> Path:
    run_dir = tmp_path_factory.mktemp("tiny-run")
    train(imdb, run_dir, TINY_CONFIG)
    return run_dir


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_run: Path) -> Path:
    """A real model directory (model.onnx, tokenizer.json, card with metrics), small enough for tests."""
    model_dir = tmp_path_factory.mktemp("tiny-model") / "tiny"
    export_run(tiny_run, model_dir, "tiny-bilstm", "0.0.1", command="pytest fixture")
    evaluate_model_dir(model_dir, run_dir=tiny_run, update_card=True)
    return model_dir


@pytest.fixture
def model_copy(tmp_path: Path, tiny_model_dir: Path) -> Path:
    """A private copy of the tiny model directory that a test may damage."""
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))


@pytest.fixture
def free_port() -> int:
    return pick_free_port()


def artifact_dir(name: str) -> Path:
    path = ARTIFACTS / name
    path.mkdir(parents=True, exist_ok=True)
    return path
