"""The one module that owns the ONNX Runtime session and the tokenizer.

``Predictor.load(model_dir, ...)`` checks the model directory (card, file hashes, graph inputs,
tokenizer/model agreement) and refuses a bad one with a one-line ``ModelLoadError``;
``predictor.predict(texts)`` returns one ``Prediction`` per text, in order. Nothing outside this module
touches numpy arrays, session options or execution providers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnxruntime as ort
from tokenizers import Encoding, Tokenizer

log = logging.getLogger(__name__)

Provider = Literal["auto", "cpu", "cuda"]
CPU_PROVIDER, CUDA_PROVIDER = "CPUExecutionProvider", "CUDAExecutionProvider"
INPUT_IDS, LENGTHS, PROBABILITIES = "input_ids", "lengths", "probabilities"
PAD_ID, UNK_ID = 0, 1
CARD_FILE, MODEL_FILE, TOKENIZER_FILE = "model_card.json", "model.onnx", "tokenizer.json"


class ModelLoadError(RuntimeError):
    """The model directory cannot be served; the message is one line that says why."""


@dataclass(frozen=True, slots=True)
class Prediction:
    label: str
    score: float  # probability of ``label``
    probabilities: dict[str, float]
    tokens: int  # tokens the model scored (after truncation)
    truncated: bool


@dataclass(frozen=True, slots=True)
class WordWeight:
    """One token of the text as the model saw it: its original characters ``text[start:end]`` and how much
    it pushed each label's probability (None beyond the explained window)."""

    text: str
    start: int
    end: int
    weights: dict[str, float] | None


