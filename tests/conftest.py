"""Shared fixtures: a tiny but real model (trained, exported, verified, evaluated) built once per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support import TINY_CONFIG, pick_free_port
from training.data import Dataset, Split, load_imdb, load_movie_reviews, split_dataset
from training.pipeline import ExportSpec, ship
from training.train import train


@pytest.fixture(scope="session")
def imdb() -> Dataset:
    return load_imdb()


@pytest.fixture(scope="session")
def imdb_split(imdb: Dataset) -> Split:
    return split_dataset(imdb)


@pytest.fixture(scope="session")
def corpus() -> Dataset:
    """Every labelled source of movie-reviews: IMDB reviews and Rotten Tomatoes sentences."""
    return load_movie_reviews()


@pytest.fixture(scope="session")
def corpus_split(corpus: Dataset) -> Split:
    return split_dataset(corpus)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, corpus: Dataset, corpus_split: Split) -> Path:
    run_dir = tmp_path_factory.mktemp("tiny-run")
    train(corpus, run_dir, TINY_CONFIG, split=corpus_split)
    return run_dir


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_run: Path, corpus_split: Split) -> Path:
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
