"""The web page and the offline API docs in headless Chromium (Debian's package), against a real server.

Screenshots land in test-artifacts/browser/. Skipped where /usr/bin/chromium or Playwright is missing
(scripts/test.sh installs both when it runs as root on Debian).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import SHIPPED_MODEL, artifact_dir, launch, stop_server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed"),
]
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
KEY = "page-test-key"
REVIEW = "I watched it on Sunday. The acting was wonderful and I loved the ending."


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    base, process = launch(SHIPPED_MODEL, SENTIMENT_API_KEY=KEY)
    yield base
    stop_server(process)


@pytest.fixture
def page(tmp_path: Path, server: str) -> Iterator[tuple[Any, list[str]]]:
    with playwright_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1100, "height": 900},
        )
        requested: list[str] = []
        context.on("request", lambda request: requested.append(request.url))
        try:
            yield context.new_page(), requested
        finally:
            context.close()


def test_page_scores_and_highlights_a_review(page: tuple[Any, list[str]], server: str) -> None:
    tab, requested = page
    tab.goto(f"{server}/")
    tab.fill("#input", REVIEW)
    tab.click("#score")
    error = tab.locator("#error")
    error.wait_for(state="visible")
    assert "API key" in error.inner_text() and "{" not in error.inner_text()  # readable, not a JSON dump

    tab.fill("#api-key", KEY)
    tab.click("#score")
    tab.locator(".result .label").wait_for()
    assert tab.locator(".result .label").inner_text().lower() == "positive"
    assert "% confident" in tab.locator(".result .score").inner_text()
    assert not error.is_visible()
    assert tab.locator("#legend").is_visible()
    wonderful = tab.locator(".word", has_text="wonderful")
    assert float(wonderful.get_attribute("data-weight")) > 0
    assert "log-odds towards positive" in wonderful.get_attribute("title")
    assert tab.locator(".text").inner_text() == REVIEW  # the highlighted text is the review, untouched
    wonderful.hover()
    tab.screenshot(path=str(artifact_dir("browser") / "page.png"), full_page=True)

    tab.check("#per-line")
    tab.fill("#input", "A triumph, moving and funny.\n\nDull, slow and far too long.\nIt was fine.")
    tab.click("#score")
    tab.locator(".result").nth(2).wait_for()  # a locator, not wait_for_function: the page's CSP forbids eval
    labels = [x.lower() for x in tab.locator(".result .label").all_inner_texts()]
    assert labels[:2] == ["positive", "negative"]
    tab.screenshot(path=str(artifact_dir("browser") / "page-lines.png"), full_page=True)
    assert all(url.startswith(server) for url in requested), [u for u in requested if not u.startswith(server)]


def test_page_reads_a_pasted_document_sentence_by_sentence(page: tuple[Any, list[str]], server: str) -> None:
    """The document view: each sentence coloured by its label, exactly the sentences /analyze gives, the
    document's verdict, and a warning for a text in another language."""
    tab, _ = page
    tab.goto(f"{server}/")
    tab.fill("#api-key", KEY)
    tab.check("#by-sentence")
    document = (
        "The staff were wonderful and so friendly. The room was filthy and the bed was awful.\n"
        "It is near 👍🏽 the station."
    )
    tab.fill("#input", document)
    tab.click("#score")
    tab.locator(".result .sentence").first.wait_for()
    analyzed = httpx.post(f"{server}/analyze", json={"text": document}, headers={"Authorization": f"Bearer {KEY}"})
    expected = analyzed.json()["documents"][0]
    sentences = tab.locator(".sentence")
    assert sentences.all_inner_texts() == [s["text"] for s in expected["sentences"]]
    assert [sentences.nth(i).get_attribute("data-label") for i in range(sentences.count())] == [
        s["label"] for s in expected["sentences"]
    ]
    assert tab.locator(".result .label").inner_text().lower() == expected["label"]
    assert tab.locator(".result .text").inner_text() == document
    tab.screenshot(path=str(artifact_dir("browser") / "page-document.png"), full_page=True)

    tab.fill("#input", "Das Essen war schrecklich und der Kellner unhöflich.")
    tab.click("#score")
    tab.locator(".result .warning").wait_for()
    assert "another language (de)" in tab.locator(".result .warning").inner_text()


def test_docs_page_lists_the_operations_offline(page: tuple[Any, list[str]], server: str) -> None:
    tab, requested = page
    tab.goto(f"{server}/docs")
    tab.locator(".opblock").first.wait_for()
    paths = tab.locator(".opblock-summary-path").all_inner_texts()
    for path in ("/predict", "/explain", "/analyze", "/model", "/readyz"):
        assert any(path in p for p in paths), paths
    tab.screenshot(path=str(artifact_dir("browser") / "docs.png"), full_page=False)
    assert all(url.startswith(server) for url in requested), [u for u in requested if not u.startswith(server)]


