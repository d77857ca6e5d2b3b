"""The predictor's side of the package format: a package naming a file outside itself is never
loaded, and the unauthenticated ``GET /report`` never serves a file outside the package.

The first tests run real predictor processes (``python -m galley.predictor``) on a small real
package (a random MobileNetV2 exported to ONNX); the rest load packages as the predictor does,
from a local folder and from a real S3 endpoint (moto)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from galley.model import package
from galley.testing.processes import free_port, stop_process

REFUSED = "is not a plain relative file name inside the package"
PASSWD = Path("/etc/passwd").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def servable(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small package that a predictor serves: random MobileNetV2 weights, its ONNX graph, a report."""
    from galley.model.architectures import build

    folder = tmp_path_factory.mktemp("servable") / "model"
    network = build("mobilenet_v2", 2).eval()
    onnx = package.export_onnx(network, 64)
    assert onnx is not None
    config = package.PackageConfig(name="names", algorithm="mobilenet_v2", labels=["a", "b"], image_size=64,
                                   resize_size=73, onnx=package.ONNX, report=package.REPORT)
    package.write_package(str(folder), config, network, {package.ONNX: onnx, package.REPORT: b"<p>report</p>"})
    return folder


def _variant(servable: Path, where: Path, **fields: Any) -> Path:
    """A copy of the servable package with ``fields`` changed in its config.json."""
    folder = where / "model"
    shutil.copytree(servable, folder)
    config = json.loads((folder / package.CONFIG).read_text(encoding="utf-8"))
    (folder / package.CONFIG).write_text(json.dumps({**config, **fields}), encoding="utf-8")
    return folder


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", "replace")


