"""The model card: one typed class, one reader, one writer.

``model_card.json`` is the source of truth about a model directory: what it is (name, version, labels,
max tokens), what it was made from (data, training, export verification, calibration) and how well it
does (metrics), plus the sha256 of every file, which the runtime checks on load. Training builds one
``ModelCard`` and writes it once; the runtime reads it.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model_runtime.contract import CARD_FILE, README_FILE


class CardError(ValueError):
    """The card is missing, unreadable, or a field is missing or of the wrong type; the message is one line
    that names the field and never a path (a swap's answer repeats it to the client)."""


_SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_CARD_BYTES = 16 * 1024 * 1024


def _non_empty_string(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value.strip():
        raise CardError(f"{CARD_FILE}: {name!r} must be a non-empty string, not {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    return "missing" if value is None else type(value).__name__ if not isinstance(value, str) else repr(value[:40])


@dataclass(frozen=True)
class FileEntry:
    sha256: str
    bytes: int


@dataclass
class ModelCard:
    name: str
    version: str
    labels: list[str]
    max_tokens: int
    files: dict[str, FileEntry]
    created: str = ""
    task: str = "sentiment classification (single label)"
    languages: list[str] = field(default_factory=lambda: ["en"])  # ISO 639-1 codes of the texts it learned from
    truncation: dict[str, str] = field(default_factory=dict)
    tokenizer: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    architecture: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    export: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    quantization: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    reproduce: str = ""
    # An adapted model: the model it was fine-tuned from ({"name", "version", "sha256"}), and the side-by-side
    # figures of the adaptation (the base and the adapted model on the user's held-out texts, forgetting).
    base: dict[str, Any] = field(default_factory=dict)
    adaptation: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any) -> ModelCard:
        """The card from its JSON object, every field checked: name and version non-empty strings, labels
        two or more unique non-empty strings, max_tokens a positive integer, files each with a sha256 and a
        size, languages non-empty strings, the other sections objects (CardError names what is wrong)."""
        if not isinstance(data, dict):
            raise CardError(f"{CARD_FILE} is not a JSON object")
        values: dict[str, Any] = {name: _non_empty_string(data, name) for name in ("name", "version")}
        labels = data.get("labels")
        if not isinstance(labels, list) or len(labels) < 2:
            raise CardError(f"{CARD_FILE}: 'labels' must be a list of two or more labels, not {_kind(labels)}")
        if not all(isinstance(label, str) and label.strip() for label in labels):
            raise CardError(f"{CARD_FILE}: every label must be a non-empty string")
        if len(set(labels)) != len(labels):
            raise CardError(f"{CARD_FILE}: labels must be unique, not {labels}")
        values["labels"] = list(labels)
        max_tokens = data.get("max_tokens")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise CardError(f"{CARD_FILE}: 'max_tokens' must be a positive integer, not {max_tokens!r}")
        values["max_tokens"] = max_tokens
        values["files"] = _files(data.get("files"))
        for f in dataclasses.fields(cls):
            if f.name in values or f.name not in data:
                continue
            value, expected = data[f.name], {"str": str, "list[str]": list}.get(str(f.type), dict)
            if not isinstance(value, expected):
                raise CardError(f"{CARD_FILE}: {f.name!r} must be {expected.__name__}, not {type(value).__name__}")
            if f.name == "languages" and not all(isinstance(x, str) and x for x in value):
                raise CardError(f"{CARD_FILE}: 'languages' must be language codes, such as [\"en\"]")
            values[f.name] = value
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _files(value: Any) -> dict[str, FileEntry]:
    if not isinstance(value, dict) or not value:
        raise CardError(f"{CARD_FILE}: 'files' must map each file to its sha256 and bytes, not {_kind(value)}")
    files = {}
    for name, entry in value.items():
        digest = entry.get("sha256") if isinstance(entry, dict) else None
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise CardError(f"{CARD_FILE}: files[{name!r}] needs a sha256 of 64 hexadecimal digits")
        size = entry.get("bytes")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise CardError(f"{CARD_FILE}: files[{name!r}] needs its size in bytes, a whole number")
        files[name] = FileEntry(digest, size)
    return files


def read_card(model_dir: Path) -> ModelCard:
    """The checked card of ``model_dir``; CardError (no path in the message) for a card that is missing, not
    a file, unreadable, too large, not JSON, nested too deep, or wrong in any field."""
    path = model_dir / CARD_FILE
    try:
        if not path.is_file():
            raise CardError(f"{CARD_FILE} is {'not a file' if path.exists() else 'missing'}")
        if path.stat().st_size > MAX_CARD_BYTES:
            raise CardError(f"{CARD_FILE} is larger than {MAX_CARD_BYTES // 2**20} MiB")
        data = json.loads(path.read_bytes())
    except CardError:
        raise
    except OSError as exc:
        raise CardError(f"{CARD_FILE} cannot be read ({exc.strerror or type(exc).__name__})") from None
    except RecursionError:
        raise CardError(f"{CARD_FILE} is nested too deep") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CardError(f"{CARD_FILE} is not valid JSON ({exc})") from None
    return ModelCard.from_json(data)


def write_card(model_dir: Path, card: ModelCard, readme: str | None = None) -> None:
    """``model_card.json`` (and the human-readable ``README.md`` rendered from it, when given)."""
    (model_dir / CARD_FILE).write_text(json.dumps(card.to_json(), indent=2) + "\n", encoding="utf-8")
    if readme is not None:
        (model_dir / README_FILE).write_text(readme, encoding="utf-8")
