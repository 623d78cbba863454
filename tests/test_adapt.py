"""Adapting a trained model to a user's texts: real (small) fine-tuning from the graph's own weights, the
side-by-side card recomputed, and the adapted directory swapped into a running server under load."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from model_runtime import Predictor, read_card
from tests.support import ROOT, TINY_CONFIG, MadeOnce, launch, metric, steady_load, stop_server
from training.data import Dataset, Example, Split, split_dataset
from training.evaluate import evaluate_examples
from training.pipeline import ExportSpec, ship
from training.sources import MOVIE_REVIEW_SOURCES, load_sources
from training.train import train

pytestmark = pytest.mark.slow
ADMIN = {"Authorization": "Bearer admin-secret"}


@pytest.fixture(scope="module")
def movie_model(made_once: MadeOnce) -> Path:
    """A tiny model that saw movie reviews only: tweets are a domain it never saw (made once per recipe)."""

    def make(model_dir: Path) -> None:
        movies = load_sources(MOVIE_REVIEW_SOURCES)
        result = train(movies, split_dataset(movies), model_dir.parent / "run", TINY_CONFIG)
        ship(result, split_dataset(movies), ExportSpec(model_dir, "movie-bilstm", "1.0.0", "pytest fixture"))

    return made_once("movie-bilstm", make)


@pytest.fixture(scope="module")
def tweets() -> Split:
    return split_dataset(load_sources(("tweets",)))


@pytest.fixture(scope="module")
def adapted(movie_model: Path, tweets: Split, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """`python -m training adapt` on about 1,900 tweets labelled negative, neutral or positive (the movie model
    never saw a neutral text); the adapted directory, the file, stdout."""
    root = tmp_path_factory.mktemp("adapt")
    data = root / "tweets.csv"
    with data.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["tweet", "mood"])
        # every 12th training tweet: about 1,200, their labels as common as in the source (the split lists
        # each label's texts together, so a prefix would hold one label only)
        writer.writerows([ex.text, tweets.labels[ex.label]] for ex in tweets.train[::12])
    out = root / "adapted"
    command = [
        sys.executable,
        "-m",
        "training",
        "adapt",
        "--data",
        str(data),
        "--text-column",
        "tweet",
        "--label-column",
        "mood",
        "--from",
        str(movie_model),
        "--model-dir",
        str(out),
        "--epochs",
        "6",
        "--learning-rate",
        "8e-3",  # the tiny model's own training rate
        "--rehearsal",
        "300",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, data, done.stdout


def test_adapting_to_a_domain_it_never_saw_raises_held_out_accuracy(
    adapted: tuple[Path, Path, str], movie_model: Path, tweets: Split
) -> None:
    out, _, stdout = adapted
    card = read_card(out)
    assert card.base["name"] == "movie-bilstm" and card.base["version"] == "1.0.0"
    side = card.adaptation["user_test"]
    assert side["adapted"]["accuracy"] > side["base"]["accuracy"]
    assert "adapting raised accuracy" in stdout and "/admin/model" in stdout and str(out.resolve()) in stdout
    # On every tweet of the held-out test split too (none of them in the user's file):
    labels = tweets.labels
    base = evaluate_examples(Predictor.load(movie_model), labels, tweets.test)["overall"]
    after = evaluate_examples(Predictor.load(out), labels, tweets.test)["overall"]
    assert after["accuracy"] > base["accuracy"] + 0.03
    assert after["per_class"]["neutral"]["f1"] > base["per_class"]["neutral"]["f1"]  # it learned neutral
    forgotten = card.adaptation["base_sources"]
    assert set(forgotten["after"]) == {"imdb", "rotten_tomatoes"}


def test_the_side_by_side_table_is_what_the_two_models_score(
    adapted: tuple[Path, Path, str], movie_model: Path
) -> None:
    """The card's figures recomputed here: the user's file mapped and split the same way, both models
    scored on its test texts."""
    out, data, _ = adapted
    with data.open(newline="") as f:
        rows = list(csv.DictReader(f))
    labels = read_card(movie_model).labels
    examples = [Example(r["tweet"], labels.index(r["mood"])) for r in rows]
    split = split_dataset(Dataset(examples, tuple(labels), str(data)))
    card = read_card(out)
    assert card.adaptation["data"]["split"] == split.sizes()
    for name, directory in (("base", movie_model), ("adapted", out)):
        recomputed = evaluate_examples(Predictor.load(directory), tuple(labels), split.test)["overall"]
        for key in ("accuracy", "ece", "log_loss", "macro_f1"):
            assert recomputed[key] == pytest.approx(card.adaptation["user_test"][name][key], abs=1e-6), (name, key)
    readme = (out / "README.md").read_text()
    assert (
        "Adapted from movie-bilstm 1.0.0" in readme
        and f"{card.adaptation['user_test']['adapted']['accuracy']:.4f}" in readme
    )


def test_a_running_server_swaps_to_the_adapted_model_under_load(
    adapted: tuple[Path, Path, str], movie_model: Path
) -> None:
    out = adapted[0]
    base, process = launch(movie_model, SENTIMENT_ADMIN_KEY="admin-secret")
    try:
        with steady_load(base, {"texts": ["@united lost my bag again", "great crew!"] * 4}) as load:
            time.sleep(1.0)
            swapped = httpx.post(f"{base}/admin/model", json={"model_dir": str(out)}, headers=ADMIN, timeout=60)
            assert swapped.status_code == 200, swapped.text
            time.sleep(1.0)
        assert load.failures == []
        models = [json.dumps(a["model"], sort_keys=True) for a in load.answers]
        adapted_ref = json.loads(models[-1])
        assert adapted_ref["name"] == "movie-bilstm-adapted"
        assert adapted_ref["base"] == {"name": "movie-bilstm", "version": "1.0.0"}
        assert json.dumps({"name": "movie-bilstm", "version": "1.0.0"}, sort_keys=True) in models
        assert httpx.get(f"{base}/model").json()["base"]["name"] == "movie-bilstm"
        assert metric(base, 'sentiment_model_swaps_total{result="ok"}') == 1
        answer = httpx.post(f"{base}/predict", json={"text": "great crew!"}).json()["predictions"][0]
        assert np.isclose(sum(answer["probabilities"].values()), 1.0)
    finally:
        stop_server(process)


@pytest.mark.parametrize("keep_neutral", [False, True])
def test_a_file_of_two_labels_gives_a_model_that_answers_those_two(
    tiny_model_dir: Path, tweets: Split, tmp_path: Path, keep_neutral: bool
) -> None:
    """On a base that answers negative, neutral and positive, a file labelled only negative and positive
    gives a model that answers those two (the neutral output taken out of the head), unless --keep-neutral
    asks to keep it; the side-by-side report says how often each model gave the right label."""
    data = tmp_path / "polar.csv"
    polar = [ex for ex in tweets.train if tweets.labels[ex.label] != "neutral"][::20]
    with data.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows([ex.text, tweets.labels[ex.label]] for ex in polar)
    out = tmp_path / "adapted"
    command = [
        sys.executable,
        "-m",
        "training",
        "adapt",
        "--data",
        str(data),
        "--from",
        str(tiny_model_dir),
        "--model-dir",
        str(out),
        "--epochs",
        "1",
        "--rehearsal",
        "100",
    ]
    done = subprocess.run(
        [*command, *(["--keep-neutral"] if keep_neutral else [])], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    card = read_card(out)
    expected = ["negative", "neutral", "positive"] if keep_neutral else ["negative", "positive"]
    assert card.labels == expected and Predictor.load(out).labels == tuple(expected)
    assert set(Predictor.load(out).predict(["What time is it?"])[0].probabilities) == set(expected)
    assert "label right (accuracy)" in done.stdout and "polarity (base)" in done.stdout
    # The base's own sources are compared on what both answer: the base's polarity for a two-label model.
    before, base = card.adaptation["base_sources"]["before"], read_card(tiny_model_dir).metrics["test"]["by_source"]
    key = "accuracy" if keep_neutral else "polarity_accuracy"
    assert before["tweets"]["accuracy"] == base["tweets"][key]
