"""Property-based tests: the API fuzzed from its own OpenAPI schema (schemathesis, over real HTTP), and
hypothesis tests of the tokenizer and predictor."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model_runtime import Predictor
from tests.support import launch, stop_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def running_server(tiny_model_dir: Path) -> Iterator[str]:
    base, process = launch(
        tiny_model_dir, SENTIMENT_MAX_TEXT_CHARS="5000", SENTIMENT_MAX_QUEUE="100000", SENTIMENT_LOG_LEVEL="warning"
    )
    try:
        yield base
    finally:
        stop_server(process)


def test_api_matches_its_schema_and_never_fails(running_server: str) -> None:
    """Every operation, fuzzed from /openapi.json: no 5xx, every response documented and schema-valid,
    schema-valid requests accepted."""
    schema = schemathesis.openapi.from_url(f"{running_server}/openapi.json")
    schema.config.base_url = running_server
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]  # Err raises
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= {"POST /predict", "GET /model", "GET /readyz"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: schemathesis.Case[Any]) -> None:
            response = case.call()
            assert response.status_code < 500, response.text
            case.validate_response(response)

        check()


@pytest.fixture(scope="module")
def predictor(tiny_model_dir: Path) -> Predictor:
    return Predictor.load(tiny_model_dir, provider="cpu", intra_op_threads=1)


any_text = st.text(st.characters(exclude_categories=["Cs"]), min_size=0, max_size=400)


@given(texts=st.lists(any_text, min_size=1, max_size=8))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_texts_give_valid_predictions_in_order(predictor: Predictor, texts: list[str]) -> None:
    predictions = predictor.predict(texts)
    assert len(predictions) == len(texts)
    for text, p in zip(texts, predictions, strict=True):
        assert p.label in predictor.labels
        assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        assert p.score == max(p.probabilities.values())
        assert 0 <= p.tokens <= predictor.max_tokens
        assert p.truncated == (len(predictor.tokenizer.encode(text).overflowing) > 0)


@given(target=any_text, neighbours=st.lists(any_text, min_size=1, max_size=6), position=st.integers(0, 6))
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_texts_scores_do_not_depend_on_its_batch(
    predictor: Predictor, target: str, neighbours: list[str], position: int
) -> None:
    alone = predictor.predict([target])[0]
    position = min(position, len(neighbours))
    batch = predictor.predict([*neighbours[:position], target, *neighbours[position:]], max_batch_tokens=50)
    np.testing.assert_allclose(
        list(batch[position].probabilities.values()), list(alone.probabilities.values()), atol=1e-5
    )


@given(text=any_text)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_tokenizer_never_fails_and_ids_are_in_the_vocabulary(predictor: Predictor, text: str) -> None:
    encoding = predictor.encode([text])[0]
    assert len(encoding.ids) <= predictor.max_tokens
    assert all(0 <= i < predictor.tokenizer.get_vocab_size() for i in encoding.ids)
