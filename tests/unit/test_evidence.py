"""Labels by evidence: the word-list rule and the weak labels read from a sentence's words, on hand-made
sentences (the opinion word list is the real one, read from its package)."""

from __future__ import annotations

import pytest

from training.data import SENTIMENT_LABELS, Example
from training.evidence import evidence, relabel, review_sentences
from training.wordlist import LIST_2011, load_word_list, rule_label

POLAR_WORDS = frozenset({"wooden", "predictable"})  # as the polar sources' training parts would give them


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("The film is about two brothers who inherit a farm.", "neutral"),
        ("The acting is wonderful and the story is beautiful.", "positive"),
        ("The food was awful and the waiter was rude.", "negative"),
        ("The acting was wooden.", None),  # a polar word of the sources, but no list value: too little to tell
        ("I give it 7/10.", None),  # a rating is an opinion no word list sees
        ("It was good.", "positive"),  # "good" is +3: clear on its own
        ("It was fine, I guess.", None),  # an ambiguous word of the list only: no label
        ("The battery is not good at all.", "negative"),  # a negator flips the next words
        ("Please send the file.", None),  # "please" is on the list but says nothing here: not neutral either
    ],
)
def test_evidence_reads_opinion_from_words(text: str, label: str | None) -> None:
    assert evidence(load_word_list(), POLAR_WORDS, text) == label, text


def test_neutral_register_sentences_with_clear_opinion_become_polar_and_the_unclear_are_dropped() -> None:
    neutral = SENTIMENT_LABELS.index("neutral")
    examples = [
        Example("The river flows north into the lake.", neutral, "encyclopedia"),
        Example("The war devastated the economy and killed thousands.", neutral, "encyclopedia"),
        Example("He won the award.", neutral, "encyclopedia"),
        Example("The album was a huge success and critics loved it.", neutral, "encyclopedia"),
    ]
    kept, dropped = relabel(examples, POLAR_WORDS)
    assert [(ex.text, SENTIMENT_LABELS[ex.label]) for ex in kept] == [
        ("The river flows north into the lake.", "neutral"),
        ("The war devastated the economy and killed thousands.", "negative"),
        ("He won the award.", "positive"),
        ("The album was a huge success and critics loved it.", "positive"),
    ]
    assert dropped == 0


def test_review_sentences_are_neutral_without_opinion_and_polar_only_as_their_review_says() -> None:
    positive = SENTIMENT_LABELS.index("positive")
    review = Example(
        "I watched it on a Sunday with my brother. The acting is wonderful and the music is beautiful. "
        "The villain is awful and cruel.",
        positive,
        "imdb",
    )
    made = review_sentences([review], SENTIMENT_LABELS, POLAR_WORDS, per_label=5, name="imdb_sentences")
    assert {(ex.text, SENTIMENT_LABELS[ex.label]) for ex in made} == {
        ("I watched it on a Sunday with my brother.", "neutral"),
        ("The acting is wonderful and the music is beautiful.", "positive"),
    }  # the negative sentence disagrees with its positive review: left out
    assert all(ex.source == "imdb_sentences" for ex in made)
    gated = review_sentences(
        [review], SENTIMENT_LABELS, POLAR_WORDS, 5, "imdb_sentences", sure=lambda t: [0.9] * len(t)
    )
    assert [SENTIMENT_LABELS[ex.label] for ex in gated] == ["positive"]  # a model sure of its side: not neutral


def test_the_word_list_rule_is_the_sign_of_the_sum_with_negation() -> None:
    afinn = load_word_list(LIST_2011)
    assert rule_label(afinn, "The meeting is at 3 pm.") == "neutral"
    assert rule_label(afinn, "The flight is terrible.") == "negative"
    assert rule_label(afinn, "The restaurant is good.") == "positive"
    assert rule_label(afinn, "The laptop was not good at all.") == "negative"
    assert rule_label(afinn, "Not bad at all!") == "positive"
    assert rule_label(afinn, "The battery died after two days.") == "negative"  # "died" is on the list
