"""The engine's lifecycle (start, warm-up, readiness, swap, drain) on a real small model, without HTTP."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from model_runtime import ModelLoadError
from service.batcher import NotAcceptingError
from service.config import Settings
from service.engine import Engine, NotReadyError, load_model
from service.metrics import Metrics
from tests.support import make_model_dir


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("models")
    return make_model_dir(root / "one", version="1.0.0", seed=1), make_model_dir(root / "two", version="2.0.0", seed=2)


def run(coroutine: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(coroutine(), 60))


def engine_for(model_dir: Path, **settings: Any) -> Engine:
    return Engine(Settings(model_dir=model_dir, warmup_runs=1, **settings), Metrics())


def test_states_from_start_to_drain(models: tuple[Path, Path]) -> None:
    async def scenario() -> None:
        engine = engine_for(models[0])
        assert engine.state == "starting" and not engine.ready
        with pytest.raises(NotReadyError):
            engine.require_ready()
        with pytest.raises(NotReadyError):
            _ = engine.model
        await engine.start(load_model(engine.settings), wait_for_warm_up=True)
        assert engine.state == "ready"
        model, predictions = await engine.predict(["not bad at all", "great film"])
        assert model.version == "1.0.0" and [p.tokens for p in predictions] == [4, 2]
        engine.begin_draining()
        assert engine.state == "draining" and not engine.ready  # readiness off at once
        engine.require_ready()  # ... while work the server still accepts is answered
        model, predictions = await engine.predict(["accepted after SIGTERM"])
        assert len(predictions) == 1
        await engine.drain()
        with pytest.raises(NotAcceptingError):
            await engine.batcher.submit([("late", True)], 1)

    run(scenario)


def test_a_swap_serves_the_new_model_and_a_bad_directory_changes_nothing(
    models: tuple[Path, Path], tmp_path: Path
) -> None:
    async def scenario() -> None:
        engine = engine_for(models[0])
        await engine.start(load_model(engine.settings), wait_for_warm_up=True)
        before = (await engine.predict(["great"]))[1][0].probabilities
        swapped = await engine.swap(models[1])
        assert swapped.version == "2.0.0" and engine.model_dir == models[1]
        model, after = await engine.predict(["great"])
        assert model.version == "2.0.0" and after[0].probabilities != before
        broken = Path(shutil.copytree(models[0], tmp_path / "broken"))
        (broken / "model.onnx").write_bytes(b"not a model")
        with pytest.raises(ModelLoadError, match="sha256"):
            await engine.swap(broken)
        assert engine.model.version == "2.0.0" and engine.ready
        assert engine.metrics.model_swaps.labels("ok")._value.get() == 1
        assert engine.metrics.model_swaps.labels("failed")._value.get() == 1
        await engine.drain()

    run(scenario)


def test_explanations_run_on_their_own_lane(models: tuple[Path, Path]) -> None:
    async def scenario() -> None:
        engine = engine_for(models[0])
        await engine.start(load_model(engine.settings), wait_for_warm_up=True)
        model, explanations = await engine.explain(["not bad at all"])
        assert model is engine.model
        assert [w.text for w in explanations[0].words] == ["not", "bad", "at", "all"]
        assert engine.batcher.budget.cost == 0
        await engine.drain()

    run(scenario)
