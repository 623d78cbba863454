"""What a valid text is, for every protocol: one validator, one verdict.

A request carries 1 to ``max_texts`` texts; each must be a string of at most ``max_chars`` characters that
the model can read (``model_runtime.texts.readable``: a character that is not white space or a ``<br>``
tag; the OpenAPI document publishes the pattern ``NOT_ONLY_WHITESPACE``). Every refusal names the field and
the limit.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from model_runtime import Language
from model_runtime.texts import readable


class InvalidInput(ValueError):
    """A request's input breaks a rule; ``field`` says where (``texts[3]``), the message which rule; ``also``,
    the same rule broken elsewhere in the request (every foreign text of a batch, not the first alone)."""

    def __init__(self, field: str | None, message: str, also: list[InvalidInput] | None = None) -> None:
        self.field, self.message, self.also = field, message, also or []
        super().__init__("; ".join(f"{e.field}: {e.message}" if e.field else e.message for e in self.every()))

    def every(self) -> list[InvalidInput]:
        return [self, *self.also]


LanguageOf = Callable[[str], Language]


@dataclass(frozen=True)
class TextLimits:
    max_texts: int
    max_chars: int
    # Set when SENTIMENT_UNSUPPORTED_LANGUAGE=refuse: a text the model's language check calls unsupported
    # is invalid input, on every protocol alike.
    refuse_language: LanguageOf | None = None


def check_text(value: Any, field: str, max_chars: int, refuse_language: LanguageOf | None = None) -> str:
    """``value`` if it is a valid text, else InvalidInput naming ``field``."""
    check_texts_at([(field, value)], max_chars, refuse_language)
    return str(value)


def check_texts_at(
    values: list[tuple[str, Any]], max_chars: int, refuse_language: LanguageOf | None = None
) -> list[str]:
    """The texts of ``(field, value)`` pairs: the first text that is not a readable string within the limit is
    refused; then, when the language is checked, every text in an unsupported language is named together."""
    texts = [_valid_text(value, field, max_chars) for field, value in values]
    if refuse_language is not None:
        foreign = []
        for (field, _), text in zip(values, texts, strict=True):
            try:
                check_language(refuse_language(text), field)
            except InvalidInput as exc:
                foreign.append(exc)
        if foreign:
            raise InvalidInput(foreign[0].field, foreign[0].message, foreign[1:])
    return texts


def _valid_text(value: Any, field: str, max_chars: int) -> str:
    if not isinstance(value, str):
        raise InvalidInput(field, f"must be a string, not {json_type(value)}")
    if len(value) > max_chars:
        raise InvalidInput(field, f"has {len(value):,} characters; the limit is {max_chars:,}")
    if not readable(value):
        raise InvalidInput(field, "must contain at least one non-whitespace character (<br> tags count as white space)")
    return value


def check_language(language: Language, field: str) -> None:
    if not language.supported:
        raise InvalidInput(
            field,
            f"appears to be in language {language.code!r}, which the model does not support; this server refuses "
            "such texts (SENTIMENT_UNSUPPORTED_LANGUAGE=refuse)",
        )


def check_count(count: int, field: str, limits: TextLimits, noun: str = "texts") -> None:
    if not 1 <= count <= limits.max_texts:
        raise InvalidInput(field, f"must hold 1 to {limits.max_texts} {noun}, not {count}")


def check_texts(values: Any, field: str, limits: TextLimits) -> list[str]:
    """``values`` as a list of valid texts, or InvalidInput for the first thing wrong with it."""
    if not isinstance(values, list):
        raise InvalidInput(field, f"must be an array of strings, not {json_type(values)}")
    check_count(len(values), field, limits)
    at = [(f"{field}[{i}]", v) for i, v in enumerate(values)]
    return check_texts_at(at, limits.max_chars, limits.refuse_language)


def json_type(value: Any) -> str:
    names = {
        list: "an array",
        dict: "an object",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }
    return "null" if value is None else names.get(type(value), type(value).__name__)


def one_field(data: dict[str, Any], fields: dict[str, str]) -> str:
    """The one field a body gives of ``fields`` (name -> what it holds), or InvalidInput naming an unknown
    field, or saying that exactly one is wanted."""
    choices = " or ".join(f"'{name}' ({kind})" for name, kind in fields.items())
    for name in data:
        if name not in fields:
            raise InvalidInput(name, f"unknown field; give {choices}")
    if len(data) != 1:
        raise InvalidInput(None, f"give exactly one of {choices}")
    return next(iter(data))


def json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object (orjson: it refuses invalid UTF-8, lone surrogates and nesting deeper than
    1,024 levels), or InvalidInput saying what is wrong with it; an object that names a key twice is refused
    too (which of two values was meant is anybody's guess; parsers disagree)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(None, f"the body is not valid JSON ({_json_problem(body, exc)})") from None
    if not isinstance(data, dict):
        raise InvalidInput(None, f"the body must be a JSON object, not {json_type(data)}")
    json.loads(body, object_pairs_hook=_without_duplicates)  # valid JSON already: only duplicates can raise
    return data


def _without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        duplicate = next(key for i, key in enumerate(keys) if key in keys[:i])
        raise InvalidInput(duplicate, "appears twice in one JSON object; give each field once")
    return dict(pairs)


def _json_problem(body: bytes, exc: orjson.JSONDecodeError) -> str:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as bad:
        return f"not UTF-8: byte 0x{body[bad.start]:02x} at position {bad.start}"
    return str(exc)
