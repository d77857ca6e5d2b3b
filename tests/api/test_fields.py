"""Splits, durations, storage URIs and names: what is accepted and how refusals read."""

from datetime import timedelta

import pytest

from galley.api.durations import format_duration, parse_duration
from galley.api.splits import parse_split
from galley.api.uris import check_storage_uri


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90s", 90), ("30m", 1800), ("1h", 3600), ("1h30m", 5400), ("7d", 7 * 86400)],
)
def test_durations(text: str, expected: int) -> None:
    assert parse_duration(text) == timedelta(seconds=expected)
    assert parse_duration(format_duration(parse_duration(text))) == parse_duration(text)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("0s", "longer than zero"), ("8d", "maximum of 7 days"), ("1 h", "not a duration"),
     ("-5m", "not a duration"), ("", "not a duration"), ("1w", "not a duration"), ("60", "not a duration")],
)
def test_bad_durations(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_duration(text)


def test_split_reference_and_derived_eval() -> None:
    assert parse_split("train:0.8,eval:0.2").train == 0.8
    assert parse_split("train:0.7").eval == pytest.approx(0.3)
    assert parse_split("eval:0.25, train:0.75").eval == 0.25


@pytest.mark.parametrize(
    "text", ["train:0.8,eval:0.3", "train:1", "train:0", "eval:0.2", "train:0.8,train:0.2", "test:0.2,train:0.8", ""]
)
def test_bad_splits_name_the_expected_form(text: str) -> None:
    with pytest.raises(ValueError, match=r"train:0\.8,eval:0\.2"):
        parse_split(text)


@pytest.mark.parametrize("uri", ["s3://food/food_recognition/", "s3://my.bucket", "/data/photos", "photos", "file:///x"])
def test_storage_uris_accepted(uri: str) -> None:
    assert check_storage_uri(uri) == uri


@pytest.mark.parametrize(
    ("uri", "fragment"),
    [("http://example.com/x", "unsupported scheme"), ("s3://", "bucket ''"), ("s3://Food/x", "bucket 'Food'"),
     ("s3://ab/x", "bucket 'ab'"), ("", "is empty")],
)
def test_bad_storage_uris(uri: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        check_storage_uri(uri)
