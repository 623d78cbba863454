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


# The IMDB split every earlier model was trained and tested on (digests of its sorted text hashes, from the
# card of imdb-bilstm 1.0.0): the multi-source split must leave it exactly as it was.
IMDB_SPLIT_DIGESTS = {
    "train": "505c5ffc778e5ca67cf576f21bc86a0424642257c54635aad470a4309b4a729a",
    "validation": "e037a0c9f352eb5724a51dea9e85f595e7555a09fb0a7ec7e33aa1f4db6cd66d",
    "test": "dc12e04055f2668a75bd4c3d7ef07d0f005078ada4c4e8201a210809b85bd6b5",
}


def test_every_source_is_split_on_its_own_and_the_imdb_split_is_unchanged(corpus: Dataset, corpus_split: Split) -> None:
    assert {ex.source for ex in corpus.examples} == {"imdb", "rotten_tomatoes"}
    sizes = corpus_split.sizes_by_source()
    assert sum(sizes["rotten_tomatoes"].values()) == sum(ex.source == "rotten_tomatoes" for ex in corpus.examples)
    assert sum(sizes["rotten_tomatoes"].values()) > 8400  # 8,530 sentences, few duplicates
    for name, digest in IMDB_SPLIT_DIGESTS.items():
        imdb_part = [text_sha256(ex.text) for ex in corpus_split.parts()[name] if ex.source == "imdb"]
        assert digest_of_hashes(imdb_part) == digest, name
    for source in ("imdb", "rotten_tomatoes"):
        for part in corpus_split.parts().values():  # stratified within each source
            members = [ex for ex in part if ex.source == source]
            assert 0.49 < sum(ex.label for ex in members) / len(members) < 0.51
    # disjoint by content across splits and across sources
    keys = [(text_sha256(ex.text), name) for name, part in corpus_split.parts().items() for ex in part]
    assert len({h for h, _ in keys}) == len(keys)


def test_the_multi_source_split_is_deterministic_and_recorded_per_source(
    corpus: Dataset, corpus_split: Split, tmp_path: Path
) -> None:
    again = split_dataset(Dataset(list(reversed(corpus.examples)), corpus.labels, "reversed"))
    assert again.hashes == corpus_split.hashes
    path = tmp_path / "splits.tsv"
    write_split_manifest(corpus_split, path)
    for source in ("imdb", "rotten_tomatoes"):
        recorded = read_split_manifest(path, source)
        for name, part in corpus_split.parts().items():
            assert recorded[name] == {text_sha256(ex.text) for ex in part if ex.source == source}
    assert {k: digest_of_hashes(v) for k, v in read_split_manifest(path).items()} == {
        k: digest_of_hashes(v) for k, v in corpus_split.hashes.items()
    }


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
