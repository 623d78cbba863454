"""The sentences of a document, as (offset, length) in Unicode code points of the text as sent.

Chosen by measurement (docs/documents.md, ``python -m bench.sentence_splitters``): sentencex (rule-based,
about 300,000 sentences per second on one core, 0.03 s for a 100,000-character document) on each line of
the text, because a line break ends a sentence in the texts people paste (bullet lists and headings carry
no full stop), then three rules for what review text has and the library does not know:

- an emoji, an emoticon or a closing bracket after a full stop, followed by a capital letter, ends a
  sentence ("Loved it 😍 Will buy again!", "(Mostly.) The end was weak.");
- emoji after a sentence's final mark belong to that sentence ("Thanks!!! 👍👍 Fast shipping");
- a list number ("1.") or a bracketed aside that the library cut off is joined to its neighbour.

Every sentence is a slice of the text: ``text[offset:offset + length]``, white space at its ends left out.
"""

from __future__ import annotations

import re

from sentencex import segment

# Pictographs, dingbats and symbols, flags, and their joiners and variation selectors.
_EMOJI = "\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\ufe0f\u200d\U0001f1e6-\U0001f1ff"
_EMOTICON = r"[:;=8][\-o'^]?[()\[\]dDpP/\\|]+"
# An emoji run or an emoticon, then white space, then a capital letter: a boundary after the run. Linear in
# the text: a run is tried from its first symbol only (the look-behind) and never given back (possessive), so
# a document of 100,000 emoji is one pass, not a pass from every position of the run.
_BREAK_AFTER_SYMBOL = re.compile(rf"(?:(?<![{_EMOJI}])[{_EMOJI}]++|(?<!\S){_EMOTICON}|[.!?][)\]]++)(?=\s+[A-Z])")
_LEADING_EMOJI = re.compile(rf"^[{_EMOJI}]+(?=\s|$)")
_LIST_NUMBER = re.compile(r"^\(?\d{1,3}[.)]$")


def split_sentences(text: str) -> list[tuple[int, int]]:
    """(offset, length) of each sentence, in order, in code points; none for a text of white space."""
    spans: list[tuple[int, int]] = []
    position = 0
    for line in text.split("\n"):
        if line.strip():
            spans += _line_sentences(text, position, line)
        position += len(line) + 1
    return [(start, end - start) for start, end in spans]


def _line_sentences(text: str, base: int, line: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    cursor = 0
    for sentence in segment("en", line):
        piece = sentence.strip()
        if not piece:
            continue
        start = line.find(piece, cursor)
        if start < 0:  # the library changed the text: keep the rest of the line as one sentence
            start = _first_non_space(line, cursor)
            piece = line[start:].rstrip()
        cursor = start + len(piece)
        spans += _symbol_breaks(line, start, cursor)
    return [(base + a, base + b) for a, b in _joined(line, spans)]


def _symbol_breaks(line: str, start: int, end: int) -> list[tuple[int, int]]:
    spans = []
    for match in _BREAK_AFTER_SYMBOL.finditer(line, start, end):
        spans.append((start, match.end()))
        start = _first_non_space(line, match.end())
    spans.append((start, end))
    return spans


def _joined(line: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in spans:
        piece = line[start:end]
        leading = _LEADING_EMOJI.match(piece)
        if out and leading:  # "Thanks!!!" + "👍👍 Fast shipping"
            out[-1] = (out[-1][0], start + leading.end())
            start = _first_non_space(line, start + leading.end())
            if start >= end:
                continue
        if out and (_LIST_NUMBER.match(line[out[-1][0] : out[-1][1]]) or piece.startswith(")")):
            out[-1] = (out[-1][0], end)  # "1." + "Unbox it."; "(Mostly." + ")"
        else:
            out.append((start, end))
    return out


def _first_non_space(line: str, position: int) -> int:
    while position < len(line) and line[position].isspace():
        position += 1
    return position