@pytest.fixture
def start() -> Iterator[Any]:
    """Start a predictor on a package; the process, its URL, and the file its output goes to."""
    running: list[subprocess.Popen[bytes]] = []

    def run(folder: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
        port = free_port()
        with log.open("wb") as output:
            process = subprocess.Popen([sys.executable, "-m", "galley.predictor", "--model", str(folder),
                                        "--port", str(port)], stdout=output, stderr=subprocess.STDOUT)
        running.append(process)
        return process, f"http://127.0.0.1:{port}"

    yield run
    for process in running:
        if process.poll() is None:
            stop_process(process)


def _ready_or_exited(process: subprocess.Popen[bytes], url: str, timeout: float = 120) -> bool:
    """True once the predictor is ready; False once it has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            if _get(f"{url}/v2/health/ready")[0] == 200:
                return True
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"the predictor at {url} neither became ready nor exited")


def _symlinked_report(servable: Path, where: Path) -> Path:
    folder = _variant(servable, where, files={})
    (folder / package.REPORT).unlink()
    (folder / package.REPORT).symlink_to("/etc/passwd")
    return folder


@pytest.mark.parametrize("hostile", ["absolute", "symlink"])
def test_a_predictor_refuses_to_serve_a_package_whose_report_is_outside_it(
        servable: Path, tmp_path: Path, start: Any, hostile: str) -> None:
    if hostile == "absolute":
        folder, name = _variant(servable, tmp_path, report="/etc/passwd"), "/etc/passwd"
    else:
        folder, name = _symlinked_report(servable, tmp_path), package.REPORT
    log = tmp_path / "predictor.log"
    process, url = start(folder, log)
    if _ready_or_exited(process, url):
        status, body = _get(f"{url}/report")
        served = "served /etc/passwd on GET /report" if PASSWD in body else f"answered {status} on GET /report"
        pytest.fail(f"the predictor loaded the package and {served}")
    said = log.read_bytes().decode("utf-8", "replace")
    assert process.returncode == 1, said
    assert f"field 'report': {name!r} {REFUSED}" in said, said


def test_get_report_never_follows_a_report_swapped_for_a_symlink_after_loading(
        servable: Path, tmp_path: Path, start: Any) -> None:
    """A local package is served in place: its report.html, replaced by a symlink to /etc/passwd
    after the predictor loaded, is not served."""
    folder = _variant(servable, tmp_path)
    process, url = start(folder, tmp_path / "predictor.log")
    assert _ready_or_exited(process, url), (tmp_path / "predictor.log").read_text(encoding="utf-8")
    assert _get(f"{url}/report") == (200, "<p>report</p>")
    (folder / package.REPORT).unlink()
    (folder / package.REPORT).symlink_to("/etc/passwd")
    status, body = _get(f"{url}/report")
    assert PASSWD not in body, "GET /report served /etc/passwd"
    assert status == 404


HOSTILE = [
    ("report", "/etc/passwd"),
    ("report", "../x"),
    ("report", "a//b"),
    ("report", "a\\b"),
    ("report", "a\x00b"),
    ("weights", "/etc/passwd"),
    ("onnx", "/etc/passwd"),
    ("onnx", "../model.onnx"),
    ("onnx_int8", "../../model.int8.onnx"),
    ("files", "../config.json"),
]


def _assert_refused(error: BaseException, field: str, name: str) -> None:
    assert type(error).__name__ == "PackageInvalid", repr(error)
    assert getattr(error, "reason", None) == "PackageInvalid"
    assert f"field {field!r}: {name!r} {REFUSED}" in str(error), str(error)


def _load(uri: str) -> None:
    from galley.predictor.model import GalleyModel

    GalleyModel(None, uri).load()


@pytest.mark.parametrize(("field", "name"), HOSTILE)
def test_loading_a_local_package_naming_a_file_outside_is_refused(
        servable: Path, tmp_path: Path, field: str, name: str) -> None:
    config = json.loads((servable / package.CONFIG).read_text(encoding="utf-8"))
    changed = {"files": {**config["files"], name: "0" * 64}} if field == "files" else {field: name}
    folder = _variant(servable, tmp_path, **changed)
    with pytest.raises(package.PackageError) as refused:
        _load(str(folder))
    _assert_refused(refused.value, field, name)


def test_loading_a_local_package_with_a_symlink_out_is_refused(servable: Path, tmp_path: Path) -> None:
    folder = _symlinked_report(servable, tmp_path)
    with pytest.raises(package.PackageError) as refused:
        _load(str(folder))
    _assert_refused(refused.value, "report", package.REPORT)


def _upload(s3: Any, bucket: str, folder: Path, prefix: str = "model/") -> None:
    s3.create_bucket(Bucket=bucket)
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            s3.put_object(Bucket=bucket, Key=prefix + str(path.relative_to(folder)), Body=path.read_bytes())


HOSTILE_IN_S3 = [("report", "/etc/passwd"), ("report", "../../x"), ("onnx", "a//b")]


@pytest.mark.parametrize(("field", "name"), HOSTILE_IN_S3)
def test_loading_a_package_from_s3_naming_a_file_outside_is_refused(
        servable: Path, tmp_path: Path, s3: Any, field: str, name: str) -> None:
    bucket = f"names-config-{HOSTILE_IN_S3.index((field, name))}"
    _upload(s3, bucket, _variant(servable, tmp_path, **{field: name}))
    with pytest.raises(package.PackageError) as refused:
        _load(f"s3://{bucket}/model/")
    _assert_refused(refused.value, field, name)


def _files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


HOSTILE_KEYS = ["model/../escaped.txt", "model/sub/../../../escaped.txt", "model/..\\escaped.txt"]


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_a_package_in_s3_with_a_key_outside_it_is_refused_before_anything_is_written(
        servable: Path, tmp_path: Path, s3: Any, key: str) -> None:
    bucket = f"names-key-{HOSTILE_KEYS.index(key)}"
    _upload(s3, bucket, servable)
    s3.put_object(Bucket=bucket, Key=key, Body=b"written outside the package")
    scratch = tmp_path / "scratch" / "galley-model"
    scratch.mkdir(parents=True)
    with pytest.raises(package.PackageError) as refused:
        package.fetch(f"s3://{bucket}/model/", scratch, attempts=1)  # what GalleyModel.load does
    assert type(refused.value).__name__ == "PackageInvalid", repr(refused.value)
    assert repr(key) in str(refused.value)
    assert _files_under(tmp_path) == set()
