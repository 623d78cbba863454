"""The model card: one typed class, one reader, one writer.

``model_card.json`` is the source of truth about a model directory: what it is (name, version, labels,
max tokens), what it was made from (data, training, export verification, calibration) and how well it
does (metrics), plus the sha256 of every file, which the runtime checks on load. Training builds one
``ModelCard`` and writes it once; the runtime reads it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model_runtime.contract import CARD_FILE, README_FILE


class CardError(ValueError):
    """The card is missing, unreadable or lacks a required field; the message is one line."""


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
    def from_json(cls, data: Any, where: str = CARD_FILE) -> ModelCard:
        """The card from its JSON object; refuses a missing required field or a wrong type."""
        if not isinstance(data, dict):
            raise CardError(f"{where} is not a JSON object")
        required = ("labels", "max_tokens", "files")
        missing = [k for k in required if k not in data]
        if missing:
            raise CardError(f"{where} lacks {', '.join(missing)}")
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        try:
            values["files"] = {name: FileEntry(str(f["sha256"]), int(f["bytes"])) for name, f in data["files"].items()}
            values["labels"] = [str(label) for label in data["labels"]]
            values["max_tokens"] = int(data["max_tokens"])
        except (TypeError, KeyError, ValueError, AttributeError) as exc:
            raise CardError(f"{where}: malformed labels, max_tokens or files ({exc!r})") from exc
        values.setdefault("name", "unnamed")
        values.setdefault("version", "unknown")
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def read_card(model_dir: Path) -> ModelCard:
    path = model_dir / CARD_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CardError(f"{path} is missing") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CardError(f"{path} is not valid JSON ({exc})") from exc
    return ModelCard.from_json(data, str(path))


def write_card(model_dir: Path, card: ModelCard, readme: str | None = None) -> None:
    """``model_card.json`` (and the human-readable ``README.md`` rendered from it, when given)."""
    (model_dir / CARD_FILE).write_text(json.dumps(card.to_json(), indent=2) + "\n", encoding="utf-8")
    if readme is not None:
        (model_dir / README_FILE).write_text(readme, encoding="utf-8")
