"""Headless Chromium on the launched Space (space/app.py with its CPU defaults): the page as a user meets it.

At desktop width (1280 x 800) the first example (a held-out pattern clip, answered by tiny-reader with the shipped
learned allocator) answers itself on load and the headline, the answer and the side by side are above the fold,
with the example's thumbnail in the card; the tighter needle example brings needle-reader and shows a wrong answer
next to native's right one; the frames are grouped by chunk and drawn at their true relative size; an error clears
the previous results. At phone width (390 x 844, mobile emulation) the page does not scroll sideways and the
headline, answer and side by side come first, fit and are readable. Nothing here depends on tiny-reader's weights
being trained (whether its answer is right is tests/test_space.py's must-show test).
Screenshots go to pytest's tmp folder (and to $RESADAPT_SCREENSHOTS when set, for a look).

Needs the Debian ``chromium`` package at /usr/bin/chromium (``scripts/install_test_deps.sh`` installs it); skips
with that hint otherwise. Chromium is driven over the DevTools protocol on a pipe (``space_launch.Chromium``) and
only talks to 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from space_launch import CHROMIUM, Chromium, launched_space

if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
    pytest.skip("chromium not installed: run scripts/install_test_deps.sh", allow_module_level=True)
pytest.importorskip("gradio")

SPACE_ENV = {  # the CPU defaults: tiny-reader, its learned allocator, budget 0.25, first example answered on load
    "RESADAPT_BACKBONE": "",
    "RESADAPT_ALLOCATOR": "",
    "RESADAPT_BUDGET": "",
    "RESADAPT_AUTORUN": "",
    "RESADAPT_MAX_NEW_TOKENS": "",
    "RESADAPT_DEVICE": "cpu",
    "GRADIO_ANALYTICS_ENABLED": "False",
}
HEADLINE = "document.querySelector('#headline .ra-big')"
LOAD_TIMEOUT_S = 90
PAPER = "https://arxiv.org/abs/2603.28610"
VERDICTS = ("✓ right", "✗ wrong")


@pytest.fixture(scope="module")
def page_url(tmp_path_factory):
    with launched_space(SPACE_ENV, tmp_path_factory.mktemp("browser_examples")) as (_, _, url):
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    folder = tmp_path_factory.mktemp("chromium")
    with Chromium(folder / "profile", log=folder / "chromium.log") as chromium:
        yield chromium


def _open(browser, url: str, width: int, height: int, mobile: bool):
    page = browser.page(width, height, mobile)
    page.goto(url)
    page.wait_for(f"{HEADLINE} !== null", LOAD_TIMEOUT_S)  # the first example ran on load
    # ... and the page's own styles are in (Gradio injects launch(css=...) after the first render)
    page.wait_for(f"getComputedStyle({HEADLINE}).fontWeight === '700'", 30)
    return page


def _shot(page, path: Path, full_page: bool = False) -> Path:
    page.screenshot(path, full_page=full_page)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000
    if os.environ.get("RESADAPT_SCREENSHOTS"):
        Path(os.environ["RESADAPT_SCREENSHOTS"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(os.environ["RESADAPT_SCREENSHOTS"]) / path.name)
    return path


def _rect(page, selector: str) -> dict:
    rect = page.evaluate(f"JSON.stringify(document.querySelector({json.dumps(selector)}).getBoundingClientRect())")
    return json.loads(rect)


def _side_by_side(page) -> list[list[str]]:
    return page.evaluate("[...document.querySelectorAll('#side-by-side tbody tr')].map("
                         "r => [...r.children].map(c => c.innerText.replace(/\\s+/g, ' ').trim()))")


def _answer_text(page) -> str:
    return page.evaluate("document.querySelector('#answer textarea').value")


def test_desktop_headline_answer_and_side_by_side_above_the_fold(browser, page_url, tmp_path):
    page = _open(browser, page_url, 1280, 800, mobile=False)
    big = page.evaluate(f"{HEADLINE}.innerText")
    kept = re.fullmatch(r"Kept (\d+) of 144 visual tokens \((\d+)% saved\)", big)
    assert kept and abs(int(kept.group(1)) - 36) <= 2, big  # budget 0.25 of the reader clip's 144 tokens
    verdict = page.evaluate("document.querySelector('#headline .ra-verdict').innerText")
    assert verdict.startswith("Answer: ") and any(v in verdict for v in VERDICTS), verdict
    headline = page.evaluate("document.querySelector('#headline').innerText")
    assert "tiny-reader" in headline and "trained on the pattern task" in headline and "random" not in headline
    assert "Learned allocator" in headline
    assert _answer_text(page).strip()
    assert "Which way do the fine stripes in the video run?\nA. horizontal stripes\nB. vertical stripes" in page.evaluate(
        "document.querySelector('#question textarea').value")  # the trained question text, prefilled
    rows = _side_by_side(page)
    assert [r[0] for r in rows] == ["Learned allocator", "FixedScale", "Native (scale 1)"]
    assert [r[1] for r in rows[1:]] == ["36 / 144 (25%)", "144 / 144 (100%)"]
    assert all(r[2] and r[3] in VERDICTS for r in rows)  # every run answered and graded against the known answer
    for selector in ("#headline", "#side-by-side table", "#answer"):
        assert _rect(page, selector)["bottom"] <= 800, f"{selector} is below the fold"
    assert page.evaluate(f"document.querySelector('a[href=\"{PAPER}\"]') !== null")  # the paper, in the header
    # the example card: the pattern clip's real frames and its known answer
    assert page.evaluate("document.querySelector('.ra-thumb').naturalWidth") > 400
    assert _rect(page, ".ra-thumb")["bottom"] <= 800
    card = page.evaluate("document.querySelector('.ra-example-text').innerText")
    assert "held-out pattern clip" in card and "Known answer:" in card
    # the allocation view: a chart of the 4 chunks with lines at scale 1 and at the budget, frames grouped by chunk
    assert page.evaluate("document.querySelectorAll('#allocation-view .ra-chart .ra-bar').length") == 4
    assert page.evaluate("document.querySelectorAll('#allocation-view .ra-ref-one').length") == 4
    assert "budget 0.25 spread evenly (scale 0.50)" in page.evaluate("document.querySelector('.ra-chart').innerText")
    pictures = page.evaluate("[...document.querySelectorAll('.ra-chunk')].map(c => c.querySelectorAll('img').length)")
    assert pictures == [2] * 4
    _shot(page, tmp_path / "space_desktop.png")
    _shot(page, tmp_path / "space_desktop_full.png", full_page=True)


def test_tighter_needle_budget_shows_a_wrong_answer_next_to_natives_right_one(browser, page_url):
    page = _open(browser, page_url, 1280, 800, mobile=False)
    page.click("#example-needle-tight")  # brings its answerer, needle-reader
    page.wait_for("document.querySelector('#headline').innerText.includes('needle-reader')", LOAD_TIMEOUT_S)
    page.wait_for("document.querySelector('#side-by-side').innerText.includes('✗ wrong')", LOAD_TIMEOUT_S)
    rows = _side_by_side(page)
    assert [r[3] for r in rows] == ["✗ wrong", "✗ wrong", "✓ right"] and rows[2][2] == "C. 3"
    assert "86% saved" in page.evaluate(f"{HEADLINE}.innerText")
    headline = page.evaluate("document.querySelector('#headline').innerText")
    assert "known answer C. 3" in headline and "Prior allocator" in headline  # the needle examples bring the prior
    page.click("#example-reader")  # ... and the pattern example brings tiny-reader and its learned allocator back
    page.wait_for("document.querySelector('#headline').innerText.includes('tiny-reader')", LOAD_TIMEOUT_S)
    assert "Learned allocator" in page.evaluate("document.querySelector('#headline').innerText")


def test_frames_are_drawn_at_their_true_relative_size(browser, page_url, tmp_path):
    """The texture & text clip gets different sizes per chunk: every picture's on-screen width and height are its
    chunk's pixel size times one common zoom, and its dashed box is the scale-1 size times the same zoom."""
    page = _open(browser, page_url, 1280, 800, mobile=False)
    page.click("#allocator-kind input[value='prior']")  # the training-free prior: sizes that differ per chunk
    page.click("#example-texture")
    page.wait_for("document.querySelectorAll('.ra-chunk').length === 8", LOAD_TIMEOUT_S)
    figures = page.evaluate(
        "[...document.querySelectorAll('.ra-chunk')].map(f => ({caption: f.querySelector('figcaption').innerText, "
        "images: [...f.querySelectorAll('img')].map(i => [i.getBoundingClientRect().width, "
        "i.getBoundingClientRect().height]), "
        "boxes: [...f.querySelectorAll('.ra-native')].map(b => b.getBoundingClientRect().width)}))")
    zooms, sizes = [], set()
    for figure in figures:
        width, height = map(int, re.search(r"(\d+)×(\d+) px", figure["caption"]).groups())
        sizes.add((width, height))
        assert len(figure["images"]) == 2 and re.match(r"Chunk \d+ · frames \d+–\d+", figure["caption"])
        for shown_w, shown_h in figure["images"]:
            zooms += [shown_w / width, shown_h / height]
    assert len(sizes) >= 2, "the example should give chunks different sizes"
    assert max(zooms) - min(zooms) < 0.02, zooms  # one zoom for all: relative sizes are true
    assert len({round(b) for f in figures for b in f["boxes"]}) == 1  # every chunk's scale-1 box is the same
    notes = page.evaluate("document.querySelector('#notes').innerText")
    # the example keeps the chosen answerer (tiny-reader), which says its answer means nothing on this clip
    assert "tiny-reader was trained only on the pattern task" in notes
    _shot(page, tmp_path / "space_texture_full.png", full_page=True)


