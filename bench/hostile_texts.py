"""Time against length for every step that reads a client's text, on adversarial runs (docs/performance.md).

Each kind of text repeats what one of the patterns names (an emoji run, a ``<br`` opener with no ``>`` and
spaces after it, emoticon mouths, brackets after a full stop, apostrophes, sentence ends...) at 1,000, 10,000
and 100,000 characters, and each step is timed on it: the validator's readability check, the sentence
splitter, the language check, the tokenizer, a whole prediction and an explanation. A linear step takes
about ten times as long for ten times the text; a quadratic one a hundred times. ``--before REF`` times the
same steps of another commit's ``model_runtime`` and ``service/validation.py`` beside them (at 1,000 and
10,000 characters only: its quadratic steps take minutes at 100,000).

    python -m bench.hostile_texts [--before 7c072a1] [--model-dir models/sentiment-bilstm]
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

LENGTHS = (1_000, 10_000, 100_000)
KINDS: dict[str, Callable[[int], str]] = {
    "emoji run": lambda n: "☀" * n,
    "<br then spaces, no >": lambda n: "<br" + " " * (n - 4) + "x",
    "<br openers": lambda n: ("<br" + " " * 50) * (n // 53),
    "< run": lambda n: "<" * n,
    "emoticon mouths": lambda n: ":" + ")" * (n - 1),
    "full stop, brackets": lambda n: "." + ")" * (n - 1),
    "apostrophes": lambda n: "a'" * (n // 2),
    "one word": lambda n: "a" * n,
    "sentence ends": lambda n: "a. " * (n // 3),
    "hashtags": lambda n: "#a" * (n // 2),
    "English prose": lambda n: ("The staff were friendly and the room was clean. " * (n // 48 + 1))[:n],
}


def timed(step: Callable[[], object], budget_s: float = 2.0) -> float:
    """Seconds per call: the best of a few calls, as many as fit in about ``budget_s``."""
    best, spent, calls = float("inf"), 0.0, 0
    while calls < 3 or (spent < budget_s and calls < 50):
        started = time.perf_counter()
        step()
        took = time.perf_counter() - started
        best, spent, calls = min(best, took), spent + took, calls + 1
    return best


def steps(root: Path, model_dir: Path) -> dict[str, Callable[[str], object]]:
    """The text steps of the code under ``root`` (this tree, or another commit's copy)."""
    sys.path.insert(0, str(root))
    try:
        for name in [m for m in sys.modules if m.split(".")[0] in ("model_runtime", "service")]:
            del sys.modules[name]
        runtime: ModuleType = importlib.import_module("model_runtime")
        validation: ModuleType = importlib.import_module("service.validation")  # readable, in the old tree
    finally:
        sys.path.remove(str(root))
    predictor = runtime.Predictor.load(model_dir, provider="cpu")
    detector = runtime.LanguageDetector(("en",))
    return {
        "readable (validator)": validation.readable,
        "sentences": runtime.split_sentences,
        "language": detector.detect,
        "tokenizer": predictor.tokenizer.encode,
        "predict": lambda text: predictor.predict([text]),
        "explain (256 tokens)": lambda text: runtime.explain(predictor, text, 256, 4096),
    }


def measure(found: dict[str, Callable[[str], object]], lengths: tuple[int, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind, make in KINDS.items():
        out[kind] = {}
        for step, run in found.items():
            out[kind][step] = {n: timed(partial(run, make(n))) for n in lengths}
            print(kind, step, {n: f"{s * 1e3:.2f} ms" for n, s in out[kind][step].items()}, flush=True)
    return out


def old_tree(ref: str, folder: Path) -> Path:
    """The model runtime and validator of commit ``ref``, copied into ``folder``."""
    for path in ("model_runtime", "service/__init__.py", "service/validation.py"):
        archive = subprocess.run(["git", "archive", ref, path], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=Path("models/sentiment-bilstm"))
    parser.add_argument("--before", default=None, help="a commit whose steps are timed beside (1k and 10k only)")
    parser.add_argument("--output", type=Path, default=Path("bench/results/hostile-texts.json"))
    args = parser.parse_args()
    results: dict[str, Any] = {"lengths": LENGTHS, "after": measure(steps(Path.cwd(), args.model_dir), LENGTHS)}
    if args.before:
        with tempfile.TemporaryDirectory() as folder:
            before = steps(old_tree(args.before, Path(folder)), args.model_dir.resolve())
            results["before"] = {"commit": args.before, "times": measure(before, LENGTHS[:2])}
    args.output.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
