"""What a valid text is, for every protocol: one validator, one verdict.

A request carries 1 to ``max_texts`` texts; each must be a string of at most ``max_chars`` characters with
at least one character that is not white space, where white space is JSON Schema's (ECMA-262) idea of it,
so that the pattern the OpenAPI document publishes (``NOT_ONLY_WHITESPACE``) and the server agree on every
string. (Python's ``str.isspace`` also counts U+001C..U+001F and leaves out U+FEFF: a text of one U+001C
is a text; a text of one U+FEFF, a byte-order mark, is not.) Every refusal names the field and the limit.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from model_runtime import Language

NOT_ONLY_WHITESPACE = r"[^\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"
_NOT_ONLY_WHITESPACE = re.compile(NOT_ONLY_WHITESPACE)


class InvalidInput(ValueError):
    """A request's input breaks a rule; ``field`` says where (``texts[3]``), the message which rule."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field, self.message = field, message


LanguageOf = Callable[[str], Language]


@dataclass(frozen=True)
class TextLimits:
    max_texts: int
    max_chars: int
    # Set when SENTIMENT_UNSUPPORTED_LANGUAGE=refuse: a text the model's language check calls unsupported
    # is invalid input, on every protocol alike.
    refuse_language: LanguageOf | None = None


def check_text(value: Any, field: str, max_chars: int, refuse_language: LanguageOf | None = None) -> str:
    if not isinstance(value, str):
        raise InvalidInput(field, f"must be a string, not {json_type(value)}")
    if len(value) > max_chars:
        raise InvalidInput(field, f"has {len(value):,} characters; the limit is {max_chars:,}")
    if not _NOT_ONLY_WHITESPACE.search(value):
        raise InvalidInput(field, "must contain at least one non-whitespace character")
    if refuse_language is not None:
        check_language(refuse_language(value), field)
    return value


def check_language(language: Language, field: str) -> None:
    if not language.supported:
        raise InvalidInput(
            field,
            f"appears to be in language {language.code!r}, which the model does not support; this server refuses "
            "such texts (SENTIMENT_UNSUPPORTED_LANGUAGE=refuse)",
        )


def check_count(count: int, field: str, limits: TextLimits) -> None:
    if not 1 <= count <= limits.max_texts:
        raise InvalidInput(field, f"must hold 1 to {limits.max_texts} texts, not {count}")


def check_texts(values: Any, field: str, limits: TextLimits) -> list[str]:
    """``values`` as a list of valid texts, or InvalidInput for the first thing wrong with it."""
    if not isinstance(values, list):
        raise InvalidInput(field, f"must be an array of strings, not {json_type(values)}")
    check_count(len(values), field, limits)
    return [check_text(v, f"{field}[{i}]", limits.max_chars, limits.refuse_language) for i, v in enumerate(values)]


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


def json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object (orjson: it refuses invalid UTF-8, lone surrogates and nesting deeper than
    1,024 levels), or InvalidInput saying what is wrong with it."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(None, f"the body is not valid JSON ({_json_problem(body, exc)})") from None
    if not isinstance(data, dict):
        raise InvalidInput(None, f"the body must be a JSON object, not {json_type(data)}")
    return data


def _json_problem(body: bytes, exc: orjson.JSONDecodeError) -> str:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as bad:
        return f"not UTF-8: byte 0x{body[bad.start]:02x} at position {bad.start}"
    return str(exc)
