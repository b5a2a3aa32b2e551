"""Headless Chromium loads the launched Space (space/app.py, tiny random models): a screenshot is written and the
rendered DOM (after the JavaScript ran) contains the key components, found by their elem_id.

Needs the Debian ``chromium`` package at /usr/bin/chromium (``scripts/install_test_deps.sh`` installs it); skips
with that hint otherwise. Everything stays on 127.0.0.1 (no first-run, sync, component-update or QUIC traffic).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
    pytest.skip("chromium not installed: run scripts/install_test_deps.sh", allow_module_level=True)
pytest.importorskip("gradio")
from space_launch import launched_space  # noqa: E402

SPACE_ENV = {
    "RESADAPT_BACKBONE": "tiny-qwen2_5_vl",
    "RESADAPT_ALLOCATOR": "prior",
    "RESADAPT_DEVICE": "cpu",
    "GRADIO_ANALYTICS_ENABLED": "False",
}
# elem_id values set in space/app.py: inputs, controls and outputs a user needs
KEY_IDS = (
    "video-input", "image-input", "question", "budget", "max-visual-tokens", "allocator-kind", "backbone",
    "run-button", "allocate-button", "answer", "budget-summary", "scale-plot", "stats-table", "frame-gallery",
)
VIRTUAL_TIME_MS = 20000
CHROMIUM_TIMEOUT_S = 90


@pytest.fixture(scope="module")
def page_url(tmp_path_factory):
    with launched_space(SPACE_ENV, tmp_path_factory.mktemp("browser_examples")) as (_, _, url):
        yield url


def chromium(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
        f"--user-data-dir={profile}", "--window-size=1280,1600", f"--virtual-time-budget={VIRTUAL_TIME_MS}",
        *extra, url,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S)


def test_screenshot(page_url, tmp_path):
    shot = tmp_path / "space.png"
    result = chromium(page_url, tmp_path / "profile", f"--screenshot={shot}")
    assert shot.is_file(), f"no screenshot (rc {result.returncode}): {result.stderr[-2000:]}"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(shot) as image:
        assert image.size == (1280, 1600)
        colours = image.convert("RGB").resize((160, 200)).getcolors(maxcolors=1 << 16)
    # a rendered page, not a blank one: many distinct colours and a file of real size
    assert colours is None or len(colours) > 50
    assert shot.stat().st_size > 20_000


def test_rendered_dom_has_the_key_components(page_url, tmp_path):
    result = chromium(page_url, tmp_path / "profile", "--dump-dom")
    dom = result.stdout
    assert result.returncode == 0, result.stderr[-2000:]
    missing = [elem_id for elem_id in KEY_IDS if f'id="{elem_id}"' not in dom]
    assert not missing, f"components missing from the rendered DOM: {missing}"
    assert "ResAdapt" in dom and "Budget (target retention)" in dom
    assert "Allocate only" in dom and "Answer" in dom
