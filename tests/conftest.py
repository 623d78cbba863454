"""Shared fixtures: a tiny but real model (trained, exported, verified, evaluated), made once per recipe.

The tiny run and its model directory are kept under the user's cache directory, named by the content hash
of everything that makes them (the training, export and runtime code, the tiny settings, this file, every
installed package's version): a second run of the suite on the same machine reuses them, and any change
to what makes them makes them again.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tests import docker_image
from tests.support import CACHE, ROOT, TINY_CONFIG, MadeOnce, pick_free_port

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


@pytest.hookimpl(trylast=True)  # after -m/-k have deselected
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The docker tests run last, their engine and image made in the background meanwhile."""
    docker = [item for item in items if item.get_closest_marker("docker")]
    if docker and not config.option.collectonly:
        items[:] = [item for item in items if not item.get_closest_marker("docker")] + docker
        docker_image.start_in_background()


def pytest_sessionfinish(session: pytest.Session) -> None:
    docker_image.stop_in_background_work()


TINY_CACHE = CACHE / "tiny-model"
RESULT = "result.pt"  # the tiny run's TrainResult, kept beside the run's own files


def recipe_key() -> str:
    """The content hash of what makes the tiny run and model."""
    digest = hashlib.sha256(repr(TINY_CONFIG).encode())
    code = [*ROOT.glob("training/*.py"), *ROOT.glob("training/*.json"), *ROOT.glob("model_runtime/*.py")]
    for path in sorted([*code, Path(__file__)]):
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    for dist in sorted(f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions()):
        digest.update(dist.encode())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def tiny_cache() -> Path:
    """This recipe's cache entry (other recipes' entries are removed: one is kept)."""
    entry = TINY_CACHE / recipe_key()
    if TINY_CACHE.exists():
        for stale in TINY_CACHE.iterdir():
            if stale != entry:
                shutil.rmtree(stale, ignore_errors=True)
    return entry


def keep(source: Path, entry: Path) -> None:
    """Copy ``source`` to ``entry`` all at once (a rename), so that a run cut short leaves nothing half made."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=entry.parent, prefix=".staging-"))
    shutil.copytree(source, staging, dirs_exist_ok=True)
    staging.rename(entry)


@pytest.fixture(scope="session")
def made_once(tiny_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> MadeOnce:
    """``made_once(name, make)``: a private copy of the directory ``make(path)`` writes, made once per recipe
    (kept in this recipe's cache entry under ``name``)."""

    def get(name: str, make: Callable[[Path], None]) -> Path:
        entry = tiny_cache / name
        if not entry.exists():
            made = tmp_path_factory.mktemp(f"{name}-made") / name
            make(made)
            keep(made, entry)
        copy = tmp_path_factory.mktemp(name) / name
        shutil.copytree(entry, copy)
        return copy

    return get


@pytest.fixture(scope="session")
def tiny_run_dir(made_once: MadeOnce, request: pytest.FixtureRequest) -> Path:
    """The run directory of a real (seconds-long) training run of the shipped recipe at a tiny size, on every
    source, with the run's result (RESULT) beside the files training writes."""

    def make(path: Path) -> None:
        corpus, split = request.getfixturevalue("corpus"), request.getfixturevalue("corpus_split")
        torch.save(train(corpus, split, path, TINY_CONFIG), path / RESULT)

    return made_once("run", make)


@pytest.fixture(scope="session")
def tiny_run(tiny_run_dir: Path) -> TrainResult:
    """The tiny run's result: the trained network, its tokenizer, the run's record and history."""
    result: TrainResult = torch.load(tiny_run_dir / RESULT, weights_only=False)
    return result


@pytest.fixture(scope="session")
def tiny_model_dir(made_once: MadeOnce, request: pytest.FixtureRequest) -> Path:
    """A real model directory (model.onnx, tokenizer.json, card with metrics), small enough for tests."""

    def make(path: Path) -> None:
        spec = ExportSpec(path, "tiny-bilstm", "0.0.1", "pytest fixture")
        ship(request.getfixturevalue("tiny_run"), request.getfixturevalue("corpus_split"), spec)

    return made_once("tiny", make)


@pytest.fixture
def model_copy(tmp_path: Path, tiny_model_dir: Path) -> Path:
    """A private copy of the tiny model directory that a test may damage."""
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))


@pytest.fixture
def free_port() -> int:
    return pick_free_port()
