"""The console's Data page over a real embedded store, through its ASGI app and once in Chromium:
the data set's classes with thumbnails served by the console, its faults, near-duplicates and
split; thumbnails only of the data set's own photos; names from the data escaped."""

from __future__ import annotations

import html
import io
import os
import re
import shutil
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from galley.api.flavors import default_catalogue
from galley.console.app import create_app
from galley.console.security import Guard
from galley.local.backend import EmbeddedBackend
from galley.testing.browser import Browser
from galley.testing.processes import console
from tests.trainer.test_inspection import FaultySet, build_faulty_set

SMALL = {"image_size": "64"}


@pytest.fixture(scope="module")
def faulty_set(tmp_path_factory: pytest.TempPathFactory) -> FaultySet:
    return build_faulty_set(tmp_path_factory.mktemp("faulty-console") / "photos")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    backend = EmbeddedBackend(tmp_path_factory.mktemp("home"))
    return TestClient(create_app(backend, default_catalogue(), Guard(None, allowed_hosts=["testserver"]), where="test"))


def thumbnails(page: str) -> list[str]:
    return [html.unescape(src) for src in re.findall(r'src="(/data/thumbnail\?[^"]+)"', page)]


def section(page: str, name: str) -> str:
    start = page.index(f'<section id="{name}">')
    return page[start:page.index("</section>", start)]


def test_the_data_page_shows_classes_thumbnails_faults_groups_and_split(client: TestClient,
                                                                        faulty_set: FaultySet) -> None:
    page = client.get("/data", params={"uri": str(faulty_set.root), **SMALL})
    assert page.status_code == 200, page.text
    classes = section(page.text, "classes")
    for name, photos in (("水果", 12), ("鸟", 13), ("花", 1), ("空", 0)):
        assert re.search(rf'data-class="{name}">.*?</td>\s*<td>{photos}</td>', classes, re.S), name
    assert "tiny: 1 photo" in classes and "empty folder: training sees no class for it" in classes
    assert "broken.jpg" in section(page.text, "unreadable") and "not an image" in section(page.text, "unreadable")
    assert "searched with mobilenet_v2" in section(page.text, "near-duplicates")
    assert "group by group" in section(page.text, "split")
    sources = thumbnails(page.text)
    assert len(sources) >= 8 + 8 + 1
    served = client.get(sources[0])
    assert served.status_code == 200 and served.headers["content-type"] == "image/jpeg"
    assert served.headers["x-content-type-options"] == "nosniff"
    assert max(Image.open(io.BytesIO(served.content)).size) <= 128


def test_thumbnails_come_only_from_inside_the_data_set(client: TestClient, faulty_set: FaultySet) -> None:
    outside = faulty_set.root.parent / "outside.jpg"
    shutil.copy(next((faulty_set.root / "水果").glob("*.jpg")), outside)
    asked = {"uri": str(faulty_set.root), **SMALL}
    for source in (f"{faulty_set.root}/../outside.jpg", str(outside), "/etc/passwd", "../outside.jpg",
                   f"{faulty_set.root}/水果/../../outside.jpg", f"{faulty_set.root}/notes.txt"):
        refused = client.get("/data/thumbnail?" + urlencode({**asked, "source": source}))
        assert refused.status_code == 404 and refused.text == "not a photo of this data set", source
    unreadable = client.get("/data/thumbnail?" + urlencode({**asked, "source": f"{faulty_set.root}/鸟/broken.jpg"}))
    assert unreadable.status_code == 415 and "not an image" in unreadable.text


def test_a_manifest_shows_its_refused_line_and_escapes_class_names(client: TestClient, faulty_set: FaultySet) -> None:
    page = client.get("/data", params={"uri": str(faulty_set.manifest), **SMALL})
    assert page.status_code == 200
    assert "<script>alert" not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in section(page.text, "classes")
    assert f"line {faulty_set.refused_line}" in section(page.text, "refused")
    assert "no label (expected annotation[].name)" in section(page.text, "stops")


def test_the_create_form_links_to_the_data_page_for_the_data_typed(client: TestClient, faulty_set: FaultySet) -> None:
    form = client.get("/create").text
    button = re.search(r'<button[^>]*id="data-button"[^>]*>', form)
    assert button and 'formaction="/data"' in button.group(0) and 'formmethod="get"' in button.group(0)
    # What the browser sends for that button: the form's fields, as a GET to /data.
    fields = {"name": "food", "algorithm": "mobilenet_v2", "dataset": str(faulty_set.root), "flavor": "cpu-2c-8g",
              "learning_rate_strategy": "20:fast", "nodes": "1", "output": "/tmp/out", "secret": ""}
    page = client.get("/data?" + urlencode(fields) + "&image_size=64")
    assert page.status_code == 200 and 'data-class="水果"' in page.text
    assert 'value="' + html.escape(str(faulty_set.root)) + '"' in page.text


def test_the_data_page_in_chromium_from_the_create_form(faulty_set: FaultySet, tmp_path: Path) -> None:
    """A user types the data set into the create form, presses the link, and sees the thumbnails."""
    browser = Browser()
    try:
        with console("--home", str(tmp_path / "home"), env=dict(os.environ)) as url:
            browser.open(url + "/create")
            browser.evaluate(f"document.querySelector('[name=dataset]').value = {str(faulty_set.root)!r}")
            browser.evaluate("document.getElementById('data-button').click()")
            browser.wait_for("location.pathname === '/data' && document.readyState === 'complete' && "
                             "document.getElementById('classes') !== null", timeout=120)
            asked = parse_qs(urlsplit(browser.evaluate("location.href")).query)
            assert asked["dataset"] == [str(faulty_set.root)]
            browser.wait_for("Array.from(document.querySelectorAll('#classes img'))"
                             ".every(i => i.complete && i.naturalWidth > 0)", timeout=60)
            shown = browser.evaluate("Array.from(document.querySelectorAll('#classes tr[data-class]'))"
                                     ".map(r => [r.dataset.class, r.querySelectorAll('img').length])")
            assert dict(shown) == {"水果": 8, "鸟": 8, "花": 1, "空": 0}
            assert browser.evaluate("document.title") == "Data · Galley console"
    finally:
        browser.close()
