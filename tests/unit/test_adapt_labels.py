"""Adapting reads a user's labels onto the model's: names and common spellings, numbers with a star
threshold, an explicit map; anything else is refused with its value and line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from training.adapt import AdaptConfig, map_labels
from training.data import DataError
from training.files import read_labelled_rows

LABELS = ("negative", "positive")


def mapped(tmp_path: Path, content: str, **config: Any) -> list[int]:
    path = tmp_path / "mine.csv"
    path.write_text(content)
    return [
        ex.label for ex in map_labels(path, read_labelled_rows(path, "text", "label"), LABELS, AdaptConfig(**config))
    ]


def test_names_spellings_numbers_and_maps(tmp_path: Path) -> None:
    assert mapped(tmp_path, "text,label\na,pos\nb,NEG\nc,Positive\nd,negative\n") == [1, 0, 1, 0]
    assert mapped(tmp_path, "text,label\na,1\nb,0\nc,true\nd,no\n") == [1, 0, 1, 0]
    assert mapped(tmp_path, "text,label\na,5\nb,1\nc,4\nd,3.5\n", star_threshold=4) == [1, 0, 1, 0]
    assert mapped(tmp_path, "text,label\na,yay\nb,boo\nc,meh\n", label_map="yay=positive,boo=negative,meh=drop") == [
        1,
        0,
    ]


@pytest.mark.parametrize(
    ("content", "config", "message"),
    [
        ("text,label\na,pos\nb,meh\n", {}, "line 3: label 'meh' cannot be mapped"),
        (
            "text,label\na,5\nb,3\n",
            {},
            "line 2: label '5' cannot be mapped onto ['negative', 'positive']; give --label-map, or --star-threshold",
        ),
        ("text,label\na,5\nb,five\n", {"star_threshold": 4}, "line 3: label 'five'"),
        ("text,label\na,pos\nb,pos\n", {}, "every text maps to the one label ['positive']"),
        ("text,label\na,pos\n   ,neg\n", {}, "line 3: 'text' must be a non-empty string"),
    ],
)
def test_unusable_files_are_refused_with_file_and_line(
    tmp_path: Path, content: str, config: dict[str, Any], message: str
) -> None:
    with pytest.raises(DataError) as info:
        mapped(tmp_path, content, **config)
    assert message in str(info.value) and "mine.csv" in str(info.value)
