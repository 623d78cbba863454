"""Training runs for real (seconds-long), learns, is reproducible and resumable; the CLI works end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from model_runtime import Predictor, pad_ids, read_card
from tests.support import ROOT, TINY_CONFIG
from training.__main__ import parser, train_config
from training.config import TrainConfig
from training.data import Dataset, Split, split_dataset
from training.evaluate import ece_if_calibrated, metrics
from training.files import load_labelled_file
from training.model import ModelConfig
from training.sources import SPLIT_SOURCES
from training.train import TrainResult, train

pytestmark = pytest.mark.slow


def test_a_short_run_learns(tiny_run: TrainResult, tiny_run_dir: Path) -> None:
    history = tiny_run.history
    assert history == json.loads((tiny_run_dir / "history.json").read_text())
    assert len(history) == TINY_CONFIG.epochs
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    # 2,000 held-out texts of three classes; the most common label (negative) is ~0.43 of them
    assert max(h["val_accuracy"] for h in history) > 0.55
    assert set(history[-1]["val_accuracy_by_source"]) == set(SPLIT_SOURCES)
    assert (tiny_run_dir / "checkpoints" / "best.pt").exists()
    assert not tiny_run.model.training


def test_the_card_sets_the_model_beside_the_word_list_rule_and_across_registers(tiny_model_dir: Path) -> None:
    """The card's tables are generated: the rule's figures on every test source beside the model's, the
    cross-register check for both, and how much of a text's source its answers carry."""
    test = read_card(tiny_model_dir).metrics["test"]
    assert set(test["word_list_rule"]["by_source"]) == set(test["by_source"]) == set(SPLIT_SOURCES)
    check = test["cross_register"]
    assert check["model"]["texts"] == check["word_list_rule"]["texts"] >= 300
    assert set(check["model"]["by_kind"]) >= {"opinion_in_neutral_register", "neutral_in_polar_register", "negated"}
    leak = test["source_leak"]
    assert leak["chance"] == pytest.approx(1 / len(SPLIT_SOURCES))
    assert leak["balanced_accuracy_from_labels"] > leak["chance"]
    readme = (tiny_model_dir / "README.md").read_text()
    assert "## Against a word list, and across registers" in readme
    assert (
        f"| three-class macro-F1 | {check['model']['macro_f1']:.3f} | {check['word_list_rule']['macro_f1']:.3f} |"
        in readme
    )
    assert "AFINN" in readme and "Open Database License" in readme


def test_training_is_reproducible_and_resumable(tmp_path: Path, imdb: Dataset) -> None:
    config = replace(TINY_CONFIG, max_samples=200, epochs=2)
    split = split_dataset(imdb)
    straight = tmp_path / "straight"
    train(imdb, split, straight, config)
    resumed = tmp_path / "resumed"
    train(imdb, split, resumed, replace(config, epochs=1))
    train(imdb, split, resumed, config, resume=True)
    a = torch.load(straight / "checkpoints" / "last.pt", weights_only=False)
    b = torch.load(resumed / "checkpoints" / "last.pt", weights_only=False)
    assert b["epoch"] == 2 and len(b["history"]) == 2
    for name, tensor in a["model"].items():
        torch.testing.assert_close(b["model"][name], tensor, atol=0, rtol=0, msg=name)


def test_metrics_on_known_predictions() -> None:
    truth = np.array([0, 0, 1, 1, 1])
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]])
    m = metrics(("neg", "pos"), truth, probs)
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["confusion_matrix"]["rows_true_columns_predicted"] == [[1, 1], [1, 2]]
    assert m["per_class"]["pos"]["precision"] == pytest.approx(2 / 3)
    assert m["per_class"]["pos"]["recall"] == pytest.approx(2 / 3)
    assert m["per_class"]["neg"]["recall"] == pytest.approx(0.5)
    # ECE by hand: confidences .9 .6 .8 .7 .6 with correctness 1 0 1 1 0, 15 bins
    bins = {0.9: [1], 0.6: [0, 0], 0.8: [1], 0.7: [1]}
    expected = sum(len(v) / 5 * abs(np.mean(v) - c) for c, v in bins.items())
    assert m["ece"] == pytest.approx(expected)


