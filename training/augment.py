"""More training inputs made from the training texts themselves: short ones cut from long ones
(``SpanSampler``: runs of 1-3 consecutive sentences of a long text, with its label, so that the network
sees short texts and learns that a plain plot sentence from a positive review says little), and minimal
changes that change the label (``Counterfactuals``: negation and contrast)."""

from __future__ import annotations

import math
import random
from collections import Counter
from typing import Any

SPAN_MIN_SOURCE_TOKENS = 60  # only texts longer than this give sentence spans
SPAN_MAX_TOKENS = 100
SENTENCE_ENDS = (".", "!", "?")


class SpanSampler:
    """Random runs of 1-3 consecutive sentences of the long training texts, as token-id lists."""

    def __init__(self, tokenizer: Any, ids: list[list[int]], labels: list[int]) -> None:
        end_ids = {tokenizer.token_to_id(t) for t in SENTENCE_ENDS} - {None}
        self.items = []  # (text index, sentence start positions, sentence end positions)
        for i, x in enumerate(ids):
            if len(x) > SPAN_MIN_SOURCE_TOKENS:
                ends = [p + 1 for p, t in enumerate(x) if t in end_ids]
                if not ends or ends[-1] != len(x):
                    ends.append(len(x))
                self.items.append((i, [0, *ends[:-1]], ends))
        self.ids, self.labels = ids, labels

    def sample(self, fraction: float, rng: random.Random) -> tuple[list[list[int]], list[int], list[int]]:
        """Spans of about ``fraction`` of the long texts: (token ids, labels, index of the text each came from)."""
        chosen = [item for item in self.items if rng.random() < fraction]
        spans, labels, parents = [], [], []
        for i, starts, ends in chosen:
            first = rng.randrange(len(starts))
            last = min(len(ends) - 1, first + rng.choice((0, 0, 1, 2)))
            begin, stop = starts[first], min(ends[last], starts[first] + SPAN_MAX_TOKENS)
            if stop - begin >= 2:
                spans.append(self.ids[i][begin:stop])
                labels.append(self.labels[i])
                parents.append(i)
        return spans, labels, parents


NEGATION_FRAMES = ("not", "is not", "was not", "are not", "is n't", "was n't", "do n't", "never", "not at all")
NEGATORS = ("not", "n't", "never", "no", "nothing", "hardly", "without", "nor", "neither", "cannot")
POLAR_LOG_ODDS = 1.0  # a word is polar when one label's texts use it e (2.7) times as often as the other's
POLAR_MIN_COUNT = 10  # texts of one source that use the word
POLAR_SOURCES = 2  # sources in which it must be polar the same way (a topical word is polar in one at most)
SHORT = 25  # tokens: "A, but B" pairs are made of texts this short
ENDS = (".", "!", "?")


class Counterfactuals:
    """Training inputs that teach what negation and contrast do, made from the training split's own texts
    and labels (nothing is written by hand), so that the network stops reading "not bad" as bad:

    - negation: the words that the training texts of one label use far more often than the other's, in at
      least two sources alike (``polar_tokens``: so "great" and "awful", not an airline's name that only
      complaints mention), each in a short negation frame ("not", "was n't", "never"...) with the other
      label: "not bad" positive, "was n't great" negative. This is the phrase-level supervision sentiment
      treebanks give (Socher et al. 2013), derived from the data;
    - contrast: two short training texts of different labels joined as "A, but B", with B's label.
    """

    def __init__(
        self,
        tokenizer: Any,
        ids: list[list[int]],
        labels: list[int],
        sources: list[str],
        polar_labels: tuple[int, int] = (0, 1),
    ) -> None:
        """``polar_labels``: the label indices of negative and positive (a neutral label is left alone)."""
        self.polar_labels = polar_labels
        self.frames = [[tokenizer.token_to_id(t) for t in frame.split()] for frame in NEGATION_FRAMES]
        self.frames = [f for f in self.frames if None not in f]
        self.comma, self.but = tokenizer.token_to_id(","), tokenizer.token_to_id("but")
        self.ends = {tokenizer.token_to_id(t) for t in ENDS} - {None}
        negators = {tokenizer.token_to_id(t) for t in NEGATORS}
        pieces = {i for t, i in tokenizer.get_vocab().items() if t.startswith("##")}
        self.leaning = [polar_labels.index(label) if label in polar_labels else -1 for label in labels]
        polarity = polar_tokens(ids, self.leaning, sources)
        self.polar = sorted((t, p) for t, p in polarity.items() if t not in negators | pieces | self.ends)
        self.short = [i for i, x in enumerate(ids) if 2 <= len(x) <= SHORT and self.leaning[i] >= 0]
        self.ids = ids

    def sample(self, negations: int, contrasts: int, rng: random.Random) -> tuple[list[list[int]], list[int], int]:
        """``negations`` negated polar words, then ``contrasts`` "A, but B" pairs: (token ids, labels, how
        many of them are negations). A negated word's label is the other polarity; with a neutral label the
        loss also allows neutral for it ("not bad": positive or neutral, never negative)."""
        out, labels = [], []
        for _ in range(negations if self.polar and self.frames else 0):
            token, polarity = rng.choice(self.polar)
            out.append([*rng.choice(self.frames), token])
            labels.append(self.polar_labels[1 - polarity])
        made_negations = len(out)
        by_leaning: dict[int, list[int]] = {}
        for i in self.short:
            by_leaning.setdefault(self.leaning[i], []).append(i)
        if self.comma is not None and self.but is not None and len(by_leaning) == 2:
            for _ in range(contrasts):
                second = rng.choice(self.short)
                head = self.ids[rng.choice(by_leaning[1 - self.leaning[second]])]
                while head and head[-1] in self.ends:  # "A." + ", but B" reads "A, but B"
                    head = head[:-1]
                out.append([*head, self.comma, self.but, *self.ids[second]])
                labels.append(self.polar_labels[self.leaning[second]])
        return out, labels, made_negations


def polar_tokens(
    ids: list[list[int]], labels: list[int], sources: list[str], in_sources: int = POLAR_SOURCES
) -> dict[int, int]:
    """Token -> the label whose texts use it at least e^POLAR_LOG_ODDS times as often as the other label's
    (per text, smoothed), in at least ``in_sources`` sources and the other way in none."""
    signs: dict[int, list[int]] = {}
    for source in sorted(set(sources)):
        rows = [i for i, s in enumerate(sources) if s == source and labels[i] in (0, 1)]
        counts: list[Counter[int]] = [Counter(), Counter()]
        for i in rows:
            counts[labels[i]].update(set(ids[i]))
        texts = [sum(labels[i] == label for i in rows) for label in (0, 1)]
        for token in set(counts[0]) | set(counts[1]):
            n0, n1 = counts[0][token], counts[1][token]
            if n0 + n1 >= POLAR_MIN_COUNT:
                log_odds = math.log((n1 + 1) / (texts[1] + 2)) - math.log((n0 + 1) / (texts[0] + 2))
                if abs(log_odds) >= POLAR_LOG_ODDS:
                    signs.setdefault(token, []).append(int(log_odds > 0))
    return {t: v[0] for t, v in signs.items() if len(v) >= in_sources and len(set(v)) == 1}
