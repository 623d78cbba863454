"""The one class that owns the onnxruntime session and the tokenizer of a model directory.

``Predictor.load(model_dir, ...)`` checks the directory (card, file hashes, graph inputs and outputs,
tokenizer/embedding agreement) and refuses a bad one with a one-line ``ModelLoadError``;
``predictor.predict(texts)`` returns one ``Prediction`` per text, in order. Nothing above this layer
touches numpy arrays, session options or execution providers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from tokenizers import Encoding, Tokenizer

from model_runtime.card import CardError, ModelCard, read_card
from model_runtime.contract import (
    INPUT_IDS,
    LENGTHS,
    MODEL_FILE,
    PROBABILITIES,
    TOKENIZER_FILE,
    file_sha256,
    length_groups,
    pad_ids,
)
from model_runtime.language import Language, LanguageDetector
from model_runtime.session import (
    CUDA_PROVIDER,
    Provider,
    ProviderError,
    available_cpus,
    choose_tokenizer_threads,
    create_session,
    session_options,
)

log = logging.getLogger(__name__)
# The line-break rule of tokenizer.json as models up to 4.0.0 wrote it backtracks: "<br" followed by 100,000
# spaces and no ">" took 28 s in the tokenizer. The same rule with possessive quantifiers matches exactly the
# same tags (white space, then an optional "/", then white space: nothing to give back) in one pass; loaded
# tokenizers get it, and training writes it (training.tokenizer).
BACKTRACKING_BREAK_RULE = '"(?i)<\\\\s*br\\\\s*/?\\\\s*>"'
LINEAR_BREAK_RULE = '"(?i)<\\\\s*+br\\\\s*+/?+\\\\s*+>"'


def linear_time_rules(tokenizer_json: str) -> str:
    """``tokenizer.json``'s text with the backtracking line-break rule replaced by its linear-time twin."""
    return tokenizer_json.replace(BACKTRACKING_BREAK_RULE, LINEAR_BREAK_RULE)


FloatArray = npt.NDArray[np.float32]
Run = Callable[[list[list[int]]], FloatArray]
# How the length groups of one call are run: the builtin ``map`` (one after the other, on the calling
# thread) or a thread pool's ``map`` (at once, on the pool's threads). Either way each group is the same
# model run with the same inputs, so the results are the same to the bit.
GroupMap = Callable[[Run, Iterable[list[list[int]]]], Iterator[FloatArray]]


class ModelLoadError(RuntimeError):
    """The model directory cannot be served; the message is one line that says why, naming files by their
    names inside the directory and never by a path (an admin's swap answer repeats it)."""


@dataclass(frozen=True, slots=True)
class Prediction:
    label: str
    score: float  # probability of ``label``
    probabilities: dict[str, float]
    tokens: int  # tokens the model scored (after truncation)
    truncated: bool
    language: Language | None = None  # which language the text appears to be in, and whether it is supported


