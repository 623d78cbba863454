"""The model runtime: everything needed to load a model directory and score texts with it.

The bottom layer of the project. It knows the model-directory contract (file names, graph inputs and
outputs, special token ids, padding, file hashes), the typed model card, the ``Predictor`` (one
onnxruntime session and one tokenizer), occlusion explanations, and what a text is before it is scored: its
sentences (``split_sentences``, ``document_sentences``), whether it has anything to read (``readable``) and
its language (``Language``). It imports numpy, onnxruntime, tokenizers,
a sentence splitter and two language detectors only: no web framework, no torch, and nothing of
``training``, ``service`` or the client.
"""

from model_runtime.card import CardError, FileEntry, ModelCard, read_card, write_card
from model_runtime.contract import (
    CARD_FILE,
    INPUT_IDS,
    LENGTHS,
    LOGITS,
    MODEL_FILE,
    PAD_ID,
    PROBABILITIES,
    SPLITS_FILE,
    TOKENIZER_FILE,
    UNK_ID,
    file_sha256,
    length_groups,
    pad_ids,
)
from model_runtime.documents import MIXED, MIXED_THRESHOLD, document_verdict, model_reads, read_back
from model_runtime.explain import Explanation, WordWeight, explain
from model_runtime.language import Language, LanguageDetector
from model_runtime.predictor import ModelLoadError, Prediction, Predictor
from model_runtime.sentences import split_sentences
from model_runtime.session import CPU_PROVIDER, CUDA_PROVIDER, Provider, available_cpus, session_options
from model_runtime.texts import NOT_ONLY_WHITESPACE, document_sentences, readable

__all__ = [
    "CARD_FILE",
    "CPU_PROVIDER",
    "CUDA_PROVIDER",
    "INPUT_IDS",
    "LENGTHS",
    "LOGITS",
    "MIXED",
    "MIXED_THRESHOLD",
    "MODEL_FILE",
    "NOT_ONLY_WHITESPACE",
    "PAD_ID",
    "PROBABILITIES",
    "SPLITS_FILE",
    "TOKENIZER_FILE",
    "UNK_ID",
    "CardError",
    "Explanation",
    "FileEntry",
    "Language",
    "LanguageDetector",
    "ModelCard",
    "ModelLoadError",
    "Prediction",
    "Predictor",
    "Provider",
    "WordWeight",
    "available_cpus",
    "document_sentences",
    "document_verdict",
    "explain",
    "file_sha256",
    "length_groups",
    "model_reads",
    "pad_ids",
    "read_back",
    "read_card",
    "readable",
    "session_options",
    "split_sentences",
    "write_card",
]
