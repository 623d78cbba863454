"""What a text is before it is scored, for every caller alike: whether it has anything the model reads
(``readable``), and the sentences of a document that the model reads (``document_sentences``).

White space is JSON Schema's (ECMA-262) plus U+0085 (NEXT LINE), which the tokenizer reads as white space
too, so that the pattern the service's OpenAPI document publishes (``NOT_ONLY_WHITESPACE``) and the service
agree on every string but one kind: a text of nothing but ``<br>`` tags and white space, which the tokenizer
reads as nothing. (Python's ``str.isspace`` also counts U+001C..U+001F and leaves out U+FEFF: a text of one
U+001C is a text; a text of one U+FEFF, a byte-order mark, is not.) Both run in linear time.
"""

from __future__ import annotations

import re

from model_runtime.sentences import split_sentences

WHITESPACE = r"\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
NOT_ONLY_WHITESPACE = rf"[^{WHITESPACE}]"
_NOT_ONLY_WHITESPACE = re.compile(NOT_ONLY_WHITESPACE)
# Line-break tags, which the tokenizer reads as white space (the one rule the published pattern cannot say).
# Possessive: an opener with no closing ">" ("<br" and 100,000 spaces) is read once, never re-split.
_BREAK_TAG = re.compile(rf"<[{WHITESPACE}]*+br[{WHITESPACE}]*+/?+[{WHITESPACE}]*+>", re.IGNORECASE)


def readable(text: str) -> bool:
    """Whether a text has anything the model reads: a character that is not white space or a <br> tag."""
    if "<" not in text:
        return bool(_NOT_ONLY_WHITESPACE.search(text))
    return bool(_NOT_ONLY_WHITESPACE.search(_BREAK_TAG.sub(" ", text)))


def document_sentences(text: str) -> list[tuple[int, int]]:
    """The sentences the model reads, (offset, length): a sentence of nothing but ``<br />`` is none; a text
    that is readable but has no sentence the splitter sees (a lone U+001C) is one sentence."""
    sentences = [(a, n) for a, n in split_sentences(text) if readable(text[a : a + n])]
    if not sentences and readable(text):
        sentences = [(0, len(text))]
    return sentences
