"""The IMDB corpus, the deterministic split, and users' own labelled files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.data import (
    DataError,
    Dataset,
    Split,
    digest_of_hashes,
    read_split_manifest,
    split_dataset,
    text_sha256,
    write_split_manifest,
)
from training.files import load_labelled_file


def test_imdb_corpus_is_the_25k_reviews_without_duplicates(imdb: Dataset) -> None:
    assert imdb.labels == ("negative", "positive")
    assert imdb.dropped_duplicates > 0  # the package holds some reviews twice
    assert len(imdb.examples) + imdb.dropped_duplicates == 25_000
    assert len({text_sha256(ex.text) for ex in imdb.examples}) == len(imdb.examples)


def test_split_is_stratified_disjoint_and_large_enough(imdb_split: Split, imdb: Dataset) -> None:
    sizes = imdb_split.sizes()
    assert sizes["test"] >= 2500
    assert sum(sizes.values()) == len(imdb.examples)
    parts = {name: set(h) for name, h in imdb_split.hashes.items()}
    assert not parts["test"] & parts["train"]
    assert not parts["test"] & parts["validation"]
    assert not parts["validation"] & parts["train"]
    for part in (imdb_split.train, imdb_split.validation, imdb_split.test):
        positives = sum(ex.label for ex in part) / len(part)
        assert 0.49 < positives < 0.51


def test_split_depends_on_content_not_order(imdb: Dataset, imdb_split: Split) -> None:
    shuffled = Dataset(examples=list(reversed(imdb.examples)), labels=imdb.labels, source="reversed")
    again = split_dataset(shuffled)
    assert {k: digest_of_hashes(v) for k, v in again.hashes.items()} == {
        k: digest_of_hashes(v) for k, v in imdb_split.hashes.items()
    }


def test_manifest_round_trips(tmp_path: Path, imdb_split: Split) -> None:
    path = tmp_path / "splits.tsv"
    write_split_manifest(imdb_split, path)
    parts = read_split_manifest(path)
    assert {k: len(v) for k, v in parts.items()} == imdb_split.sizes()
    assert parts["test"] == set(imdb_split.hashes["test"])


def _write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_csv_with_three_string_labels(tmp_path: Path) -> None:
    rows = "text,label\n" + "".join(f'"text number {i}, quoted",{["bad", "good", "meh"][i % 3]}\n' for i in range(9))
    data = load_labelled_file(_write(tmp_path / "d.csv", rows))
    assert data.labels == ("bad", "good", "meh")
    assert len(data.examples) == 9
    assert data.examples[1].label == 1


def test_jsonl_with_custom_columns_and_numeric_labels(tmp_path: Path) -> None:
    lines = [json.dumps({"review": f"r{i}", "stars": i % 2}) for i in range(6)]
    data = load_labelled_file(_write(tmp_path / "d.jsonl", "\n".join(lines) + "\n\n"), "review", "stars")
    assert data.labels == ("0", "1")
    assert [ex.label for ex in data.examples] == [0, 1, 0, 1, 0, 1]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.csv", "body,label\nhello,1\n", "missing column(s) 'text'"),
        ("empty.csv", "", "empty"),
        ("header-only.csv", "text,label\n", "no data rows"),
        ("single.csv", "text,label\na,pos\nb,pos\n", "single class"),
        ("blank.csv", "text,label\na,pos\n   ,neg\n", "line 3: 'text' must be a non-empty string"),
        ("badjson.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": \n', "line 2: not a valid JSON"),
        ("array.jsonl", '{"text": "a", "label": 1}\n[1, 2]\n', "line 2: expected a JSON object"),
        ("nolabel.jsonl", '{"text": "a", "label": 1}\n{"text": "b"}\n', "line 2: missing field(s) 'label'"),
        ("latin1.csv", b"text,label\ncaf\xe9,1\nok,0\n", "not valid UTF-8"),
        ("data.xlsx", "whatever", "unsupported file type"),
    ],
)
def test_unusable_files_are_refused_with_the_reason(
    tmp_path: Path, name: str, content: str | bytes, message: str
) -> None:
    with pytest.raises(DataError, match=None) as info:
        load_labelled_file(_write(tmp_path / name, content))
    assert message in str(info.value)
    assert name in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        load_labelled_file(tmp_path / "nope.csv")
