"""The word-level tokenizer shared by training and serving, saved as one ``tokenizer.json``.

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
from tokenizers.models import WordLevel
from tokenizers.trainers import WordLevelTrainer

PAD_TOKEN, PAD_ID = "[PAD]", 0
UNK_TOKEN, UNK_ID = "[UNK]", 1
TRUNCATION_SIDE = "left"  # tokenizers' name for "drop tokens from the start, keep the end"

_BR_TAG = Regex(r"(?i)<\s*br\s*/?\s*>")
_TOKEN = Regex(r"\w+(?:'\w+)*|[^\w\s]")


def new_tokenizer() -> Tokenizer:
    """An untrained tokenizer with this project's normalisation and pre-tokenisation."""
    tokenizer = Tokenizer(WordLevel(unk_token=UNK_TOKEN))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.Replace(_BR_TAG, " "), normalizers.NFKC(), normalizers.Lowercase()]
    )
    # invert=True: the pattern matches the pieces to keep; what lies between them (white space) is dropped.
    tokenizer.pre_tokenizer = pre_tokenizers.Split(_TOKEN, behavior="removed", invert=True)
    return tokenizer


def train_tokenizer(texts: Iterable[str], vocab_size: int, max_tokens: int, min_frequency: int = 2) -> Tokenizer:
    """Build the vocabulary from ``texts`` (the training split only) and fix the truncation policy."""
    tokenizer = new_tokenizer()
    trainer = WordLevelTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[PAD_TOKEN, UNK_TOKEN]
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    if tokenizer.token_to_id(PAD_TOKEN) != PAD_ID or tokenizer.token_to_id(UNK_TOKEN) != UNK_ID:
        raise RuntimeError("special tokens did not get their reserved ids")
    tokenizer.enable_truncation(max_length=max_tokens, direction=TRUNCATION_SIDE)
    return tokenizer
