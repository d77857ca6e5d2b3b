"""The trainer's side of the package format: every file name in config.json is a plain relative
name inside the package. Writing a package that breaks this is refused before anything is
written; reading one (config.json alone, as the Model check and ``galley run`` do, or the whole
package) is refused with PackageInvalid, naming the field and the name."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from galley.model import package

REFUSED = "is not a plain relative file name inside the package"
HOSTILE = [
    ("report", "/etc/passwd"),
    ("report", "../x"),
    ("report", "sub/../../x"),
    ("report", "a//b"),
    ("report", "a\\b"),
    ("report", "a\x00b"),
    ("report", "./report.html"),
    ("weights", "/etc/passwd"),
    ("onnx", "../model.onnx"),
    ("onnx_int8", "/var/run/secrets/kubernetes.io/serviceaccount/token"),
    ("files", "../escaped.txt"),
    ("files", "/etc/passwd"),
    ("report", "r" * 300 + ".html"),  # a file system's ENAMETOOLONG at open: a 500 on /report and /api/model
]


def _config(**fields: Any) -> dict[str, Any]:
    return {"name": "food", "algorithm": "mobilenet_v2", "labels": ["a", "b"], **fields}


def _package(folder: Path, field: str, name: str) -> Path:
    """A package folder whose config.json names ``name`` in ``field``."""
    folder.mkdir(parents=True, exist_ok=True)
    config = _config(files={name: "0" * 64}) if field == "files" else _config(**{field: name})
    (folder / package.CONFIG).write_text(json.dumps(config), encoding="utf-8")
    return folder


def _assert_refused(error: BaseException, field: str, name: str) -> None:
    assert type(error).__name__ == "PackageInvalid", repr(error)
    assert getattr(error, "reason", None) == "PackageInvalid"
    assert f"field {field!r}: {name!r} {REFUSED}" in str(error), str(error)


@pytest.mark.parametrize(("field", "name"), HOSTILE)
def test_read_config_refuses_a_name_outside_the_package(tmp_path: Path, field: str, name: str) -> None:
    folder = _package(tmp_path / "model", field, name)
    with pytest.raises(package.PackageError) as refused:
        package.read_config(str(folder))
    _assert_refused(refused.value, field, name)
    assert str(folder / package.CONFIG) in str(refused.value)


@pytest.mark.parametrize(("field", "name"), HOSTILE)
def test_fetching_the_whole_package_refuses_it(tmp_path: Path, field: str, name: str) -> None:
    folder = _package(tmp_path / "model", field, name)
    with pytest.raises(package.PackageError) as refused:
        package.fetch(str(folder), tmp_path / "scratch", attempts=1)
    _assert_refused(refused.value, field, name)


def _symlinked_out(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A local package whose report.html is a symlink to /etc/passwd, and whose ``sub`` is one to /etc."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "report.html").symlink_to("/etc/passwd")
    (folder / "sub").symlink_to("/etc")
    return folder, {"report": "report.html", "onnx": "sub/passwd"}


@pytest.mark.parametrize("field", ["report", "onnx"])
def test_a_symlink_out_of_a_local_package_is_refused(tmp_path: Path, field: str) -> None:
    folder, names = _symlinked_out(tmp_path)
    (folder / package.CONFIG).write_text(json.dumps(_config(**{field: names[field]})), encoding="utf-8")
    with pytest.raises(package.PackageError) as read:
        package.read_config(str(folder))
    _assert_refused(read.value, field, names[field])
    assert "symlink" in str(read.value)
    with pytest.raises(package.PackageError) as fetched:
        package.fetch(str(folder), tmp_path / "scratch", attempts=1)
    _assert_refused(fetched.value, field, names[field])


def test_a_symlink_loop_in_a_local_package_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "report.html").symlink_to("loop.html")
    (folder / "loop.html").symlink_to("report.html")
    (folder / package.CONFIG).write_text(json.dumps(_config(report="report.html")), encoding="utf-8")
    with pytest.raises(package.PackageError) as read:
        package.read_config(str(folder))
    _assert_refused(read.value, "report", "report.html")


def test_a_symlink_inside_the_package_is_fine(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "evaluation.html").write_text("<p>report</p>", encoding="utf-8")
    (folder / "report.html").symlink_to("evaluation.html")
    (folder / package.CONFIG).write_text(json.dumps(_config(report="report.html")), encoding="utf-8")
    assert package.read_config(str(folder)).report == "report.html"


def _files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("name", ["../escaped.txt", "/tmp/galley-escaped-by-a-test.txt", "a//b", "a\\b"])
def test_write_package_refuses_a_file_name_before_writing_anything(tmp_path: Path, name: str) -> None:
    from torch import nn

    output = tmp_path / "output" / "model"
    config = package.PackageConfig(name="food", algorithm="mobilenet_v2", labels=["a", "b"])
    with pytest.raises(package.PackageError) as refused:
        package.write_package(str(output), config, nn.Linear(2, 2), {name: b"payload"})
    _assert_refused(refused.value, "files", name)
    assert _files_under(tmp_path) == set()
    assert not Path("/tmp/galley-escaped-by-a-test.txt").exists()


def test_write_package_refuses_a_config_naming_a_file_outside(tmp_path: Path) -> None:
    from torch import nn

    output = tmp_path / "model"
    config = package.PackageConfig(name="food", algorithm="mobilenet_v2", labels=["a", "b"], report="/etc/passwd")
    with pytest.raises(package.PackageError) as refused:
        package.write_package(str(output), config, nn.Linear(2, 2), {})
    _assert_refused(refused.value, "report", "/etc/passwd")
    assert _files_under(tmp_path) == set()


def test_write_package_refuses_to_write_through_a_symlink_out_of_the_output(tmp_path: Path) -> None:
    from torch import nn

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    output = tmp_path / "model"
    output.mkdir()
    (output / "sub").symlink_to(elsewhere)
    config = package.PackageConfig(name="food", algorithm="mobilenet_v2", labels=["a", "b"])
    with pytest.raises(package.PackageError) as refused:
        package.write_package(str(output), config, nn.Linear(2, 2), {"sub/report.html": b"<p>report</p>"})
    _assert_refused(refused.value, "files", "sub/report.html")
    assert os.listdir(elsewhere) == []


def test_a_model_of_such_a_package_is_not_ready_with_reason_package_invalid(tmp_path: Path) -> None:
    from galley.api.resources import Model
    from galley.local.models import reconcile_model
    from galley.local.state import Store

    folder = _package(tmp_path / "model", "report", "/etc/passwd")
    store = Store(tmp_path / "home")
    store.apply(Model.model_validate({"apiVersion": "galley.dev/v1alpha1", "kind": "Model",
                                      "metadata": {"name": "hostile"}, "spec": {"source": {"uri": str(folder)}}}))
    status = reconcile_model(store, "hostile").status
    assert status is not None
    ready = next(c for c in status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("False", "PackageInvalid")
    assert f"field 'report': '/etc/passwd' {REFUSED}" in (ready.message or "")
