"""download_tree against a real S3 endpoint (moto): a key that would land outside the download
folder is refused, naming the key, before anything is written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from galley import storage

HOSTILE_KEYS = [
    "pkg/../escaped.txt",
    "pkg/sub/../../escaped.txt",
    "pkg//escaped.txt",
    "pkg/..\\escaped.txt",
    "pkg/sub\\..\\..\\escaped.txt",
    "pkg/./escaped.txt",
]


def _bucket(s3: Any, name: str, keys: list[str]) -> None:
    s3.create_bucket(Bucket=name)
    for key in keys:
        s3.put_object(Bucket=name, Key=key, Body=b"payload of " + key.encode())


def _files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("hostile", HOSTILE_KEYS)
def test_a_key_leaving_the_folder_is_refused_and_nothing_is_written(s3: Any, tmp_path: Path, hostile: str) -> None:
    bucket = "hostile-" + str(HOSTILE_KEYS.index(hostile))
    _bucket(s3, bucket, ["pkg/config.json", hostile, "pkg/zzz-after.txt"])
    listed = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="pkg/")["Contents"]}
    assert hostile in listed, "moto kept the key as it was given"
    destination = tmp_path / "scratch" / "download"
    destination.mkdir(parents=True)
    with pytest.raises(storage.StorageError) as refused:
        storage.download_tree(f"s3://{bucket}/pkg/", destination)
    assert repr(hostile) in str(refused.value)
    assert type(refused.value).__name__ == "UnsafeName"
    assert _files_under(tmp_path) == set(), "nothing is written, inside the destination or out of it"


def test_a_key_with_a_leading_slash_is_refused(s3: Any, tmp_path: Path) -> None:
    """``pkg/`` + ``/abs/path``: the old code wrote ``destination / "/abs/path"``, which is ``/abs/path``."""
    outside = tmp_path / "escaped.txt"
    key = f"pkg/{outside}"
    _bucket(s3, "hostile-absolute", ["pkg/config.json", key])
    destination = tmp_path / "download"
    destination.mkdir()
    with pytest.raises(storage.StorageError) as refused:
        storage.download_tree("s3://hostile-absolute/pkg", destination)
    assert repr(key) in str(refused.value)
    assert not outside.exists()
    assert _files_under(tmp_path) == set()


def test_a_plain_tree_downloads_and_folder_markers_are_skipped(s3: Any, tmp_path: Path) -> None:
    _bucket(s3, "plain-tree", ["pkg/", "pkg/config.json", "pkg/sub/", "pkg/sub/model.onnx", "pkg-other/x"])
    destination = tmp_path / "download"
    assert storage.download_tree("s3://plain-tree/pkg/", destination) == destination
    assert _files_under(destination) == {"config.json", "sub/model.onnx"}
    assert (destination / "sub" / "model.onnx").read_bytes() == b"payload of pkg/sub/model.onnx"


@pytest.mark.parametrize("name", ["/etc/passwd", "../x", "a/../../x", "a//b", "a\\b", "a\x00b", "./a", "a/", ""])
def test_name_problem_refuses_what_is_not_a_plain_relative_name(name: str) -> None:
    from galley.storage.uris import name_problem

    assert name_problem(name) is not None


@pytest.mark.parametrize("name", ["report.html", "model.int8.onnx", "sub/model.onnx", "..x", "x..", "a.b/c"])
def test_name_problem_accepts_plain_names(name: str) -> None:
    from galley.storage.uris import name_problem

    assert name_problem(name) is None
