"""The test page in a real browser (Debian's headless Chromium): pick a photo, see every class's score."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from galley.testing.browser import Browser
from galley.testing.processes import predictor


@pytest.fixture(scope="module")
def page_url(trained_package: Path) -> Iterator[str]:
    with predictor(str(trained_package)) as url:
        yield url + "/"


def test_upload_on_the_test_page_shows_scores_for_every_class(page_url: str, food_photos: Any,
                                                              tmp_path: Path) -> None:
    path, _ = food_photos.holdout[0]
    browser = Browser()
    try:
        browser.open(page_url)
        browser.wait_for("document.getElementById('model-name').textContent === 'food-model'")
        assert "version 0.0.1" in browser.evaluate("document.getElementById('model-info').textContent")
        browser.set_file("#file", path)
        rows = browser.wait_for(
            "Array.from(document.querySelectorAll('#scores .row'))"
            ".map(r => [r.dataset.label, Number(r.querySelector('.score').textContent),"
            " r.querySelector('.bar > div').style.width])"
        )
        predicted = browser.evaluate("document.getElementById('predicted').textContent")
        browser.screenshot(tmp_path / "page.png")
    finally:
        browser.close()
    assert {row[0] for row in rows} == {"水果", "花", "蔬菜", "鸟"}
    assert predicted == rows[0][0]
    scores = [row[1] for row in rows]
    assert scores == sorted(scores, reverse=True) and sum(scores) == pytest.approx(1.0, abs=2e-3)
    assert rows[0][2].endswith("%") and float(rows[0][2][:-1]) == pytest.approx(scores[0] * 100, abs=0.1)