def test_an_error_clears_the_previous_results(browser, page_url):
    page = _open(browser, page_url, 1280, 800, mobile=False)
    repo = "#allocator-repo textarea"
    page.click("#more-settings button")  # open "More settings" and type an allocator folder that does not exist
    page.wait_for(f"document.querySelector('{repo}')?.offsetParent != null", 30)
    assert page.evaluate(f"document.querySelector('{repo}').value") == "tiny-reader-allocator"  # the shipped one
    page.type_into(repo, "/nonexistent/allocator")
    page.wait_for(f"document.querySelector('{repo}').value === '/nonexistent/allocator'", 10)
    page.click("#run-button")
    page.wait_for(f"{HEADLINE} === null && document.querySelector('#side-by-side table') === null", 30)
    page.wait_for("document.body.innerText.includes('Could not load the learned allocator')", 30)
    assert _answer_text(page) == ""


def test_phone_layout(browser, page_url, tmp_path):
    page = _open(browser, page_url, 390, 844, mobile=True)
    width = page.evaluate("window.innerWidth")
    assert width == 390
    assert page.evaluate("document.documentElement.scrollWidth") <= width, "the page scrolls sideways"
    assert page.evaluate("document.body.scrollWidth") <= width
    headline, table, answer, video = (_rect(page, s) for s in ("#headline", "#side-by-side .ra-scroll", "#answer",
                                                              "#video-input"))
    assert headline["top"] < 844 * 0.6, "the headline should be on the first screen"
    assert headline["top"] < table["top"] < answer["top"] < video["top"]  # results first, inputs after
    for rect in (headline, table, answer):
        assert rect["left"] >= 0 and rect["right"] <= width
    # the table fits (or scrolls inside its own box), with every column readable
    assert page.evaluate("document.querySelector('#side-by-side .ra-scroll').scrollWidth") <= width
    assert all(len(r) == 4 and r[2] and r[3] in VERDICTS for r in _side_by_side(page))
    # every cell of the table is inside the screen (long answers wrap instead of widening the table)
    cells = page.evaluate("[...document.querySelectorAll('#side-by-side td, #side-by-side th')].map("
                          "c => c.getBoundingClientRect().right)")
    assert max(cells) <= width
    assert float(page.evaluate(f"getComputedStyle({HEADLINE}).fontSize")[:-2]) >= 18
    assert float(page.evaluate("getComputedStyle(document.querySelector('#side-by-side td')).fontSize")[:-2]) >= 12
    _shot(page, tmp_path / "space_phone.png")
    _shot(page, tmp_path / "space_phone_full.png", full_page=True)
