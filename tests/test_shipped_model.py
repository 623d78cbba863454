"""The model shipped in models/sentiment-bilstm (three labels): its card is true, it classifies well, and
plain statements are neutral."""

from __future__ import annotations

import json

import numpy as np
import pytest

from model_runtime import Predictor, file_sha256, read_card
from tests.support import SHIPPED_MODEL
from training.data import Split, digest_of_hashes, read_split_manifest, text_sha256
from training.evaluate import ece_if_calibrated, metrics, score, slice_members
from training.sources import SPLIT_SOURCES

OBVIOUS = {
    "One of the best films I have ever seen. Brilliant acting, a moving story, I loved every minute.": "positive",
    "An absolute masterpiece: beautifully shot, superbly acted and wonderfully written.": "positive",
    "A delightful, funny and heartwarming film. Highly recommended!": "positive",
    "Great performances and a terrific script. 10/10, would watch again.": "positive",
    "I enjoyed it a lot; the cast is excellent and the ending is perfect.": "positive",
    "The worst movie I have ever seen. Boring, stupid and badly acted.": "negative",
    "A total waste of time and money. Awful script, terrible acting, no plot at all.": "negative",
    "Dull, predictable and far too long. I nearly walked out.": "negative",
    "Horrible. The dialogue is laughable and the direction is incompetent. 1/10.": "negative",
    "I hated it. Poorly written, poorly acted, avoid at all costs.": "negative",
}


@pytest.fixture(scope="module")
def shipped() -> Predictor:
    return Predictor.load(SHIPPED_MODEL, provider="cpu")


def test_card_matches_the_files(shipped: Predictor) -> None:
    card = json.loads((SHIPPED_MODEL / "model_card.json").read_text())
    for name, entry in card["files"].items():
        assert file_sha256(SHIPPED_MODEL / name) == entry["sha256"], name
        assert (SHIPPED_MODEL / name).stat().st_size == entry["bytes"], name
    assert (SHIPPED_MODEL / "model.onnx").stat().st_size <= 12 * 1024 * 1024
    assert card["metrics"]["test"]["examples"] == card["data"]["split_sizes"]["test"]
    manifest = read_split_manifest(SHIPPED_MODEL / "splits.tsv")
    assert {k: digest_of_hashes(v) for k, v in manifest.items()} == card["data"]["split_sha256"]
    assert not manifest["test"] & manifest["train"]


def test_obvious_reviews(shipped: Predictor) -> None:
    predictions = shipped.predict(list(OBVIOUS))
    assert [p.label for p in predictions] == list(OBVIOUS.values())
    assert all(p.score > 0.8 for p in predictions)


def test_accuracy_on_a_fixed_500_review_slice_of_the_test_split(shipped: Predictor, imdb_split: Split) -> None:
    """The first 250 test reviews of each class, in split (hash) order."""
    negatives = [ex for ex in imdb_split.test if imdb_split.labels[ex.label] == "negative"]
    positives = [ex for ex in imdb_split.test if imdb_split.labels[ex.label] == "positive"]
    sample = negatives[:250] + positives[:250]
    predictions = shipped.predict([ex.text for ex in sample], max_batch_tokens=16_384)
    truth = [imdb_split.labels[ex.label] for ex in sample]
    accuracy = np.mean([p.label == label for p, label in zip(predictions, truth, strict=True)])
    print(f"accuracy on the 500-review slice: {accuracy:.4f}")
    assert accuracy >= 0.89