def test_ece_if_calibrated_separates_sampling_noise_from_over_confidence() -> None:
    """Labels drawn from the probabilities themselves: the measured ECE is within the floor's range; the
    same labels read with sharpened (over-confident) probabilities: far above it; ten times the texts:
    a floor about sqrt(10) lower."""
    rng = np.random.default_rng(7)
    confidence = rng.uniform(0.5, 1.0, 900)
    positive = np.where(rng.random(900) < 0.5, confidence, 1 - confidence)
    probs = np.stack([1 - positive, positive], axis=1)
    truth = (rng.random(900) < positive).astype(int)
    floor = ece_if_calibrated(probs)
    assert floor["p05"] <= metrics(("neg", "pos"), truth, probs)["ece"] <= floor["p95"]
    sharp = probs**4 / (probs**4).sum(axis=1, keepdims=True)
    assert metrics(("neg", "pos"), truth, sharp)["ece"] > 2 * ece_if_calibrated(sharp)["p95"]
    assert ece_if_calibrated(np.tile(probs, (10, 1)))["median"] < floor["median"] / 2.5


def test_cli_trains_exports_and_evaluates_a_users_file(tmp_path: Path, imdb: Dataset) -> None:
    """`python -m training all` on a user's 3-class JSONL, then `evaluate` on another labelled file."""
    names = ("negative", "neutral", "positive")
    rows = [
        {"review": ex.text[:300], "mood": names[ex.label if i % 3 else 1]}
        for i, ex in enumerate(imdb.examples[:300] + imdb.examples[-300:])
    ]
    data = tmp_path / "mine.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    run_dir, model_dir = tmp_path / "run", tmp_path / "model"
    cmd = [
        sys.executable,
        "-m",
        "training",
        "all",
        "--data",
        str(data),
        "--text-column",
        "review",
        "--label-column",
        "mood",
        "--run-dir",
        str(run_dir),
        "--model-dir",
        str(model_dir),
        "--epochs",
        "1",
        "--vocab-size",
        "2000",
        "--pieces",
        "300",
        "--embedding-dim",
        "8",
        "--hidden-size",
        "8",
        "--name",
        "mine",
    ]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    card = json.loads((model_dir / "model_card.json").read_text())
    assert card["labels"] == list(names)
    test_size = card["data"]["split_sizes"]["test"]
    assert card["metrics"]["test"]["examples"] == test_size > 0
    assert test_size + sum(card["data"]["split_sizes"].values()) - test_size == len(
        load_labelled_file(data, "review", "mood").examples
    )
    for png in ("confusion_matrix.png", "calibration.png", "learning_curves.png"):
        assert (model_dir / "evaluation" / png).read_bytes()[:4] == b"\x89PNG"

    other = tmp_path / "other.csv"
    other.write_text("text,label\nwonderful film,positive\nawful film,negative\nit was a film,neutral\n")
    out = tmp_path / "eval"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "training",
            "evaluate",
            "--model-dir",
            str(model_dir),
            "--data",
            str(other),
            "--output",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "evaluation.json").read_text())
    assert report["overall"]["examples"] == 3
    assert report["data"].endswith("other.csv")