@dataclass(frozen=True, slots=True)
class Explanation:
    prediction: Prediction
    words: list[WordWeight]
    explained_tokens: int  # the last ``explained_tokens`` words carry weights
    capped: bool  # the text had more tokens than the explanation cap


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def available_cpus() -> int:
    """CPUs this process may really use: its affinity mask, capped by a cgroup v2 CPU quota if set."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cpus


def session_options(intra_op_threads: int, inter_op_threads: int = 1, spin: bool = False) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = inter_op_threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Spinning workers keep a core busy between requests, stealing it from the HTTP event loop.
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    options.log_severity_level = 3
    return options


def create_session(model_path: Path, provider: Provider, options: ort.SessionOptions) -> ort.InferenceSession:
    """An InferenceSession on the asked-for provider; ``cuda`` fails loudly rather than fall back to CPU."""
    if provider in ("cuda", "auto"):
        try:
            return _cuda_session(model_path, options)
        except ModelLoadError as exc:
            if provider == "cuda":
                raise
            log.info("CUDA not usable (%s); using the CPU provider", exc)
    return ort.InferenceSession(str(model_path), options, providers=[CPU_PROVIDER])


def _cuda_session(model_path: Path, options: ort.SessionOptions) -> ort.InferenceSession:
    available = ort.get_available_providers()
    if CUDA_PROVIDER not in available:
        raise ModelLoadError(
            f"SENTIMENT_PROVIDER=cuda, but this onnxruntime build has no CUDA provider (available: "
            f"{', '.join(available)}); install onnxruntime-gpu (pip extra 'gpu') on a host with an NVIDIA GPU")
    if hasattr(ort, "preload_dlls"):
        ort.preload_dlls()  # finds CUDA/cuDNN installed as pip packages
    try:
        session = ort.InferenceSession(str(model_path), options, providers=[CUDA_PROVIDER, CPU_PROVIDER])
    except Exception as exc:  # onnxruntime raises plain RuntimeError/Fail subclasses here
        raise ModelLoadError(f"the CUDA provider failed to start: {exc}".replace("\n", " ")) from exc
    if session.get_providers()[0] != CUDA_PROVIDER:
        raise ModelLoadError(
            "the CUDA provider could not be initialised (missing CUDA/cuDNN libraries or no GPU visible); "
            f"onnxruntime fell back to {session.get_providers()}")
    return session


class Predictor:
    """Tokenizer + ONNX Runtime session for one model directory."""

    def __init__(self, model_dir: Path, card: dict[str, Any], tokenizer: Tokenizer,
                 session: ort.InferenceSession, model_sha256: str) -> None:
        self.model_dir = model_dir
        self.card = card
        self.tokenizer = tokenizer
        self.session = session
        self.model_sha256 = model_sha256
        self.labels: tuple[str, ...] = tuple(card["labels"])
        self.max_tokens: int = int(card["max_tokens"])
        self.provider: str = session.get_providers()[0]

    @classmethod
    def load(cls, model_dir: str | Path, provider: Provider = "auto", intra_op_threads: int | None = None,
             inter_op_threads: int = 1, spin: bool = False) -> Predictor:
        model_dir = Path(model_dir)
        card = _read_card(model_dir)
        model_path, tokenizer_path = model_dir / MODEL_FILE, model_dir / TOKENIZER_FILE
        model_sha256 = _checked_file(model_path, card, MODEL_FILE)
        _checked_file(tokenizer_path, card, TOKENIZER_FILE)
        try:
            tokenizer = Tokenizer.from_file(str(tokenizer_path))
        except Exception as exc:
            raise ModelLoadError(f"{tokenizer_path}: not a readable tokenizer ({exc})") from exc
        threads = intra_op_threads or available_cpus()
        try:
            session = create_session(model_path, provider, session_options(threads, inter_op_threads, spin))
        except ModelLoadError:
            raise
        except Exception as exc:
            raise ModelLoadError(f"{model_path}: onnxruntime cannot load it ({exc})".replace("\n", " ")) from exc
        _check_contract(session, tokenizer, card)
        predictor = cls(model_dir, card, tokenizer, session, model_sha256)
        _choose_tokenizer_threads(on_gpu=predictor.provider == CUDA_PROVIDER)
        log.info("model %s %s loaded on %s with %d intra-op threads", card.get("name"), card.get("version"),
                 predictor.provider, threads)
        return predictor

    @property
    def name(self) -> str:
        return str(self.card.get("name", self.model_dir.name))

    @property
    def version(self) -> str:
        return str(self.card.get("version", "unknown"))

    def encode(self, texts: list[str]) -> list[Encoding]:
        """Token ids (no character offsets: computing them costs a fifth of the tokenizer's time)."""
        return self.tokenizer.encode_batch_fast(texts, add_special_tokens=False)

    def probabilities(self, ids: list[list[int]]) -> np.ndarray:
        """(B, C) probabilities for token-id lists, run as one padded batch."""
        batch, lengths = pad_ids(ids)
        return self.session.run([PROBABILITIES], {INPUT_IDS: batch, LENGTHS: lengths})[0]

    def predict(self, texts: list[str], max_batch_tokens: int | None = None,
                max_batch_size: int | None = None) -> list[Prediction]:
        """Predictions in input order. Texts are run in length order, in chunks of similar length (at most
        ``max_batch_tokens`` padded tokens and ``max_batch_size`` texts per run, when given), to cut padding."""
        encodings = self.encode(texts)
        probs = self.grouped_probabilities([enc.ids for enc in encodings], max_batch_tokens, max_batch_size)
        return [self._prediction(p, enc) for p, enc in zip(probs.tolist(), encodings, strict=True)]

    def grouped_probabilities(self, ids: list[list[int]], max_batch_tokens: int | None = None,
                              max_batch_size: int | None = None) -> np.ndarray:
        """(B, C) probabilities in input order, run in length groups (see ``length_groups``)."""
        probs = np.empty((len(ids), len(self.labels)), dtype=np.float32)
        for rows in length_groups([len(x) for x in ids], max_batch_tokens, max_batch_size):
            probs[rows] = self.probabilities([ids[i] for i in rows])
        return probs

    def _prediction(self, probs: list[float], encoding: Encoding) -> Prediction:
        best = max(range(len(probs)), key=probs.__getitem__)
        return Prediction(label=self.labels[best], score=probs[best],
                          probabilities=dict(zip(self.labels, probs, strict=True)),
                          tokens=len(encoding.ids), truncated=bool(encoding.overflowing))

    def explain(self, text: str, max_tokens: int, max_batch_tokens: int | None = None) -> Explanation:
        """Occlusion: the text is scored once as is and once per token with that token replaced by [UNK],
        all in one batch of equal-length rows (so the cost is about n + 1 texts of n tokens for n tokens).
        A word's weight for a label is the change in that label's log-odds when the word is removed,
        log-odds(label | text) - log-odds(label | text without the word): positive where the word pushed
        towards the label; +1 means it multiplied the label's odds by e. (Log-odds, unlike probabilities, still
        show a word's pull when the prediction is near-certain.) Only the last ``max_tokens`` tokens are
        explained (``capped``)."""
        encoding = self.tokenizer.encode(text, add_special_tokens=False)
        ids, n = encoding.ids, len(encoding.ids)
        first = max(0, n - max_tokens)
        rows = [ids] + [[*ids[:i], UNK_ID, *ids[i + 1:]] for i in range(first, n)]
        probs = self.grouped_probabilities(rows, max_batch_tokens)  # equal lengths: one cut every cap // n rows
        log_odds = _log_odds(probs)
        words = []
        for i, (start, end) in enumerate(encoding.offsets):
            weights = None
            if i >= first:
                delta = (log_odds[0] - log_odds[1 + i - first]).round(4).tolist()
                weights = dict(zip(self.labels, delta, strict=True))
            words.append(WordWeight(text[start:end], start, end, weights))
        return Explanation(self._prediction(probs[0].tolist(), encoding), words, n - first, first > 0)

    def warm_up(self) -> None:
        """Run the graph once at a few shapes so the first request does not pay for lazy initialisation."""
        for batch, steps in ((1, 8), (4, 64), (16, self.max_tokens)):
            self.probabilities([[1] * steps] * batch)


def _log_odds(probs: np.ndarray) -> np.ndarray:
    """(R, C) log-odds of each label against all others, from the small probabilities (exact even where a
    float32 probability has rounded to 1.0)."""
    log_p = np.log(np.maximum(probs.astype(np.float64), np.finfo(np.float64).tiny))
    others = [np.logaddexp.reduce(np.delete(log_p, j, axis=1), axis=1) for j in range(log_p.shape[1])]
    return log_p - np.stack(others, axis=1)


def _choose_tokenizer_threads(on_gpu: bool) -> None:
    """Whether the tokenizer spreads each batch over all cores (TOKENIZERS_PARALLELISM, if set, wins).

    On CPU, every inference thread has a core already and the tokenizer's pool only adds contention (in
    process, 2 threads x batch 32: 1,030 reviews/s with it, 1,125 without). With CUDA the cores are free
    and tokenizing is the host-side bottleneck (README, Performance on a GPU).
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true" if on_gpu else "false")


def pad_ids(ids: list[list[int]], extra_steps: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The model's inputs: (B, T) int64 ids right-padded with PAD_ID and (B,) int64 true lengths;
    ``extra_steps`` adds padding columns beyond the longest text."""
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    batch = np.full((len(ids), max(1, int(lengths.max(initial=0))) + extra_steps), PAD_ID, dtype=np.int64)
    for row, x in enumerate(ids):
        batch[row, : len(x)] = x
    return batch, lengths


def length_groups(lengths: list[int], max_batch_tokens: int | None,
                  max_batch_size: int | None = None) -> list[list[int]]:
    """Row indices ordered by length, cut so that no group pads to more than ``max_batch_tokens``
    or holds more than ``max_batch_size`` rows (a falsy limit is no limit)."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    token_cap, row_cap = max_batch_tokens or float("inf"), max_batch_size or len(order)
    groups: list[list[int]] = []
    current: list[int] = []
    for i in order:
        # Sorted ascending, so the newest row is the longest: the padded size is rows x its length.
        if current and (len(current) >= row_cap or (len(current) + 1) * max(1, lengths[i]) > token_cap):
            groups.append(current)
            current = []
        current.append(i)
    if current:
        groups.append(current)
    return groups


def _read_card(model_dir: Path) -> dict[str, Any]:
    if not model_dir.is_dir():
        raise ModelLoadError(f"model directory {model_dir} does not exist")
    path = model_dir / CARD_FILE
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelLoadError(f"{path} is missing") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path} is not valid JSON ({exc})") from exc
    missing = [k for k in ("labels", "max_tokens", "files") if k not in card]
    if missing:
        raise ModelLoadError(f"{path} lacks {', '.join(missing)}")
    return card


def _checked_file(path: Path, card: dict[str, Any], name: str) -> str:
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing")
    expected = card["files"].get(name, {}).get("sha256")
    actual = file_sha256(path)
    if expected != actual:
        raise ModelLoadError(f"{path} sha256 {actual[:12]}... does not match the model card's {str(expected)[:12]}...")
    return actual


def _check_contract(session: ort.InferenceSession, tokenizer: Tokenizer, card: dict[str, Any]) -> None:
    inputs = {i.name: i.type for i in session.get_inputs()}
    expected = {INPUT_IDS: "tensor(int64)", LENGTHS: "tensor(int64)"}
    if inputs != expected:
        raise ModelLoadError(f"model inputs {inputs} are not the expected {expected}")
    outputs = {o.name: o.shape for o in session.get_outputs()}
    if PROBABILITIES not in outputs or outputs[PROBABILITIES][-1] != len(card["labels"]):
        raise ModelLoadError(f"model outputs {outputs} do not give {len(card['labels'])} label probabilities")
    meta = session.get_modelmeta().custom_metadata_map
    vocab = tokenizer.get_vocab_size()
    if meta.get("vocab_size") != str(vocab):
        raise ModelLoadError(
            f"tokenizer has {vocab} tokens but the model's embedding has {meta.get('vocab_size', 'unknown')}")
