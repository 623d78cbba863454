"""Labels by evidence, not by source: whether a sentence carries an opinion is read from its words, in
every register, so that no register is evidence of a label.

Model 4.0.0 learned where a text comes from: every neutral training text came from a register of its own
(encyclopedia, news, a dialogue corpus) and every polar one from reviews and complaint tweets, so "clean
edited prose" meant neutral and "a review sentence" meant polar. Here the same evidence decides in both
directions (``evidence``):

- a sentence with no word of the opinion word list (``training.wordlist``, values flipped after a
  negator) and none of the words the polar sources' training parts use far more under one label
  (``neutral_rule_words``) carries no opinion: neutral;
- a sentence whose list values add up to a clear sign (``CLEAR`` or more) carries that opinion;
- anything between (one mild word, mixed signs) is left out rather than guessed.

Two uses: the sentences of neutral-by-kind sources (``relabel``) keep their label only without opinion
and become polar with a clear one; the sentences of polar reviews (``review_sentences``) become training
texts of their own, neutral without opinion, polar when the evidence agrees with the review's label,
otherwise left out. Sentences are cut from each part of the split separately (``with_sentences``), so a
test review's sentences never train.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from model_runtime import Predictor
from model_runtime.sentences import split_sentences
from training.data import SENTIMENT_LABELS, Dataset, Example, Split, normalised, text_sha256
from training.wordlist import WordList, load_word_list, words

# |sum of a sentence's list values| from which it carries that opinion: in a review sentence whose review
# says the same (two witnesses), and in a sentence of a neutral-by-kind source (one witness, in a register
# where "win", "lack" or "favourite" often state facts).
CLEAR_AGREEING, CLEAR_ALONE = 2, 3
# Words of the list that running text mostly uses without an opinion ("looks like rain", "as well as",
# "pretty much", "please send", "free of charge", "no idea"): they count as evidence for neither side.
_AMBIGUOUS = """like likes liked well pretty kind please yes no ok okay help helps helped support supports supported
    free clear cleared fine matter true want wants wanted god share shares shared sure care cares interest
    interests interested save saved chance chances justice party parties"""
AMBIGUOUS = frozenset(_AMBIGUOUS.split())
# A rating ("7/10", "two out of five", "3 stars") is an opinion no word list sees.
_RATING = re.compile(r"\b\d+(?:\.\d+)?\s*(?:/|out of)\s*\d+\b|\bout of (?:ten|five|10|5)\b|\bstars?\b", re.I)
_BREAK = re.compile(r"(?i)<\s*br\s*/?\s*>")
MIN_WORDS, MAX_WORDS = 4, 40
GATE_BELOW = 0.75  # a polarity model this sure of a sentence's side makes it no evidence of "no opinion"


def evidence(word_list: WordList, polar_words: frozenset[str], text: str, clear: int = CLEAR_ALONE) -> str | None:
    """``neutral``, ``negative`` or ``positive`` as the words of ``text`` say, or None when they say too
    little to tell (the module docstring). Any word of the list, or of ``polar_words``, or a rating, is
    some opinion; the words of the list that are AMBIGUOUS do not count towards a side."""
    in_text = words(text)
    if not word_list.values.keys() & in_text and not polar_words.intersection(in_text) and not _RATING.search(text):
        return "neutral"
    total = sum(word_list.scores(text, skip=AMBIGUOUS))
    if abs(total) >= clear:
        return "positive" if total > 0 else "negative"
    return None


def relabel(
    examples: list[Example], polar_words: frozenset[str], word_list: WordList | None = None
) -> tuple[list[Example], int]:
    """A neutral-by-kind source's sentences labelled by their evidence; those it cannot tell are dropped
    (returned: the kept examples and how many were dropped)."""
    word_list = word_list or load_word_list()
    kept = []
    for ex in examples:
        label = evidence(word_list, polar_words, ex.text)
        if label is not None:
            kept.append(replace(ex, label=SENTIMENT_LABELS.index(label)))
    return kept, len(examples) - len(kept)


def sentences_of(text: str) -> list[str]:
    """The sentences of a review (``<br />`` as a line break), MIN_WORDS to MAX_WORDS words each."""
    text = _BREAK.sub("\n", text)
    found = (text[start : start + length] for start, length in split_sentences(text))
    return [s for s in found if MIN_WORDS <= len(s.split()) <= MAX_WORDS]


Sure = Callable[[list[str]], list[float]]  # texts -> how sure a polarity model is of each one's side


def review_sentences(
    examples: list[Example],
    labels: tuple[str, ...],
    polar_words: frozenset[str],
    per_label: int,
    name: str,
    sure: Sure | None = None,
) -> list[Example]:
    """Up to ``per_label`` sentences per label cut from polar reviews, labelled by evidence that agrees with
    the review (one neutral and one polar sentence per review at most, chosen by hash), as source ``name``.
    With ``sure``, a sentence without opinion words is neutral only if a polarity model is also less than
    GATE_BELOW sure of its side: an opinion in words no list holds ("a tremendous performance") is left out."""
    word_list = load_word_list()
    candidates: list[tuple[str, list[tuple[str, str | None]]]] = []  # per review: its label, its sentences' evidence
    for review in sorted(examples, key=lambda ex: text_sha256(ex.text)):
        ordered = sorted(sentences_of(review.text), key=lambda s: hashlib.sha256(s.encode()).hexdigest())
        candidates.append(
            (labels[review.label], [(s, evidence(word_list, polar_words, s, CLEAR_AGREEING)) for s in ordered])
        )
    doubtful: set[str] = set()
    if sure is not None:
        neutral = sorted({s for _, found in candidates for s, label in found if label == "neutral"})
        doubtful = {s for s, p in zip(neutral, sure(neutral), strict=True) if p >= GATE_BELOW}
    chosen: dict[str, list[Example]] = {label: [] for label in labels}
    for review_label, found in candidates:
        taken: set[str] = set()
        for sentence, label in found:
            kind = "neutral" if label == "neutral" else "polar"
            if label not in (review_label, "neutral") or kind in taken or sentence in doubtful:
                continue
            if len(chosen[label]) < per_label:
                chosen[label].append(Example(sentence, labels.index(label), name))
                taken.add(kind)
    return [ex for label in labels for ex in chosen[label]]


REPOSITORY = Path(__file__).resolve().parent.parent


def sure_of(model_dir: str) -> Sure:
    """How sure the model of ``model_dir`` (relative to the repository) is of each text's side: the larger of
    P(positive) and P(negative), renormalised between the two."""
    predictor = Predictor.load(REPOSITORY / model_dir, provider="cpu")

    def sure(texts: list[str]) -> list[float]:
        found = predictor.predict(texts, 4096, languages=[False] * len(texts))
        shares = [
            p.probabilities["positive"] / (p.probabilities["positive"] + p.probabilities["negative"]) for p in found
        ]
        return [max(share, 1 - share) for share in shares]

    return sure


def with_sentences(split: Split, dataset: Dataset) -> Split:
    """``split`` with the evidence-labelled sentences of the sources ``dataset.sentence_sources`` names
    (source -> sentences per label in the training part; validation and test get their shares), each part's
    sentences cut from that part's reviews only, a copy of a text already in the split (the same normalised
    form, ``training.data.normalised``) left out."""
    if not dataset.sentence_sources:
        return split
    seen = {normalised(ex.text) for part in split.parts().values() for ex in part}
    trained_on = {source: sum(ex.source == source for ex in split.train) for source in dataset.sentence_sources}
    parts = {}
    for part_name, part in split.parts().items():
        extra: list[Example] = []
        for source, per_label in sorted(dataset.sentence_sources.items()):
            reviews = [ex for ex in part if ex.source == source]
            share = max(1, per_label * len(reviews) // max(trained_on[source], 1))
            gate = dataset.sentence_gates.get(source)
            made = review_sentences(
                reviews,
                split.labels,
                dataset.polar_words,
                share,
                f"{source}_sentences",
                sure_of(gate) if gate else None,
            )
            for ex in made:
                if (key := normalised(ex.text)) not in seen:
                    seen.add(key)
                    extra.append(ex)
        parts[part_name] = part + extra
    hashes = {name: sorted(text_sha256(ex.text) for ex in part) for name, part in parts.items()}
    return replace(split, train=parts["train"], validation=parts["validation"], test=parts["test"], hashes=hashes)