class Predictor:
    """Tokenizer + onnxruntime session for one model directory."""

    def __init__(
        self, model_dir: Path, card: ModelCard, tokenizer: Tokenizer, session: ort.InferenceSession, model_sha256: str
    ) -> None:
        self.model_dir = model_dir
        self.card = card
        self.tokenizer = tokenizer
        self.session = session
        self.model_sha256 = model_sha256
        self.labels: tuple[str, ...] = tuple(card.labels)
        self.max_tokens = card.max_tokens
        self.provider: str = session.get_providers()[0]
        self.languages: tuple[str, ...] = tuple(card.languages)
        self._detector = LanguageDetector(self.languages)

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        provider: Provider = "auto",
        intra_op_threads: int | None = None,
        inter_op_threads: int = 1,
        spin: bool = False,
        card: ModelCard | None = None,
    ) -> Predictor:
        """The checked model of ``model_dir``; ``card`` replaces the card on disk (training evaluates a model
        before its card is written, with the same file checks). Whatever is wrong with the directory, the
        card or the files, the one error is ModelLoadError."""
        try:
            return cls._load(Path(model_dir), provider, intra_op_threads, inter_op_threads, spin, card)
        except OSError as exc:  # a name too long, a symbolic-link loop, no permission, a directory for a file
            raise ModelLoadError(f"the model directory cannot be read ({exc.strerror or type(exc).__name__})") from None

    @classmethod
    def _load(
        cls,
        model_dir: Path,
        provider: Provider,
        intra_op_threads: int | None,
        inter_op_threads: int,
        spin: bool,
        card: ModelCard | None,
    ) -> Predictor:
        if not model_dir.is_dir():
            raise ModelLoadError("the model directory does not exist or is not a directory")
        if card is None:
            try:
                card = read_card(model_dir)
            except CardError as exc:
                raise ModelLoadError(str(exc)) from exc
        model_path, tokenizer_path = model_dir / MODEL_FILE, model_dir / TOKENIZER_FILE
        model_sha256 = _checked_file(model_path, card, MODEL_FILE)
        _checked_file(tokenizer_path, card, TOKENIZER_FILE)
        try:
            tokenizer = Tokenizer.from_str(linear_time_rules(tokenizer_path.read_text(encoding="utf-8")))
        except Exception as exc:
            raise ModelLoadError(f"{TOKENIZER_FILE}: not a readable tokenizer ({exc})") from exc
        threads = intra_op_threads or available_cpus()
        try:
            session = create_session(model_path, provider, session_options(threads, inter_op_threads, spin))
        except ProviderError as exc:
            raise ModelLoadError(str(exc)) from exc
        except Exception as exc:
            reason = str(exc).replace(str(model_path), MODEL_FILE).replace(str(model_dir), ".").replace("\n", " ")
            raise ModelLoadError(f"{MODEL_FILE}: onnxruntime cannot load it ({reason})") from exc
        _check_contract(session, tokenizer, card)
        predictor = cls(model_dir, card, tokenizer, session, model_sha256)
        choose_tokenizer_threads(on_gpu=predictor.provider == CUDA_PROVIDER)
        log.info(
            "model %s %s loaded on %s with %d intra-op threads", card.name, card.version, predictor.provider, threads
        )
        return predictor

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def version(self) -> str:
        return self.card.version

    def encode(self, texts: list[str]) -> list[Encoding]:
        """Token ids (no character offsets: computing them costs a fifth of the tokenizer's time)."""
        return self.tokenizer.encode_batch_fast(texts, add_special_tokens=False)

    def language(self, text: str) -> Language:
        """The language ``text`` appears to be in, and whether this model supports it (model_runtime.language)."""
        return self._detector.detect(text)

    def probabilities(self, ids: list[list[int]]) -> FloatArray:
        """(B, C) probabilities for token-id lists, run as one padded batch."""
        batch, lengths = pad_ids(ids)
        result: FloatArray = self.session.run([PROBABILITIES], {INPUT_IDS: batch, LENGTHS: lengths})[0]
        return result

    def predict(
        self,
        texts: list[str],
        max_batch_tokens: int | None = None,
        max_batch_size: int | None = None,
        map_groups: GroupMap = map,
        languages: Sequence[bool] | None = None,
    ) -> list[Prediction]:
        """Predictions in input order. Texts are run in length order, in chunks of similar length (at most
        ``max_batch_tokens`` padded tokens and ``max_batch_size`` texts per run, when given), to cut padding;
        ``map_groups`` runs those chunks (see GroupMap). Each prediction says the text's language, unless
        ``languages`` (one flag per text) says it is not wanted (the sentences of a document whose language
        was read whole, say)."""
        encodings = self.encode(texts)
        ids = [enc.ids for enc in encodings]
        probs = self.grouped_probabilities(ids, max_batch_tokens, max_batch_size, map_groups=map_groups)
        wanted = languages if languages is not None else [True] * len(texts)
        return [
            self.prediction(p, enc, self.language(text) if want else None)
            for p, enc, text, want in zip(probs.tolist(), encodings, texts, wanted, strict=True)
        ]

    def grouped_probabilities(
        self,
        ids: list[list[int]],
        max_batch_tokens: int | None = None,
        max_batch_size: int | None = None,
        run: Run | None = None,
        map_groups: GroupMap = map,
    ) -> FloatArray:
        """(B, C) probabilities in input order, run in length groups (see ``length_groups``), each by ``run``
        (default: ``self.probabilities``), the groups by ``map_groups``."""
        probs = np.empty((len(ids), len(self.labels)), dtype=np.float32)
        groups = length_groups([len(x) for x in ids], max_batch_tokens, max_batch_size)
        if len(groups) == 1:  # nothing to spread: no hand-over to another thread
            map_groups = map
        results = map_groups(run or self.probabilities, ([ids[i] for i in rows] for rows in groups))
        for rows, result in zip(groups, results, strict=True):
            probs[rows] = result
        return probs

    def prediction(self, probs: list[float], encoding: Encoding, language: Language | None = None) -> Prediction:
        best = max(range(len(probs)), key=probs.__getitem__)
        return Prediction(
            label=self.labels[best],
            score=probs[best],
            probabilities=dict(zip(self.labels, probs, strict=True)),
            tokens=len(encoding.ids),
            truncated=bool(encoding.overflowing),
            language=language,
        )

    def warm_up(self) -> None:
        """Run the graph once at a few shapes so the first request does not pay for lazy initialisation."""
        for batch, steps in ((1, 8), (4, 64), (16, self.max_tokens)):
            self.probabilities([[1] * steps] * batch)


def _checked_file(path: Path, card: ModelCard, name: str) -> str:
    if not path.is_file():
        raise ModelLoadError(f"{name} is {'not a file' if path.exists() else 'missing'}")
    entry = card.files.get(name)
    expected = entry.sha256 if entry else None
    actual = file_sha256(path)
    if expected != actual:
        raise ModelLoadError(f"{name}: sha256 {actual[:12]}... does not match the model card's {str(expected)[:12]}...")
    return actual


def _check_contract(session: ort.InferenceSession, tokenizer: Tokenizer, card: ModelCard) -> None:
    inputs = {i.name: i.type for i in session.get_inputs()}
    expected = {INPUT_IDS: "tensor(int64)", LENGTHS: "tensor(int64)"}
    if inputs != expected:
        raise ModelLoadError(f"model inputs {inputs} are not the expected {expected}")
    outputs = {o.name: o.shape for o in session.get_outputs()}
    if PROBABILITIES not in outputs or outputs[PROBABILITIES][-1] != len(card.labels):
        raise ModelLoadError(f"model outputs {outputs} do not give {len(card.labels)} label probabilities")
    meta = session.get_modelmeta().custom_metadata_map
    vocab = tokenizer.get_vocab_size()
    if meta.get("vocab_size") != str(vocab):
        raise ModelLoadError(
            f"tokenizer has {vocab} tokens but the model's embedding has {meta.get('vocab_size', 'unknown')}"
        )
