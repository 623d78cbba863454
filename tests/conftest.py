"""Shared fixtures: a tiny but real model (trained, exported, verified, evaluated) built once per session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.support import TINY_CONFIG, pick_free_port

os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars in training output help people, not test logs
from training.data import Dataset, Split, split_dataset
from training.pipeline import ExportSpec, ship
from training.sources import load_sources
from training.train import TrainResult, train


@pytest.fixture(scope="session")
def imdb() -> Dataset:
    return load_sources(("imdb",))


@pytest.fixture(scope="session")
def imdb_split(imdb: Dataset) -> Split:
    return split_dataset(imdb)


@pytest.fixture(scope="session")
def corpus() -> Dataset:
    """Every packaged labelled source the shipped model learns from (training.sources)."""
    return load_sources()


@pytest.fixture(scope="session")
def corpus_split(corpus: Dataset) -> Split:
    return split_dataset(corpus)


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny-run")


@pytest.fixture(scope="session")
def tiny_run(tiny_run_dir: Path, corpus: Dataset, corpus_split: Split) -> TrainResult:
    """A real (seconds-long) training run of the shipped recipe at a tiny size, on every source."""
    return train(corpus, corpus_split, tiny_run_dir, TINY_CONFIG)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_run: TrainResult, corpus_split: Split) -> Path:
    """A real model directory (model.onnx, tokenizer.json, card with metrics), small enough for tests."""
    model_dir = tmp_path_factory.mktemp("tiny-model") / "tiny"
    ship(tiny_run, corpus_split, ExportSpec(model_dir, "tiny-bilstm", "0.0.1", "pytest fixture"))
    return model_dir


@pytest.fixture
def model_copy(tmp_path: Path, tiny_model_dir: Path) -> Path:
    """A private copy of the tiny model directory that a test may damage."""
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))


@pytest.fixture
def free_port() -> int:
    return pick_free_port()