def test_cli_reports_bad_data_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nonly,one\nclass,one\n")
    done = subprocess.run(
        [sys.executable, "-m", "training", "train", "--data", str(bad), "--run-dir", str(tmp_path / "r")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "single class" in done.stderr
    assert "Traceback" not in done.stderr


def test_temperature_lowers_validation_log_loss_and_is_what_the_model_serves(
    tiny_run: TrainResult, tiny_model_dir: Path, corpus_split: Split
) -> None:
    """The fitted temperature lowers the validation log loss, and the exported graph serves exactly
    softmax(logits / T(length)) of the trained network, still batch-invariant."""
    run = tiny_run.summary["training"]
    assert run["val_log_loss_after_temperature"] < run["val_log_loss_before_temperature"]
    scale, slope = run["temperature"]["log_scale"], run["temperature"]["log_slope"]
    assert (tiny_run.model.temperature_log_scale, tiny_run.model.temperature_log_slope) == (scale, slope)
    assert abs(scale) + abs(slope) > 1e-3

    predictor = Predictor.load(tiny_model_dir, provider="cpu")
    texts = [ex.text for ex in corpus_split.validation[:40]]
    ids = [e.ids for e in predictor.encode(texts)]
    batch, lengths = pad_ids(ids)
    with torch.no_grad():
        tiny_run.model.temperature_log_scale = tiny_run.model.temperature_log_slope = 0.0
        logits = tiny_run.model(torch.from_numpy(batch), torch.from_numpy(lengths))
        tiny_run.model.temperature_log_scale, tiny_run.model.temperature_log_slope = scale, slope
    temperature = np.exp(scale + slope * np.log(np.maximum(lengths, 1)))[:, None]
    expected = torch.softmax(logits / torch.from_numpy(temperature).float(), dim=1).numpy()
    served = predictor.probabilities(ids)
    np.testing.assert_allclose(served, expected, atol=1e-3)  # the graph's table is stored in float16
    assert np.abs(served - torch.softmax(logits, dim=1).numpy()).max() > 1e-4  # the temperature did something
    for i in range(0, 40, 7):  # alone, and inside a batch of other lengths
        np.testing.assert_allclose(predictor.probabilities([ids[i]])[0], served[i], atol=1e-5)


def test_language_model_pretraining_learns_and_feeds_the_classifier(tmp_path: Path, corpus: Dataset) -> None:
    """A short LM pretraining run lowers its loss and is recorded; the classifier then trains from it."""
    config = replace(TINY_CONFIG, max_samples=300, epochs=1, pretrain_epochs=2)
    result = train(corpus, split_dataset(corpus), tmp_path / "run", config)
    lm = result.summary["pretraining"]
    assert [r["epoch"] for r in lm] == [1, 2]
    assert lm[1]["lm_loss_per_direction"] < lm[0]["lm_loss_per_direction"]
    assert result.summary["training"]["epochs_run"] == 1


def test_the_command_line_is_generated_from_the_config_with_its_defaults_and_help(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every option of TrainConfig and ModelConfig is a flag whose default is the dataclass's own."""
    args = parser().parse_args(["train"])
    assert train_config(args) == TrainConfig()
    changed = train_config(
        parser().parse_args(["train", "--no-vectors", "--hidden-size", "96", "--ends", "--epochs", "3"])
    )
    assert (changed.vectors, changed.model.hidden_size, changed.model.ends, changed.epochs) == (False, 96, True, 3)
    assert changed.model == ModelConfig(hidden_size=96, ends=True)
    with pytest.raises(SystemExit):
        parser().parse_args(["all", "--help"])
    help_text = capsys.readouterr().out
    assert "language-model pretraining epochs" in help_text and "--source-balance" in help_text


def test_service_tokenizes_exactly_as_training(
    tiny_run: TrainResult, tiny_model_dir: Path, corpus_split: Split
) -> None:
    """Training's in-memory tokenizer and the file the service loads agree, odd inputs included."""
    served = Predictor.load(tiny_model_dir, provider="cpu")
    odd = [
        "NUL\x00byte",
        "tabs\tand\nnewlines",
        "ｆｕｌｌ ｗｉｄｔｈ",
        "👍🏽 👨‍👩‍👧",
        "<br/>only<br />markup<br>",
        "a" * 5000,
    ]
    texts = [ex.text for ex in corpus_split.test[:150] + corpus_split.test[-150:]] + odd
    expected = tiny_run.tokenizer.encode_batch(texts)
    got = served.encode(texts)
    assert [e.ids for e in got] == [e.ids for e in expected]
    assert [bool(e.overflowing) for e in got] == [bool(e.overflowing) for e in expected]
