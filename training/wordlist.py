"""An opinion word list shipped in a package: AFINN (Finn Årup Nielsen), read from ``afinn`` 0.1's data files.

Each entry is a word (or a short phrase) with a value from -5 (very negative) to +5 (very positive). The word
lists are under the Open Database License 1.0, established by the package's own ``afinn/data/LICENSE`` (the
package's code is GPL; only its data files are read, never its code). A model trained with them is a
Produced Work under the ODbL: the card and NOTICE say so and name the database.

Two uses, both measured (docs/model.md):

- ``rule_label``: the word-list rule the card compares the model with, a dozen lines: neutral when a text
  holds no word of the list, otherwise the sign of the sum of its words' values, a negator flipping the
  next three words (AFINN-111, the 2011 list);
- ``WordList.prior``: each word's value divided by 5, the frozen input column the network reads beside
  each token's vector, and the evidence the weak labels of ``training.evidence`` are decided by
  (AFINN-en-165, the 2015 list of 3,382 entries).
"""

from __future__ import annotations

import importlib.metadata
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from model_runtime.contract import file_sha256
from training.data import DataError
from training.packages import data_package

PACKAGE, VERSION, MODULE = "afinn", "0.1", "afinn"
LIST_2011, LIST_2015 = "data/AFINN-111.txt", "data/AFINN-en-165.txt"
LICENCE_FILE = "data/LICENSE"
LICENCE = "Open Database License 1.0 (afinn/data/LICENSE in the package; the package's code is GPL, not used)"
ATTRIBUTION = "AFINN word list, Finn Årup Nielsen (2011, 2015), ODbL 1.0"
NEGATORS = frozenset(
    ["not", "n't", "no", "never", "nothing", "nobody", "none", "nor", "neither", "cannot", "without", "hardly"]
)
NEGATION_REACH = 3  # words after a negator whose values it flips
WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|n't")
CLITIC = re.compile(r"(\w)n't\b")  # "don't" -> "do n't", as the model's tokenizer splits it


@dataclass(frozen=True)
class WordList:
    values: dict[str, int]  # single words only (the phrases of the list are left out)
    file: str

    def prior(self, word: str) -> float:
        """The word's value scaled to [-1, 1]; 0 for a word not on the list."""
        return self.values.get(word, 0) / 5.0

    def scores(self, text: str, skip: frozenset[str] = frozenset()) -> list[float]:
        """The value of each word of ``text`` on the list (but those in ``skip``), flipped within NEGATION_REACH
        words after a negator."""
        out: list[float] = []
        flip_until = -1
        for i, word in enumerate(words(text)):
            if word in NEGATORS:
                flip_until = i + NEGATION_REACH
                if word in self.values and word not in ("no", "not"):
                    out.append(float(self.values[word]))
                continue
            if word in self.values and word not in skip:
                out.append(float(-self.values[word] if i <= flip_until else self.values[word]))
        return out


def words(text: str) -> list[str]:
    """Lower-case words, clitic ``n't`` split off (so "wasn't" is "was n't")."""
    return WORD.findall(CLITIC.sub(r"\1 n't", text.lower().replace("\u2019", "'")))


def rule_label(word_list: WordList, text: str) -> str:
    """The word-list rule: neutral without a word of the list, else the sign of the (negated) sum."""
    values = word_list.scores(text)
    total = sum(values)
    if not values or total == 0:
        return "neutral"
    return "positive" if total > 0 else "negative"


def _path(name: str) -> Path:
    path = Path(str(data_package(PACKAGE, VERSION).locate_file(f"{MODULE}/{name}")))
    if not path.is_file():
        raise DataError(f"word list: {path} is missing (pip install '{PACKAGE}=={VERSION}')")
    return path


@cache
def load_word_list(name: str = LIST_2015) -> WordList:
    values: dict[str, int] = {}
    for line in _path(name).read_text(encoding="utf-8").splitlines():
        word, _, value = line.rpartition("\t")
        if word and " " not in word:
            values[word.strip().lower()] = int(value)
    return WordList(values, name)


def describe_word_lists() -> dict[str, Any]:
    """The card's entry: package, version, licence, attribution and each file's sha256."""
    return {
        "package": PACKAGE,
        "version": importlib.metadata.version(PACKAGE),
        "licence": LICENCE,
        "attribution": ATTRIBUTION,
        "files": {name: file_sha256(_path(name)) for name in (LIST_2011, LIST_2015, LICENCE_FILE)},
        "words": {name: len(load_word_list(name).values) for name in (LIST_2011, LIST_2015)},
    }
