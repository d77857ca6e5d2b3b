"""Splits, durations, storage URIs, names and ingress hosts: what is accepted and how refusals read."""

import re
from datetime import timedelta

import pytest
from pydantic import ValidationError

from galley.api.durations import format_duration, parse_duration
from galley.api.fields import HOSTNAME_PATTERN
from galley.api.resources import IngressExposure
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



GOOD_HOSTS = ["food.example.com", "localhost", "xn--fiq228c.cn", "1e100.net", "a1.b2.io", "svc.ns.svc.cluster.local",
              "a" * 63 + ".com"]
IP_HOSTS = ["169.254.169.254", "127.0.0.1", "10.0.0.1", "0.0.0.0", "2130706433", "127.1", "0x7f.1", "0x7f000001",
            "0xa9fea9fe", "017700000001", "::1", "[::1]", "fd00::1", "::ffff:169.254.169.254"]
NUMERIC_LAST_LABEL = ["1.2.3.4.5", "food.123", "a.b.9", "food.1x", "0", "99999999999"]
MALFORMED_HOSTS = ["Food_Site", "food.example.com.", "-a.com", "a..com", "a" * 64 + ".com", "food.example.com:80",
                   "http://food.example.com", "*.example.com"]


@pytest.mark.parametrize("host", GOOD_HOSTS)
def test_ingress_hosts_accepted(host: str) -> None:
    assert IngressExposure(host=host).host == host


@pytest.mark.parametrize("host", IP_HOSTS)
def test_ingress_hosts_that_are_ip_addresses_are_refused(host: str) -> None:
    """Python's reading (ipaddress) and the C resolver's (inet_aton: 127.1, 0x7f.1, 2130706433) both count."""
    with pytest.raises(ValidationError, match="is an IP address; an ingress host must be a DNS name"):
        IngressExposure(host=host)


@pytest.mark.parametrize("host", NUMERIC_LAST_LABEL)
def test_ingress_hosts_with_a_numeric_last_label_are_refused(host: str) -> None:
    with pytest.raises(ValidationError, match=r"is an IP address|last label .* must start with a letter"):
        IngressExposure(host=host)


@pytest.mark.parametrize("host", MALFORMED_HOSTS)
def test_malformed_ingress_hosts_are_refused(host: str) -> None:
    with pytest.raises(ValidationError, match="not a DNS host name"):
        IngressExposure(host=host)


@pytest.mark.parametrize("host", GOOD_HOSTS + IP_HOSTS + NUMERIC_LAST_LABEL + MALFORMED_HOSTS)
def test_the_crd_pattern_agrees_with_the_check(host: str) -> None:
    """The API server applies HOSTNAME_PATTERN alone (and maxLength): it must refuse what the check refuses."""
    try:
        IngressExposure(host=host)
        accepted = True
    except ValidationError:
        accepted = False
    assert accepted == bool(re.fullmatch(HOSTNAME_PATTERN, host))
