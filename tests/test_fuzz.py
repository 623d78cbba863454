"""Property-based tests: the API fuzzed from its own OpenAPI schema (schemathesis, over real HTTP), and
hypothesis tests of the tokenizer and predictor."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate
from schemathesis.generation import GenerationMode

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


def test_the_openapi_document_is_valid_and_every_ref_resolves(running_server: str) -> None:
    document = httpx.get(f"{running_server}/openapi.json").json()
    validate(document)  # openapi-spec-validator: the OpenAPI 3.1 schema, every $ref resolved
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(document)))
    assert refs <= set(document["components"]["schemas"]), refs - set(document["components"]["schemas"])
    infer = document["paths"]["/v2/models/{name}/infer"]["post"]["requestBody"]["content"]["application/json"]
    assert infer["schema"] == {"$ref": "#/components/schemas/InferenceRequest"}


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_matches_its_schema_and_never_fails(running_server: str, mode: GenerationMode) -> None:
    """Every operation, /v2 included, fuzzed from /openapi.json with every check schemathesis has: no 5xx,
    every response documented and schema-valid, schema-valid requests accepted and invalid ones refused."""
    schema = schemathesis.openapi.from_url(f"{running_server}/openapi.json")
    schema.config.base_url = running_server
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]  # Err raises
    names = {f"{op.method.upper()} {op.path}" for op in operations}
    assert names >= {"POST /predict", "POST /explain", "GET /model", "POST /v2/models/{name}/infer"}
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and not len(operation.body):
            continue  # no body: nothing of the request can be made invalid (a path segment is any string)
        post_job = operation.path == "/jobs" and operation.method.upper() == "POST"
        if mode is GenerationMode.NEGATIVE and post_job:
            continue  # a file: any bytes are one; its refusals are named in tests/test_jobs.py
        # The model's own name for the /v2 routes, so that requests get past the 404 to the body's checks.
        name = {"name": "tiny-bilstm"} if "{name}" in operation.path and mode is GenerationMode.POSITIVE else None
        # A job's file as plain text, the one format whose every schema-valid body is a usable file: whether a
        # CSV or JSON Lines body holds the column it names, no schema can say (refused with 422, as documented).
        cases = operation.as_strategy(mode, path_parameters=name)
        if post_job and mode is GenerationMode.POSITIVE:
            cases = cases.filter(lambda case: case.media_type == "text/plain")

        @given(case=cases)
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: schemathesis.Case[Any]) -> None:
            response = case.call()
            assert response.status_code < 500, response.text
            case.validate_response(response)

        try:
            check()
        except Exception as exc:
            exc.add_note(f"{mode.value} {operation.method.upper()} {operation.path}")
            raise


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
