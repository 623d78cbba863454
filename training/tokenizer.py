"""The tokenizer shared by training and serving, saved as one ``tokenizer.json``.

Everything that decides which ids a text becomes lives inside that file (normalizer, pre-tokenizer,
vocabulary, truncation), so the service, which only loads it with ``tokenizers.Tokenizer.from_file``,
tokenizes exactly as training did.

- ``<br />`` markup (IMDB's line breaks, any spelling of ``<br>``) becomes a space; NFKC; a curly
  apostrophe becomes a straight one; lower case;
- words are letters, digits and underscores, with inner apostrophes (``o'neil``); clitics are split off
  as in the word vectors' own tokenisation: ``don't`` -> ``do n't``, ``it's`` -> ``it 's``, so every
  negated verb shares one ``n't``; every other non-space character (punctuation, each emoji code point)
  is a word of its own;
- a word in the vocabulary is one token. The vocabulary holds the training texts' frequent words and,
  up to its size, the most frequent words of the general-English word vectors (``training.vectors``),
  so "refund" or "battery" is a whole word with a meaning even if no training text used it. Any other
  word is spelled with sub-word pieces (greedy longest match, WordPiece style: ``amazeballs`` ->
  ``amaze ##balls``); the pieces come from byte-pair encoding trained on the training texts (which is
  deterministic), so a misspelling or a product name keeps most of its letters. Pieces never cross a word
  boundary; a word with a character no training text had becomes ``[UNK]``;
- texts longer than ``max_tokens`` keep their LAST ``max_tokens`` tokens (a review's verdict is usually at
  its end); the model card records this policy.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import BPE, WordPiece
from tokenizers.trainers import BpeTrainer

from model_runtime.contract import PAD_ID, PAD_TOKEN, TRUNCATION_SIDE, UNK_ID, UNK_TOKEN
from training.vectors import WordVectors

__all__ = ["PAD_ID", "UNK_ID", "UNK_TOKEN", "describe_tokenizer", "train_tokenizer"]

_BR_TAG = Regex(r"(?i)<\s*+br\s*+/?+\s*+>")  # possessive: linear in the text (model_runtime.predictor)
_CLITICS = r"(?:s|re|ve|ll|d|m)\b"
_WORD = Regex(rf"\w+(?=n't\b)|n't\b|\w+(?='{_CLITICS})|'{_CLITICS}|\w+(?:'\w+)*|[^\w\s]")
CONTINUING = "##"


def _with_rules(tokenizer: Tokenizer) -> Tokenizer:
    tokenizer.normalizer = normalizers.Sequence(
        [
            normalizers.Replace(_BR_TAG, " "),
            normalizers.NFKC(),
            normalizers.Replace("\u2019", "'"),
            normalizers.Lowercase(),
        ]
    )
    # invert=True: the pattern matches the pieces to keep; what lies between them (white space) is dropped.
    tokenizer.pre_tokenizer = pre_tokenizers.Split(_WORD, behavior="removed", invert=True)
    return tokenizer


def words_of(tokenizer: Tokenizer, text: str) -> list[str]:
    """The pre-tokenised words of ``text`` under the tokenizer's rules."""
    assert tokenizer.normalizer is not None and tokenizer.pre_tokenizer is not None
    return [w for w, _ in tokenizer.pre_tokenizer.pre_tokenize_str(tokenizer.normalizer.normalize_str(text))]


def _pieces(texts: list[str], count: int) -> list[str]:
    """Sub-word pieces learned by byte-pair encoding on the texts (deterministic), every seen character
    among them."""
    bpe = _with_rules(Tokenizer(BPE(unk_token=UNK_TOKEN)))
    trainer = BpeTrainer(vocab_size=count, min_frequency=2, special_tokens=[UNK_TOKEN], show_progress=False)
    bpe.train_from_iterator(texts, trainer=trainer)
    return [p for p, _ in sorted(bpe.get_vocab().items(), key=lambda item: item[1]) if p != UNK_TOKEN]


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int,
    max_tokens: int,
    min_frequency: int = 2,
    pieces: int = 3000,
    vectors: WordVectors | None = None,
    required: Iterable[str] = (),
) -> Tokenizer:
    """Build the vocabulary from ``texts`` (the training split only) and fix the truncation policy.

    In id order: ``[PAD]``, ``[UNK]``, the ``required`` words (those the rules give as one word: the opinion
    word list's, so that each is a token of its own with its value), the training words seen
    ``min_frequency`` times or more (most frequent first), then the word vectors' words by their own
    frequency, until ``vocab_size`` less the pieces is reached; then the pieces as word starts and as
    continuations (``##piece``).
    """
    texts = list(texts)
    rules = _with_rules(Tokenizer(WordPiece(unk_token=UNK_TOKEN)))
    counts = Counter(w for text in texts for w in words_of(rules, text))
    piece_list = _pieces(texts, pieces)
    continuations = [CONTINUING + p for p in piece_list]
    vocab: dict[str, int] = {PAD_TOKEN: PAD_ID, UNK_TOKEN: UNK_ID}
    pending = set(piece_list)  # word-start pieces that no word has brought in yet

    def add(token: str) -> bool:
        """Add a word while the vocabulary, with the pieces still to come, stays within its size."""
        if len(vocab) + len(pending) + len(continuations) >= vocab_size:
            return False
        if token not in vocab:
            vocab[token] = len(vocab)
            pending.discard(token)
        return True

    frequent = (w for w, n in counts.most_common() if n >= min_frequency)
    # reachable vector words only: the rules give each as one word
    general = (w for w in (vectors.words if vectors else []) if words_of(rules, w) == [w])
    wanted = (w for w in required if words_of(rules, w) == [w])
    for word in itertools.chain(wanted, frequent, general):
        if not add(word):
            break
    for token in piece_list + continuations:
        vocab.setdefault(token, len(vocab))
    tokenizer = _with_rules(Tokenizer(WordPiece(vocab, unk_token=UNK_TOKEN, max_input_chars_per_word=100)))
    tokenizer.enable_truncation(max_length=max_tokens, direction=TRUNCATION_SIDE)
    return tokenizer


def describe_tokenizer(vocab_size: int, vectors: bool) -> dict[str, str | int]:
    """The model card's tokenizer section."""
    return {
        "type": "whole words, sub-word pieces (WordPiece-style greedy longest match, pieces from BPE) for the rest",
        "vocab_size": vocab_size,
        "vocabulary": "the training texts' frequent words"
        + (", then the general-English word vectors' words by frequency" if vectors else ""),
        "normalisation": "<br /> -> space, NFKC, curly apostrophe -> ', lower case",
        "pre_tokenisation": "words (inner apostrophes kept; n't 's 're 've 'll 'd 'm split off) and single "
        "non-space symbols",
        "unknown_token": UNK_TOKEN,
        "padding_id": PAD_ID,
    }
