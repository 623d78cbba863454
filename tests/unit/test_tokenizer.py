"""The shared tokenizer: its rules, whole words from the word vectors, pieces for the rest, and the words
/explain reports with exact character offsets."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer

from model_runtime import Predictor, explain
from model_runtime.explain import CLITIC
from tests.support import UNIT_TEXTS, make_model_dir
from training.tokenizer import PAD_ID, UNK_ID, UNK_TOKEN, train_tokenizer, words_of
from training.vectors import load_glove

CORPUS = [
    "This movie was great!<br /><br />I loved it.",
    "Terrible film. I don't recommend it... 1/10",
    "A GREAT cast, a great script: great!",
    "Café crème — naïve but ＦＵＮ 😀",
    "They said 'fun' and meant it",
] * 3


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return train_tokenizer(CORPUS, vocab_size=1000, max_tokens=12, min_frequency=1, pieces=200)


@pytest.fixture(scope="module")
def general() -> Tokenizer:
    """Training words plus the word vectors' most frequent words, as the shipped model's vocabulary is made."""
    return train_tokenizer(CORPUS, vocab_size=20000, max_tokens=100, min_frequency=1, pieces=200, vectors=load_glove())


def tokens(tok: Tokenizer, text: str) -> list[str]:
    return tok.encode(text).tokens


def test_special_tokens_have_reserved_ids(tokenizer: Tokenizer) -> None:
    assert tokenizer.token_to_id("[PAD]") == PAD_ID
    assert tokenizer.token_to_id(UNK_TOKEN) == UNK_ID


def test_br_markup_case_and_punctuation(tokenizer: Tokenizer) -> None:
    assert tokens(tokenizer, "Great!<br /><br/>I LOVED<BR>it.") == ["great", "!", "i", "loved", "it", "."]
    assert "br" not in tokens(tokenizer, "a<br />b")


def test_negation_and_clitics_are_split_as_the_word_vectors_split_them(general: Tokenizer) -> None:
    assert tokens(general, "I don't 'recommend' it") == ["i", "do", "n't", "'", "recommend", "'", "it"]
    assert tokens(general, "It ISN'T bad, it’s fine; we'll see") == [
        "it",
        "is",
        "n't",
        "bad",
        ",",
        "it",
        "'s",
        "fine",
        ";",
        "we",
        "'ll",
        "see",
    ]
    assert tokens(general, "can't won't") == ["ca", "n't", "wo", "n't"]
    assert words_of(general, "O'Neil rock'n'roll") == ["o'neil", "rock'n'roll"]  # inner apostrophes stay


def test_nfkc_folds_compatibility_characters(tokenizer: Tokenizer) -> None:
    assert tokens(tokenizer, "ＦＵＮ") == ["fun"]  # full-width letters
    assert tokens(tokenizer, "caf\u0065\u0301") == ["café"]  # combining accent composes


def test_general_english_words_are_whole_and_unknown_words_come_in_pieces(general: Tokenizer) -> None:
    """ "battery", "refund" and "earnings" appear in no training text, yet each is one token (from the word
    vectors); a misspelling keeps its letters in pieces; only a character never seen becomes [UNK]."""
    for word in ("battery", "refund", "earnings", "terrible"):
        assert tokens(general, word) == [word]
    pieces = tokens(general, "Grreat")
    assert len(pieces) > 1 and UNK_TOKEN not in pieces and pieces[1].startswith("##")
    assert tokens(general, "🤖") == [UNK_TOKEN]


def test_the_vocabulary_is_reproducible(general: Tokenizer) -> None:
    again = train_tokenizer(CORPUS, vocab_size=20000, max_tokens=100, min_frequency=1, pieces=200, vectors=load_glove())
    assert again.get_vocab() == general.get_vocab()
    assert general.get_vocab_size() == 20000


def test_empty_and_whitespace_give_no_tokens(tokenizer: Tokenizer) -> None:
    assert tokenizer.encode("").ids == []
    assert tokenizer.encode(" \n\t<br />").ids == []


def test_long_texts_keep_their_end(tokenizer: Tokenizer) -> None:
    text = " ".join(["great"] * 20 + ["terrible", "film"])
    enc = tokenizer.encode(text)
    assert len(enc.ids) == 12
    assert enc.tokens[-2:] == ["terrible", "film"]
    assert enc.overflowing  # flagged as truncated


@pytest.fixture(scope="module")
def unit_model(tmp_path_factory: pytest.TempPathFactory) -> Predictor:
    return Predictor.load(make_model_dir(tmp_path_factory.mktemp("unit") / "m"))


@pytest.mark.parametrize(
    "text",
    [
        "😀😀 great movie, awful ending",
        "@united lost my bag again #fail http://t.co/abc?x=1 lmaooo",
        "Grreat caffe, lovd it!!",
        "e\u0301te\u0301 — 東京の映画 is ＧＲＥＡＴ",
        "I can't, it\u2019s DON'T they'd 'quoted' n't",
        *UNIT_TEXTS,
    ],
)
def test_explained_words_map_back_to_the_exact_substrings(unit_model: Predictor, text: str) -> None:
    """Whole words with code-point offsets into the text as sent, whatever pieces spell them, clitics with
    their word ("can't", not "ca" and "n't")."""
    explanation = explain(unit_model, text, max_words=256)
    for word in explanation.words:
        assert text[word.start : word.end] == word.text
        assert word.text.strip() == word.text and word.text
    starts = [w.start for w in explanation.words]
    assert starts == sorted(starts)
    words = unit_model.tokenizer.pre_tokenizer.pre_tokenize_str(unit_model.tokenizer.normalizer.normalize_str(text))
    joined = [i for i in range(1, len(words)) if CLITIC.fullmatch(words[i][0]) and words[i - 1][1][1] == words[i][1][0]]
    assert len(explanation.words) == len(words) - len(joined)
    assert not any(CLITIC.fullmatch(w.text) for w in explanation.words[1:] if text[w.start - 1 : w.start].isalpha())
