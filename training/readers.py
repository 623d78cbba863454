"""Rows of the labelled sources that are not CSV files: text that is neutral by its kind (encyclopedic
articles, news reports, a dialogue corpus's questions and answers), cut into sentences.

Each reader yields ``{"text": ..., "label": "neutral"}`` rows, so that a ``Source`` entry treats them as it
treats a CSV file's rows. Which of these sentences stay neutral is decided afterwards by one measured rule
(``training.sources``: a sentence that uses a word the labelled polar texts use far more often under one
label is dropped), not here.
"""

from __future__ import annotations

import bz2
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import yaml

from training.augment import polar_tokens
from training.data import SENTIMENT_LABELS, Example, split_one_source

# A sentence ends at . ! or ? followed by white space and an upper-case letter, a quote or a bracket.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"(])")
_SPACE = re.compile(r"\s+")
MIN_WORDS, MAX_WORDS = 4, 40


def sentences(paragraph: str) -> Iterator[str]:
    """The sentences of a paragraph of edited prose, white space collapsed, 4-40 words each."""
    for sentence in _SENTENCE_END.split(paragraph.strip()):
        sentence = _SPACE.sub(" ", sentence).strip()
        if MIN_WORDS <= len(sentence.split()) <= MAX_WORDS:
            yield sentence


def _strip_wikitext(text: str) -> str:
    """Wiki markup to plain prose: comments, references, templates and tables, file and category links go;
    a link keeps its shown text; bold and italic quotes and HTML tags go."""
    text = re.sub(r"<!--.*?-->", " ", text, flags=re.S)
    text = re.sub(r"<ref[^>/]*/>", " ", text)
    text = re.sub(r"<ref[^>]*>.*?</ref>", " ", text, flags=re.S)
    for _ in range(8):  # nested templates and tables, innermost first
        stripped = re.sub(r"\{\|[^{}]*?\|\}", " ", re.sub(r"\{\{[^{}]*\}\}", " ", text), flags=re.S)
        if stripped == text:
            break
        text = stripped
    text = re.sub(r"\[\[(?:File|Image|Category):[^\[\]]*(?:\[\[[^\]]*\]\][^\[\]]*)*\]\]", " ", text)
    text = re.sub(r"\[\[[^\]|]*\|([^\]]*)\]\]", r"\1", text)
    text = re.sub(r"\[\[([^\]]*)\]\]", r"\1", text)
    text = re.sub(r"\[https?://\S+ ([^\]]*)\]", r"\1", text)
    text = re.sub(r"'{2,}", "", text)
    return re.sub(r"<[^>]+>", " ", text)


def wikipedia_sentences(path: Path) -> Iterator[dict[str, str]]:
    """Sentences of the articles (namespace 0, not redirects) of a bz2 Wikipedia XML dump: paragraphs of
    prose only (a line that starts with a letter), sentences with no markup left and a final . ! or ?."""
    with bz2.open(path) as f:
        root = ET.fromstring(f.read())
    ns = root.tag.split("}")[0] + "}"
    for page in root.iter(f"{ns}page"):
        if page.findtext(f"{ns}ns") != "0" or page.find(f"{ns}redirect") is not None:
            continue
        for paragraph in _strip_wikitext(page.findtext(f"{ns}revision/{ns}text") or "").split("\n"):
            if paragraph[:1].isalpha():
                for sentence in sentences(paragraph):
                    if sentence[-1] in ".!?" and not re.search(r"[{}\[\]|=<>]", sentence):
                        yield {"text": sentence, "label": "neutral"}


def article_sentences(path: Path) -> Iterator[dict[str, str]]:
    """Sentences of a file that holds one news article per line."""
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            for sentence in sentences(line):
                yield {"text": sentence, "label": "neutral"}


DIALOGUE_TOPICS_LEFT_OUT = ("emotion", "humor", "gossip", "psychology")  # talk about feelings and jokes


def dialogue_utterances(directory: Path) -> Iterator[dict[str, str]]:
    """Every utterance of a dialogue corpus's English YAML files (questions, answers, instructions), but
    for the topics about feelings and jokes; one line, two words or more, no code."""
    for path in sorted(directory.glob("*.yml")):
        if path.stem in DIALOGUE_TOPICS_LEFT_OUT:
            continue
        for conversation in yaml.safe_load(path.read_text(encoding="utf-8")).get("conversations", []):
            for utterance in conversation:
                text = str(utterance).strip()
                if "\n" not in text and "`" not in text and len(text.split()) >= 2:
                    yield {"text": text, "label": "neutral"}


READERS = {
    "wikipedia": wikipedia_sentences,
    "articles": article_sentences,
    "dialogue": dialogue_utterances,
}


_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def neutral_rule_words(examples: list[Example], seeds: dict[str, str], in_sources: int = 2) -> frozenset[str]:
    """The words that the training parts of the polar sources use e times as often under one label as
    under the other, in ``in_sources`` sources alike (``training.augment.polar_tokens``; in two: "great",
    "awful", not an airline's name; in one: also "wooden", "predictable", "refund"). A sentence that uses
    one of them is not evidence of "no opinion" (``training.evidence``). Only training parts are read, so
    no test text decides what another source keeps."""
    polar = [ex for ex in examples if ex.label != SENTIMENT_LABELS.index("neutral")]
    train = []
    for source in sorted({ex.source for ex in polar}):
        train += split_one_source([ex for ex in polar if ex.source == source], seed=seeds[source])[0]
    vocabulary: dict[str, int] = {}
    ids = [[vocabulary.setdefault(w, len(vocabulary)) for w in words(ex.text)] for ex in train]
    binary = [int(ex.label == SENTIMENT_LABELS.index("positive")) for ex in train]
    names = {i: w for w, i in vocabulary.items()}
    return frozenset(names[i] for i in polar_tokens(ids, binary, [ex.source for ex in train], in_sources))