@pytest.mark.parametrize(
    "text",
    [
        "😀😀 great movie, awful ending",
        "e\u0301te\u0301 was cafe\u0301 perfect 👍🏽 but the end 👨‍👩‍👧 dragged",
        "東京 the sushi was fresh, 美味しい and cheap",
    ],
)
def test_each_highlight_covers_exactly_its_word(page: tuple[Any, list[str]], server: str, text: str) -> None:
    """Emoji outside the Basic Multilingual Plane, combining marks and CJK: every highlighted span holds
    exactly the characters /explain says the word has (its offsets count code points; the page slices
    code points, not UTF-16 units)."""
    tab, _ = page
    tab.goto(f"{server}/")
    tab.fill("#api-key", KEY)
    tab.fill("#input", text)
    tab.click("#score")
    tab.locator(".result .label").wait_for()
    explained = httpx.post(f"{server}/explain", json={"text": text}, headers={"Authorization": f"Bearer {KEY}"})
    words = [w["text"] for w in explained.json()["explanations"][0]["words"]]
    assert tab.locator(".word").all_inner_texts() == words
    assert tab.locator(".text").inner_text() == text


def test_page_splits_by_the_published_limits_and_shows_refused_texts_beside_the_others(
    page: tuple[Any, list[str]], server: str
) -> None:
    """40 documents of 40 sentences are more sentences than one /analyze takes: the page sends them in as
    many requests as the published limits need and shows every document; in the word view a line the
    service refuses (a lone <br /> tag reads as nothing) is shown with its reason beside the scored lines."""
    tab, _ = page
    tab.goto(f"{server}/")
    tab.fill("#api-key", KEY)
    tab.check("#per-line")
    tab.check("#by-sentence")
    documents = [" ".join(f"Sentence {j} of review {i} was fine." for j in range(40)) for i in range(40)]
    tab.fill("#input", "\n".join(documents))
    tab.click("#score")
    tab.locator(".result.document").nth(39).wait_for()
    assert tab.locator(".result.document").count() == 40
    assert tab.locator(".sentence").count() == 40 * 40
    assert not tab.locator("#error").is_visible()

    tab.uncheck("#by-sentence")
    tab.fill("#input", "A triumph, moving and funny.\n<br />\nDull, slow and far too long.")
    tab.click("#score")
    tab.locator(".result").nth(2).wait_for()
    assert tab.locator(".result.refused").count() == 1
    assert "non-whitespace" in tab.locator(".result.refused .warning").inner_text()
    assert [x.lower() for x in tab.locator(".result .label").all_inner_texts()] == ["positive", "negative"]
    assert not tab.locator("#error").is_visible()
    tab.screenshot(path=str(artifact_dir("browser") / "page-refused-line.png"), full_page=True)


def test_page_scores_a_file_as_a_job_and_shows_its_summary(
    page: tuple[Any, list[str]], server: str, tmp_path: Path
) -> None:
    """Upload a CSV, pick its text column from the header, watch the job run, then read the summary (bars
    per label, the confidence histogram, the most negative and most positive rows) and download the results."""
    tab, requested = page
    source = tmp_path / "reviews.csv"
    reviews = ["A triumph, moving and funny.", "Dull, slow and far too long.", "The meeting is at 3 pm."] * 40
    source.write_text("id,review\n" + "".join(f'{i},"{r}"\n' for i, r in enumerate(reviews)), encoding="utf-8")
    tab.goto(f"{server}/")
    tab.fill("#api-key", KEY)
    tab.set_input_files("#job-file", str(source))
    tab.locator("#job-column option[value=review]").wait_for(state="attached")
    assert tab.locator("#job-column").input_value() == "review"  # the header's text column, chosen for you
    tab.click("#job-start")
    tab.locator("#job-summary .headline").wait_for(timeout=120_000)
    assert tab.locator("#job-summary .headline").inner_text().startswith("120 rows:")
    counts = [
        int(b.get_attribute("data-count") or 0) for b in tab.locator("#job-summary .bars").first.locator(".bar").all()
    ]
    assert sum(counts) == 120
    assert tab.locator(".histogram div").count() == 10
    assert "Dull, slow and far too long." in tab.locator(".extremes").first.inner_text()
    assert tab.locator("#job-bar").get_attribute("value") == "120"
    with tab.expect_download() as download:
        tab.click("#job-summary .download-csv")
    lines = Path(download.value.path()).read_text().splitlines()
    assert lines[0].startswith("row,line,id,label,score") and len(lines) == 121
    tab.screenshot(path=str(artifact_dir("browser") / "page-job.png"), full_page=True)
    assert all(url.startswith(server) or url.startswith("blob:") for url in requested)