def test_card_figures_per_source_are_recomputed_from_splits_tsv(shipped: Predictor, corpus_split: Split) -> None:
    """Every source's test accuracy and ECE in the card, and every slice's accuracy per source, recomputed here
    from the texts splits.tsv names."""
    card = read_card(SHIPPED_MODEL)
    by_source = card.metrics["test"]["by_source"]
    assert set(by_source) == set(SPLIT_SOURCES)
    probs, _ = score(shipped, corpus_split.test)  # the card's evaluation order, so the batches are the same
    for source, recorded in by_source.items():
        listed = read_split_manifest(SHIPPED_MODEL / "splits.tsv", source)["test"]
        rows = [i for i, ex in enumerate(corpus_split.test) if ex.source == source]
        assert {text_sha256(corpus_split.test[i].text) for i in rows} == listed
        truth = np.array([corpus_split.test[i].label for i in rows])
        m = metrics(shipped.labels, truth, probs[rows])
        assert m["examples"] == recorded["examples"]
        assert m["accuracy"] == pytest.approx(recorded["accuracy"], abs=1e-9), source
        assert m["macro_f1"] == pytest.approx(recorded["macro_f1"], abs=1e-9), source
        assert m["answered_neutral"] == pytest.approx(recorded["answered_neutral"], abs=1e-9), source
        if "polarity_accuracy" in recorded:  # the source has negative and positive texts
            assert m["polarity_accuracy"] == pytest.approx(recorded["polarity_accuracy"], abs=1e-9), source
        assert m["ece"] == pytest.approx(recorded["ece"], abs=1e-6), source
        assert m["log_loss"] == pytest.approx(recorded["log_loss"], abs=1e-6), source
        floor = ece_if_calibrated(probs[rows])  # the ECE a calibrated model shows on these texts (seeded)
        assert floor["median"] == pytest.approx(recorded["ece_if_calibrated"]["median"], abs=1e-3), source

    members = slice_members(shipped, corpus_split.test)
    sources = np.array([ex.source for ex in corpus_split.test])
    correct = probs.argmax(axis=1) == np.array([ex.label for ex in corpus_split.test])
    for name, per_source in card.metrics["test"]["by_slice"].items():
        assert set(per_source) == {"all", *SPLIT_SOURCES}, name
        for source, recorded in per_source.items():
            in_slice = members[name] & ((sources == source) | (source == "all"))
            assert int(in_slice.sum()) == recorded["examples"], (name, source)
            assert float(correct[in_slice].mean()) == pytest.approx(recorded["accuracy"], abs=1e-9), (name, source)


# Lukewarm one-liners 5.0.0 is too sure of (docs/model.md, 5.0.0's misses): "fine" is a positive word of
# the word list and a clear sentence of it was labelled positive; "not bad, not great" reads as its last words.
KNOWN_OVERCONFIDENT = {"It was fine.", "Not bad, not great."}


def test_short_texts_get_modest_confidence_not_certainty(shipped: Predictor) -> None:
    """Lukewarm or mixed one-liners are never near-certain of a polarity (the 1.0.0 model said 99.9%); a
    three-label model may well be sure they are neutral."""
    lukewarm = ["It was fine.", "It was okay, I guess.", "Not bad, not great.", "Some good parts, some bad."]
    for text, prediction in zip(lukewarm, shipped.predict(lukewarm), strict=True):
        modest = prediction.label == "neutral" or prediction.score < 0.95
        assert modest != (text in KNOWN_OVERCONFIDENT), (text, prediction)  # a miss mended: take it off the list


PLAIN_STATEMENTS = [
    "Your order has shipped.",
    "The meeting is at 3 pm on Tuesday.",
    "The company reported quarterly results on Monday.",
    "What time does the store open?",
    "The train leaves from platform 4.",
    "Tickets can be bought at the entrance or online.",
]


def test_plain_statements_are_neutral(shipped: Predictor) -> None:
    predictions = shipped.predict(PLAIN_STATEMENTS)
    assert [p.label for p in predictions] == ["neutral"] * len(PLAIN_STATEMENTS), predictions


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("The flight is terrible.", "negative"),
        ("The restaurant is good.", "positive"),
        ("The staff were friendly and helpful.", "positive"),
        ("The battery died after two days.", "negative"),
        ("The laptop was not good at all.", "negative"),
    ],
)
def test_one_clause_opinions_are_not_neutral(shipped: Predictor, text: str, label: str) -> None:
    """The one-clause opinions 4.0.0 answered neutral (it had learned that a short clean sentence is a
    neutral register's)."""
    assert shipped.predict([text])[0].label == label


@pytest.mark.parametrize("text", ["The phone is not terrible.", "Not bad at all.", "The battery is not bad."])
def test_a_negated_negative_is_never_negative(shipped: Predictor, text: str) -> None:
    assert shipped.predict([text])[0].label in ("neutral", "positive")


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("Great service, friendly staff, will come back!", "positive"),
        ("I want a refund, the app keeps crashing.", "negative"),
        ("The food was cold and the waiter was rude.", "negative"),
    ],
)
def test_everyday_texts_beyond_movie_reviews(shipped: Predictor, text: str, label: str) -> None:
    assert shipped.predict([text])[0].label == label
