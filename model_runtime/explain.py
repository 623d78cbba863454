"""Occlusion explanations from the ONNX model alone (so they work in the serving image, without torch).

A text is scored once as it is and once per word with that word's tokens replaced by one ``[UNK]``, all
rows in length groups. A word's weight for a label is the change in that label's log-odds when the word is
removed: log-odds(label | text) - log-odds(label | text without the word); positive where the word pushed
towards the label, +1 means it multiplied the label's odds by e. Log-odds, unlike probabilities, still show
a word's pull when the prediction is near-certain. Words are the tokenizer's pre-tokenised words (a
sub-word vocabulary may spell one word with several pieces), with character offsets into the text as sent;
a clitic the tokenizer splits off (``n't``, ``'s``, ``'re``, ``'ve``, ``'ll``, ``'d``, ``'m``) stays with its
word, so "DON'T" is one word, as written.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from itertools import groupby

import numpy as np
import numpy.typing as npt

from model_runtime.contract import UNK_ID
from model_runtime.predictor import Prediction, Predictor

CLITIC = re.compile(r"(?i)n['\u2019]t|['\u2019](?:s|re|ve|ll|d|m)")


@dataclass(frozen=True, slots=True)
class WordWeight:
    """One word of the text as the model saw it: its original characters ``text[start:end]`` and how much
    it pushed each label's log-odds (None before the explained window)."""

    text: str
    start: int
    end: int
    weights: dict[str, float] | None


@dataclass(frozen=True, slots=True)
class Explanation:
    prediction: Prediction
    words: list[WordWeight]
    explained_tokens: int  # the last ``explained_tokens`` words carry weights
    capped: bool  # the text had more words than the explanation cap


def explain(
    predictor: Predictor,
    text: str,
    max_words: int,
    max_batch_tokens: int | None = None,
    run: Callable[[list[list[int]]], npt.NDArray[np.float32]] | None = None,
) -> Explanation:
    """Weights for the last ``max_words`` words of ``text`` (each costs one extra model row); earlier
    words come back with ``weights=None`` and the explanation says ``capped``. The rows are scored in
    length groups, each by ``run`` (default: the predictor's own session), so a caller can schedule them."""
    encoding = predictor.tokenizer.encode(text, add_special_tokens=False)
    ids = encoding.ids
    spans = _word_spans(text, encoding.word_ids, encoding.offsets)
    first = max(0, len(spans) - max_words)
    rows = [ids] + [[*ids[:a], UNK_ID, *ids[b:]] for a, b in spans[first:]]
    probs = predictor.grouped_probabilities(rows, max_batch_tokens, run=run)
    log_odds = _log_odds(probs)
    words = []
    for k, (a, b) in enumerate(spans):
        start, end = encoding.offsets[a][0], _past_marks(text, encoding.offsets[b - 1][1])
        weights = None
        if k >= first:
            delta = (log_odds[0] - log_odds[1 + k - first]).round(4).tolist()
            weights = dict(zip(predictor.labels, delta, strict=True))
        words.append(WordWeight(text[start:end], start, end, weights))
    prediction = predictor.prediction(probs[0].tolist(), encoding, predictor.language(text))
    return Explanation(prediction, words, len(spans) - first, first > 0)


def _past_marks(text: str, end: int) -> int:
    """``end`` moved past the combining marks that follow it: a decomposed accent ("cafe\u0301") belongs
    to its word, which the tokenizer reads composed (NFKC) and whose offsets stop before the mark."""
    while end < len(text) and unicodedata.category(text[end]).startswith("M"):
        end += 1
    return end


def _word_spans(text: str, word_ids: list[int | None], offsets: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """(first token, end token) of each word, in order: word_ids group a word's pieces, and a clitic that
    directly follows its word joins it."""
    spans: list[tuple[int, int]] = []
    position = 0
    for _, pieces in groupby(word_ids):
        end = position + len(list(pieces))
        start_char, end_char = offsets[position][0], offsets[end - 1][1]
        if spans and offsets[spans[-1][1] - 1][1] == start_char and CLITIC.fullmatch(text[start_char:end_char]):
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((position, end))
        position = end
    return spans


def _log_odds(probs: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """(R, C) log-odds of each label against all others, from the small probabilities (exact even where a
    float32 probability has rounded to 1.0)."""
    log_p = np.log(np.maximum(probs.astype(np.float64), np.finfo(np.float64).tiny))
    others = [np.logaddexp.reduce(np.delete(log_p, j, axis=1), axis=1) for j in range(log_p.shape[1])]
    result: npt.NDArray[np.float64] = log_p - np.stack(others, axis=1)
    return result
