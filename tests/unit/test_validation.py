"""One validator for every protocol: what a valid text is, and how each protocol reads its body."""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.datastructures import Headers

from service.adapters import oip, ours
from service.config import Settings
from service.engine import Engine
from service.metrics import Metrics
from service.validation import InvalidInput, TextLimits, check_texts, json_object

LIMITS = TextLimits(max_texts=4, max_chars=20)
JSON = Headers({"content-type": "application/json"})


def predict_texts(body: Any) -> list[str]:
    return ours.texts_of(json.dumps(body).encode(), JSON, LIMITS)


def infer_texts(texts: list[Any], shape: list[Any] | None = None, **extra: Any) -> list[str]:
    header = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": shape or [len(texts)], "data": texts}], **extra}
    return oip._texts(header, b"", LIMITS)


def verdict(fn: Any, *args: Any) -> str:
    try:
        fn(*args)
    except InvalidInput as exc:
        return f"refused: {exc.message}"
    return "scored"


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("\x1c", True),  # not white space to JSON Schema (Python's isspace says it is)
        ("\ufeff", False),  # a byte-order mark alone is white space to JSON Schema
        (" \u3000\u00a0\n", False),
        ("ok", True),
        ("x" * 20, True),
        ("x" * 21, False),
        ("", False),
        ("\x85", False),  # NEXT LINE: white space to the tokenizer, so to every protocol
        ("<br>", False),  # what the tokenizer's normalisation leaves empty is white space too
        (" <BR />\n< br/>", False),
        ("<br>ok", True),
    ],
)
def test_white_space_and_length_rules(text: str, valid: bool) -> None:
    assert (verdict(check_texts, [text], "texts", LIMITS) == "scored") is valid


@given(st.text(max_size=25))
def test_every_protocol_gives_every_text_the_same_verdict(text: str) -> None:
    answers = {verdict(predict_texts, {"text": text}), verdict(predict_texts, {"texts": [text]})}
    answers.add(verdict(infer_texts, [text]))
    assert len({a.split(":")[0] for a in answers}) == 1, answers


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"text": "ok", "texts": None}, None, "exactly one"),
        ({"texts": None}, "texts", "not null"),
        ({"text": None}, "text", "not null"),
        ({"texts": []}, "texts", "1 to 4 texts, not 0"),
        ({"texts": ["a"] * 5}, "texts", "1 to 4 texts, not 5"),
        ({"texts": ["a", 3]}, "texts[1]", "must be a string, not a number"),
        ({"texts": "abc"}, "texts", "must be an array of strings, not a string"),
        ({"foo": 1}, "foo", "unknown field"),
        ({}, None, "exactly one"),
    ],
)
def test_predict_bodies_are_refused_naming_the_field(body: Any, field: str | None, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        predict_texts(body)
    assert info.value.field == field and message in info.value.message


def test_a_key_given_twice_is_refused_naming_it() -> None:
    for body in (b'{"text": "awful", "text": "wonderful"}', b'{"texts": ["a"], "texts": ["b"]}'):
        with pytest.raises(InvalidInput, match="appears twice") as info:
            ours.texts_of(body, JSON, LIMITS)
        assert info.value.field in ("text", "texts")
    nested = b'{"inputs": [{"name": "text", "name": "text", "datatype": "BYTES", "shape": [1], "data": ["a"]}]}'
    with pytest.raises(InvalidInput, match="appears twice") as nested_info:
        json_object(nested)
    assert nested_info.value.field == "name"


def test_bodies_that_are_not_json_objects() -> None:
    for body, message in [(b"[1]", "not an array"), (b'{"a":', "not valid JSON"), (b"\xff{}", "not UTF-8: byte 0xff")]:
        with pytest.raises(InvalidInput, match=message.replace("not an array", "JSON object, not an array")):
            json_object(body)


def binary_body(elements: list[bytes], declared: int | None = None, shape: Any = None) -> tuple[bytes, Headers]:
    blob = b"".join(struct.pack("<I", len(e)) + e for e in elements)
    tensor = {
        "name": "text",
        "datatype": "BYTES",
        "shape": shape or [len(elements)],
        "parameters": {"binary_data_size": len(blob) if declared is None else declared},
    }
    header = json.dumps({"inputs": [tensor]}).encode()
    return header + blob, Headers({"inference-header-content-length": str(len(header))})


def infer(body: bytes, headers: Headers) -> list[str]:
    settings = Settings(max_client_batch=LIMITS.max_texts, max_text_chars=LIMITS.max_chars)
    routes = oip.scoring_routes(settings, Engine(settings, Metrics()))
    texts, _ = next(iter(routes.values())).parse(body, headers, {"name": "m"})
    return texts


def test_binary_tensor_data_is_read_within_its_bounds() -> None:
    assert infer(*binary_body([b"good", "caf\u00e9".encode()])) == ["good", "café"]
    overruns = struct.pack("<I", 1_000_000) + b"abc"
    cases = [
        (binary_body([b"good"], declared=3), "binary_data_size"),  # smaller than the element
        (binary_body([b"good"], declared=True), "must be an integer, not a boolean"),
        (binary_body([b"a", b"b"], shape=[1]), "more than the 1 elements"),
        (binary_body([b"a"], shape=[True]), "must be an integer, not a boolean"),
        (binary_body([b"a"], shape=[10**6]), "1 to 4 texts, not 1000000"),
        (binary_body([b"\xff\xfe"]), "is not UTF-8"),
    ]
    for (body, headers), message in cases:
        with pytest.raises(InvalidInput, match=message):
            infer(body, headers)
    header = json.dumps(
        {
            "inputs": [
                {"name": "text", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": len(overruns)}}
            ]
        }
    ).encode()
    for tail, message in [(overruns, "overruns"), (b"\xff\xff\xff\xff", "overruns"), (b"\x01\x00", "truncated")]:
        fixed = header.replace(str(len(overruns)).encode(), str(len(tail)).encode())
        with pytest.raises(InvalidInput, match=message):
            infer(fixed + tail, Headers({"inference-header-content-length": str(len(fixed))}))


@pytest.mark.parametrize(
    ("header", "field"),
    [
        ({"parameters": [1]}, "parameters"),
        (
            {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["x"], "parameters": "x"}]},
            "inputs[0].parameters",
        ),
        ({"outputs": [{"name": "label", "parameters": [1]}]}, "outputs[0].parameters"),
        ({"outputs": "label"}, "outputs"),
        ({"outputs": [{"name": "nope"}]}, "outputs[0].name"),
        ({"id": 5}, "id"),
        ({"inputs": [{"name": "text", "datatype": "FP32", "shape": [1], "data": [1.0]}]}, "inputs[0].datatype"),
        ({"inputs": [{"name": "txt", "datatype": "BYTES", "shape": [1], "data": ["x"]}]}, "inputs[0].name"),
        ({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["x"]}]}, "inputs[0].data"),
        ({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1, 1], "data": ["x"]}]}, "inputs[0].shape"),
        ({"inputs": []}, "inputs"),
    ],
)
def test_malformed_inference_requests_name_the_field(header: dict[str, Any], field: str) -> None:
    full = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["x"]}], **header}
    with pytest.raises(InvalidInput) as info:
        infer(json.dumps(full).encode(), JSON)
    assert info.value.field == field


def test_a_bad_header_length_is_refused() -> None:
    body = b'{"inputs": []}'
    for declared in ("abc", "0", str(len(body) + 1)):
        with pytest.raises(InvalidInput, match="Inference-Header-Content-Length"):
            infer(body, Headers({"inference-header-content-length": declared}))
