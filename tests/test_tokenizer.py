"""The shared tokenizer: its rules, and parity between training's tokenizer and the served file."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer

from model_runtime import Predictor
from training.data import Split
from training.tokenizer import PAD_ID, UNK_ID, UNK_TOKEN, train_tokenizer

CORPUS = [
    "This movie was great!<br /><br />I loved it.",
    "Terrible film. I don't recommend it... 1/10",
    "A GREAT cast, a great script: great!",
    "Café crème — naïve but ＦＵＮ 😀",
    "They said 'fun' and meant it",
] * 3


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return train_tokenizer(CORPUS, vocab_size=1000, max_tokens=12, min_frequency=1)


def tokens(tok: Tokenizer, text: str) -> list[str]:
    return tok.encode(text).tokens


def test_special_tokens_have_reserved_ids(tokenizer: Tokenizer) -> None:
    assert tokenizer.token_to_id("[PAD]") == PAD_ID
    assert tokenizer.token_to_id(UNK_TOKEN) == UNK_ID


def test_br_markup_case_and_punctuation(tokenizer: Tokenizer) -> None:
    assert tokens(tokenizer, "Great!<br /><br/>I LOVED<BR>it.") == ["great", "!", "i", "loved", "it", "."]
    assert "br" not in tokens(tokenizer, "a<br />b")


def test_apostrophes_stay_inside_words_and_quotes_split(tokenizer: Tokenizer) -> None:
    assert tokens(tokenizer, "I don't 'recommend' it") == ["i", "don't", "'", "recommend", "'", "it"]
    assert tokens(tokenizer, "I DON'T") == ["i", "don't"]


def test_nfkc_folds_compatibility_characters(tokenizer: Tokenizer) -> None:
    assert tokens(tokenizer, "ＦＵＮ") == ["fun"]  # full-width letters
    assert tokens(tokenizer, "caf\u0065\u0301") == ["café"]  # combining accent composes


def test_emoji_and_unknown_words(tokenizer: Tokenizer) -> None:
    assert tokens(tokenizer, "😀 zyzzyva 🤖") == ["😀", "[UNK]", "[UNK]"]


def test_empty_and_whitespace_give_no_tokens(tokenizer: Tokenizer) -> None:
    assert tokenizer.encode("").ids == []
    assert tokenizer.encode(" \n\t<br />").ids == []


def test_long_texts_keep_their_end(tokenizer: Tokenizer) -> None:
    text = " ".join(["great"] * 20 + ["terrible", "film"])
    enc = tokenizer.encode(text)
    assert len(enc.ids) == 12
    assert enc.tokens[-2:] == ["terrible", "film"]
    assert enc.overflowing  # flagged as truncated


def test_service_tokenizes_exactly_as_training(tiny_run: Path, tiny_model_dir: Path, corpus_split: Split) -> None:
    """Training's in-memory tokenizer, rebuilt the same way, and the file the service loads agree."""
    from tests.support import TINY_CONFIG
    from training.train import TrainConfig, _cap

    assert isinstance(TINY_CONFIG, TrainConfig)
    trained = train_tokenizer(
        (ex.text for ex in _cap(corpus_split.train, TINY_CONFIG.max_samples, TINY_CONFIG.seed)),
        TINY_CONFIG.vocab_size,
        TINY_CONFIG.max_tokens,
        TINY_CONFIG.min_frequency,
        TINY_CONFIG.tokenizer,
    )
    served = Predictor.load(tiny_model_dir, provider="cpu")
    odd = [
        "NUL\x00byte",
        "tabs\tand\nnewlines",
        "ｆｕｌｌ ｗｉｄｔｈ",
        "👍🏽 👨‍👩‍👧",
        "<br/>only<br />markup<br>",
        "a" * 5000,
    ]
    texts = [ex.text for ex in corpus_split.test[:150] + corpus_split.test[-150:]] + CORPUS + odd
    expected = trained.encode_batch(texts)
    got = served.encode(texts)
    assert [e.ids for e in got] == [e.ids for e in expected]
    assert [bool(e.overflowing) for e in got] == [bool(e.overflowing) for e in expected]


def test_subwords_spell_unseen_words_inside_word_boundaries() -> None:
    """A sub-word vocabulary keeps misspellings and new names readable instead of [UNK]; every piece
    belongs to exactly one word of the text (what /explain groups by); training it twice gives the same
    vocabulary (the shipped model must be reproducible)."""
    bpe = train_tokenizer(CORPUS * 4, vocab_size=300, max_tokens=50, min_frequency=1, kind="bpe")
    text = "Grreat caffe, lovd it"
    enc = bpe.encode(text)
    assert UNK_TOKEN not in enc.tokens
    assert len(enc.tokens) > 5  # the unseen words come in pieces
    word_ids = [w for w in enc.word_ids if w is not None]
    assert word_ids == sorted(word_ids) and len(set(word_ids)) == 5  # Grreat caffe , lovd it
    for word_id in set(word_ids):
        pieces = [enc.offsets[i] for i, w in enumerate(word_ids) if w == word_id]
        assert " " not in text[pieces[0][0] : pieces[-1][1]]
    again = train_tokenizer(CORPUS * 4, vocab_size=300, max_tokens=50, min_frequency=1, kind="bpe")
    assert again.get_vocab() == bpe.get_vocab()
