"""The common English words the language check reads (``model_runtime/english_words.txt``), made from the
training texts: ``python -m training.english_words``.

The most frequent words (by the number of texts that use them) of the training parts of the English polar
sources, less the words that other languages' everyday grammar shares (``model_runtime.language.SHARED_WORDS``:
"de", "la", "en", "die", "was", "in"...), which count for neither side. A text whose words are mostly
on this list is English with a few loanwords, a greeting or names ("Merci beaucoup for the fast
delivery!"), whatever a character-level detector makes of it.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from model_runtime.language import SHARED_WORDS
from training.sources import load_sources, make_split

OUT = Path(__file__).resolve().parent.parent / "model_runtime" / "english_words.txt"
SOURCES = ("imdb", "rotten_tomatoes", "tweets", "drug_reviews")
COUNT = 10000
WORD = re.compile(r"[a-z]+")


def common_words() -> list[str]:
    split = make_split(load_sources(SOURCES))
    counts: Counter[str] = Counter()
    for ex in split.train:
        counts.update(set(WORD.findall(ex.text.lower())))
    return [w for w, _ in counts.most_common() if w not in SHARED_WORDS][:COUNT]


def main() -> None:
    words = common_words()
    OUT.write_text("".join(f"{w}\n" for w in sorted(words)), encoding="utf-8")
    print(f"{len(words)} words -> {OUT}")


if __name__ == "__main__":
    main()
