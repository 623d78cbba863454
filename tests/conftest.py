"""Shared fixtures: the corpora, a tiny but real model (trained, exported, verified, evaluated), made once
per recipe, and the Docker engine's directory.

The corpora read from the data packages, the tiny run and its model directory are kept under the user's
cache directory, named by the content hash of everything that makes them (the training, export and
runtime code, the tiny settings, this file, every installed package's version): a second run of the suite
on the same machine reuses them, any change to what makes them makes them again, and the processes of one
run (pytest-xdist's workers) make each once between them.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import pickle
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from filelock import FileLock

from model_runtime.session import available_cpus
from tests import docker_image
from tests.support import CACHE, ROOT, TINY_CONFIG, MadeOnce, pick_free_port

os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars in training output help people, not test logs
# Apps made in a test process keep their job store in a directory of the process's own, not in the checkout.
os.environ.setdefault("SENTIMENT_JOBS_DIR", tempfile.mkdtemp(prefix="sentiment-jobs-"))
from training.data import Dataset, Split, split_dataset
from training.pipeline import ExportSpec, ship
from training.sources import load_sources, make_split
from training.train import TrainResult, train


def kept_dataset(made_once: MadeOnce, name: str, load: Callable[[], Dataset]) -> Dataset:
    """What ``load()`` returns, loaded once per recipe and kept pickled (reading and cleaning every source
    takes about 17 s)."""

    def make(path: Path) -> None:
        path.mkdir(parents=True)
        (path / "dataset.pickle").write_bytes(pickle.dumps(load(), protocol=pickle.HIGHEST_PROTOCOL))

    dataset: Dataset = pickle.loads((made_once(name, make) / "dataset.pickle").read_bytes())
    return dataset


@pytest.fixture(scope="session")
def imdb(made_once: MadeOnce) -> Dataset:
    return kept_dataset(made_once, "imdb", lambda: load_sources(("imdb",)))


@pytest.fixture(scope="session")
def imdb_split(imdb: Dataset) -> Split:
    return split_dataset(imdb)


@pytest.fixture(scope="session")
def corpus(made_once: MadeOnce) -> Dataset:
    """Every packaged labelled source the shipped model learns from (training.sources)."""
    return kept_dataset(made_once, "corpus", load_sources)


@pytest.fixture(scope="session")
def corpus_split(corpus: Dataset) -> Split:
    return make_split(corpus)


ENGINE_OWNED = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    """In each of several test processes, PyTorch's share of the cores (OpenMP threads that outnumber the
    cores spin against each other: two training runs side by side took minutes instead of seconds); the
    training commands the tests start inherit it. The Docker engine's directory (tests/docker_image.py):
    scripts/test.sh names one; otherwise this process makes it (the controller, when the tests run in
    several processes: they inherit it) and removes it."""
    if hasattr(config, "workerinput"):
        threads = max(1, available_cpus() // int(config.workerinput["workercount"]))
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)
    elif docker_image.ENV not in os.environ:
        root = Path(tempfile.mkdtemp(prefix="sentiment-docker-"))
        os.environ[docker_image.ENV] = str(root)
        config.stash[ENGINE_OWNED] = root


def pytest_unconfigure(config: pytest.Config) -> None:
    root = config.stash.get(ENGINE_OWNED, None)
    if root is not None:
        docker_image.stop(root)
        del os.environ[docker_image.ENV]


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With several test processes and ``--dist loadscope``: each module's tests run in one of them, so that
    its module fixtures (servers, a browser) are made once, except the docker tests, which share one engine
    wherever they run and go to whichever process is free."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):  # type: ignore[misc]  # pytest-xdist has no type information
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return nodeid if module == "tests/test_docker.py" else module

    return ModuleScheduling(config, log)


@pytest.hookimpl(trylast=True)  # after -m/-k have deselected
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The unit tier first; the docker tests last, their engine and image made meanwhile by a process of
    their own."""

    def rank(item: pytest.Item) -> int:
        return 0 if item.path.is_relative_to(ROOT / "tests" / "unit") else 2 if item.get_closest_marker("docker") else 1

    items.sort(key=rank)  # stable: in collection order within each rank
    docker = bool(items) and rank(items[-1]) == 2
    if docker and not config.option.collectonly and docker_image.unavailable() is None:
        docker_image.start_preparing(Path(os.environ[docker_image.ENV]))


MADE_ONCE = CACHE / "made-once"  # per recipe: the tiny runs and models, the corpora read from the data packages
RESULT = "result.pt"  # the tiny run's TrainResult, kept beside the run's own files


def recipe_key() -> str:
    """The content hash of what makes the corpora, the tiny run and model."""
    digest = hashlib.sha256(repr(TINY_CONFIG).encode())
    code = [*ROOT.glob("training/*.py"), *ROOT.glob("training/*.json"), *ROOT.glob("model_runtime/*.py")]
    for path in sorted([*code, Path(__file__)]):
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    for dist in sorted(f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions()):
        digest.update(dist.encode())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def recipe_cache() -> Path:
    """This recipe's cache entry (other recipes' entries are removed: one is kept)."""
    entry = MADE_ONCE / recipe_key()
    if MADE_ONCE.exists():
        for stale in MADE_ONCE.iterdir():
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
def made_once(recipe_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> MadeOnce:
    """``made_once(name, make)``: a private copy of the directory ``make(path)`` writes, made once per recipe
    (kept in this recipe's cache entry under ``name``; the test processes of one run wait for whichever makes
    it first)."""

    def get(name: str, make: Callable[[Path], None]) -> Path:
        entry = recipe_cache / name
        recipe_cache.mkdir(parents=True, exist_ok=True)
        with FileLock(recipe_cache / f".{name}.lock"):
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
