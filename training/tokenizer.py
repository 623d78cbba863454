"""The tokenizer shared by training and serving, saved as one ``tokenizer.json``.

Everything that decides which ids a text becomes lives inside that file (normalizer, pre-tokenizer,
vocabulary, truncation), so the service, which only loads it with ``tokenizers.Tokenizer.from_file``,
tokenizes exactly as training did.

- ``<br />`` markup (IMDB's line breaks, any spelling of ``<br>``) becomes a space;
- NFKC unicode normalisation, then lower case;
- words (letters, digits, underscore, inner apostrophes: ``don't``) are one token each; every other
  non-space character (punctuation, each emoji code point) is a token of its own;
- words outside the vocabulary become ``[UNK]``; ``[PAD]`` (id 0) is only used for padding;
- texts longer than ``max_tokens`` keep their LAST ``max_tokens`` tokens (a review's verdict is usually at
  its end); the model card records this policy.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import BPE, WordLevel
from tokenizers.trainers import BpeTrainer, WordLevelTrainer

from model_runtime.contract import PAD_ID, PAD_TOKEN, TRUNCATION_SIDE, UNK_ID, UNK_TOKEN

__all__ = ["PAD_ID", "UNK_ID", "UNK_TOKEN", "describe_tokenizer", "new_tokenizer", "train_tokenizer"]

_BR_TAG = Regex(r"(?i)<\s*br\s*/?\s*>")
_TOKEN = Regex(r"\w+(?:'\w+)*|[^\w\s]")


TOKENIZER_KINDS = ("word", "bpe")


def new_tokenizer(kind: str = "word") -> Tokenizer:
    """An untrained tokenizer with this project's normalisation and pre-tokenisation.

    ``word``: one id per word, unknown words become ``[UNK]``. ``bpe``: byte-pair-encoded sub-words
    within each word: a word outside the vocabulary is spelled with pieces (``amaze balls``), so
    misspellings, slang and names from other sites keep most of their letters instead of all becoming
    ``[UNK]``; pieces never cross a word boundary, so each piece belongs to exactly one word of the text.
    (BPE without a continuing-piece prefix: the tokenizers library's WordPiece and prefixed-BPE trainers
    give a different vocabulary on every run, https://github.com/huggingface/tokenizers/issues/1794;
    plain BPE training is deterministic, which the reproducibility test needs.)
    """
    if kind == "bpe":
        tokenizer = Tokenizer(BPE(unk_token=UNK_TOKEN))
    elif kind == "word":
        tokenizer = Tokenizer(WordLevel(unk_token=UNK_TOKEN))
    else:
        raise ValueError(f"unknown tokenizer kind {kind!r}; one of {TOKENIZER_KINDS}")
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.Replace(_BR_TAG, " "), normalizers.NFKC(), normalizers.Lowercase()]
    )
    # invert=True: the pattern matches the pieces to keep; what lies between them (white space) is dropped.
    tokenizer.pre_tokenizer = pre_tokenizers.Split(_TOKEN, behavior="removed", invert=True)
    return tokenizer


def train_tokenizer(
    texts: Iterable[str], vocab_size: int, max_tokens: int, min_frequency: int = 2, kind: str = "word"
) -> Tokenizer:
    """Build the vocabulary from ``texts`` (the training split only) and fix the truncation policy."""
    tokenizer = new_tokenizer(kind)
    special = [PAD_TOKEN, UNK_TOKEN]
    trainer = (
        BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=special)
        if kind == "bpe"
        else WordLevelTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=special)
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    if tokenizer.token_to_id(PAD_TOKEN) != PAD_ID or tokenizer.token_to_id(UNK_TOKEN) != UNK_ID:
        raise RuntimeError("special tokens did not get their reserved ids")
    tokenizer.enable_truncation(max_length=max_tokens, direction=TRUNCATION_SIDE)
    return tokenizer


def describe_tokenizer(kind: str, vocab_size: int) -> dict[str, str | int]:
    """The model card's tokenizer section."""
    kinds = {
        "word": "word level (Hugging Face tokenizers)",
        "bpe": "byte-pair sub-words within words (Hugging Face tokenizers)",
        "wordpiece": "WordPiece sub-words within words (Hugging Face tokenizers; its training is not deterministic)",
    }
    return {
        "type": kinds[kind],
        "vocab_size": vocab_size,
        "normalisation": "<br /> -> space, NFKC, lower case",
        "pre_tokenisation": "words (with inner apostrophes) and single non-space symbols",
        "unknown_token": UNK_TOKEN,
        "padding_id": PAD_ID,
    }
