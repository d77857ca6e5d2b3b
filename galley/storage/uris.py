"""URI-addressed storage: local paths and ``s3://``."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

_credentials: ContextVar[Mapping[str, str] | None] = ContextVar("galley_storage_credentials", default=None)


class StorageError(Exception):
    """A location that cannot be read or written, with the URI and the reason."""


class StorageNotFound(StorageError):
    """The object, folder or bucket does not exist: a definite answer from the store."""


class StorageUnavailable(StorageError):
    """The store did not answer the question (unreachable, timed out, throttled, refused our
    credentials): the object may well be there, and asking again later may succeed."""


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def _local(uri: str) -> Path:
    return Path(uri.removeprefix("file://"))


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def join(uri: str, *parts: str) -> str:
    """``uri`` with ``parts`` appended, one ``/`` between each."""
    text = uri
    for part in parts:
        text = text.rstrip("/") + "/" + part.lstrip("/")
    return text


@contextmanager
def using_credentials(values: Mapping[str, str] | None) -> Iterator[None]:
    """Within the block, S3 settings come from ``values`` (a Secret's data) instead of the environment.

    The operator reads each resource's storage with that resource's Secret; the values stay in memory.
    """
    token = _credentials.set(values)
    try:
        yield
    finally:
        _credentials.reset(token)


DEFAULT_ENDPOINT = "GALLEY_DEFAULT_S3_ENDPOINT"
"""The endpoint used where the settings name none (the chart's storage.endpoint, in every pod)."""
S3_SETTINGS = ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ENDPOINT_URL",
               "AWS_ENDPOINT_URL_S3", DEFAULT_ENDPOINT)
"""Environment variables that each say how this process reaches S3."""


def s3_configured() -> bool:
    """Whether this process's environment says how to reach S3 (keys, a profile, a web identity,
    an endpoint, or a credentials file); without it, a client would guess AWS's own endpoint."""
    return any(os.environ.get(name) for name in S3_SETTINGS) or (Path.home() / ".aws" / "credentials").is_file()


@dataclass(frozen=True)
class Timeouts:
    """How long one S3 call may take: seconds to connect, seconds per read, attempts in all."""

    connect: float = 10
    read: float = 60
    attempts: int = 5


_timeouts = Timeouts()


def set_timeouts(timeouts: Timeouts) -> None:
    """Bound every S3 call of this process. The trainer and the predictor keep the defaults (a
    large package over a slow link); the operator, whose few workers serve every resource, sets
    short ones, so a store that does not answer holds a worker seconds, not minutes."""
    global _timeouts
    _timeouts = timeouts
    _client.cache_clear()


@lru_cache(maxsize=16)
def _client(endpoint: str | None, region: str | None, key_id: str | None, secret: str | None,
            anonymous: bool = False) -> Any:
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    config = Config(retries={"max_attempts": _timeouts.attempts, "mode": "standard"},
                    connect_timeout=_timeouts.connect, read_timeout=_timeouts.read)
    if anonymous:
        config = config.merge(Config(signature_version=UNSIGNED))
    return boto3.client("s3", endpoint_url=endpoint, region_name=region or "us-east-1",
                        aws_access_key_id=key_id, aws_secret_access_key=secret, config=config)


def s3_client() -> Any:
    """A boto3 S3 client from :func:`using_credentials`, else the standard AWS environment.

    Inside :func:`using_credentials` the given settings are all there is: without an access key
    the client is anonymous, and never falls back to the process's own identity (its
    environment, instance profile or web identity), so an operator cannot lend its identity to a
    resource that named no Secret.
    """
    given = _credentials.get()
    settings = os.environ if given is None else given
    key_id = settings.get("AWS_ACCESS_KEY_ID")
    return _client(
        settings.get("AWS_ENDPOINT_URL_S3") or settings.get("AWS_ENDPOINT_URL") or settings.get(DEFAULT_ENDPOINT)
        or os.environ.get(DEFAULT_ENDPOINT),
        settings.get("AWS_DEFAULT_REGION") or settings.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
        key_id,
        settings.get("AWS_SECRET_ACCESS_KEY"),
        anonymous=given is not None and not key_id,
    )


_MISSING = ("NoSuchKey", "404", "NotFound")


def _s3_code(error: Exception) -> str:
    """The S3 error code; "" for errors with no answer (a dropped connection has ``response=None``)."""
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _s3_error(uri: str, error: Exception) -> StorageError:
    code = _s3_code(error)
    if code in ("NoSuchBucket",):
        return StorageNotFound(f"{uri}: bucket {_split(uri)[0]!r} does not exist")
    if code in _MISSING:
        return StorageNotFound(f"{uri}: no such object")
    if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
        return StorageUnavailable(f"{uri}: access denied ({code}); check the storage credentials")
    return StorageUnavailable(f"{uri}: {error}")


def read_bytes(uri: str) -> bytes:
    if not is_s3(uri):
        try:
            return _local(uri).read_bytes()
        except FileNotFoundError as error:
            raise StorageNotFound(f"{uri}: {error.strerror or error}") from error
        except OSError as error:
            raise StorageError(f"{uri}: {error.strerror or error}") from error
    bucket, key = _split(uri)
    try:
        body: bytes = s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
        return body
    except Exception as error:
        raise _s3_error(uri, error) from error


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def write_bytes(uri: str, data: bytes) -> None:
    """Write ``data`` at ``uri``; a local write goes through a temporary file and a rename."""
    if not is_s3(uri):
        path = _local(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_bytes(data)
        os.replace(partial, path)
        return
    bucket, key = _split(uri)
    try:
        s3_client().put_object(Bucket=bucket, Key=key, Body=data)
    except Exception as error:
        raise _s3_error(uri, error) from error


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


def exists(uri: str) -> bool:
    if not is_s3(uri):
        return _local(uri).exists()
    bucket, key = _split(uri)
    try:
        s3_client().head_object(Bucket=bucket, Key=key)
        return True
    except Exception as error:
        if _s3_code(error) in _MISSING:
            return False
        raise _s3_error(uri, error) from error


def list_files(uri: str) -> list[str]:
    """Every file under ``uri`` (recursively), as full URIs, sorted."""
    if not is_s3(uri):
        root = _local(uri)
        if not root.exists():
            raise StorageNotFound(f"{uri}: no such file or folder")
        if root.is_file():
            return [uri]
        return sorted(str(p) for p in root.rglob("*") if p.is_file())
    bucket, prefix = _split(uri)
    found: list[str] = []
    try:
        paginator = s3_client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            found.extend(f"s3://{bucket}/{item['Key']}" for item in page.get("Contents", []))
    except Exception as error:
        raise _s3_error(uri, error) from error
    return sorted(found)


def delete_tree(uri: str) -> int:
    """Delete every file under the folder ``uri``; how many went. Only ``galley delete
    --purge-output`` calls it, after the user confirmed: Galley otherwise never deletes storage."""
    prefix = uri.rstrip("/") + "/"
    if not is_s3(uri):
        root = _local(uri)
        if not root.is_dir():
            return 0
        count = sum(1 for p in root.rglob("*") if p.is_file())
        shutil.rmtree(root)
        return count
    files = list_files(prefix)
    bucket, _ = _split(prefix)
    try:
        for start in range(0, len(files), 1000):
            keys = [{"Key": _split(f)[1]} for f in files[start:start + 1000]]
            s3_client().delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    except Exception as error:
        raise _s3_error(uri, error) from error
    return len(files)


class UnsafeName(StorageError):
    """A name (an object key, a file name read from a package) that would land outside the folder
    it is meant for: refused before anything is written, since following it could overwrite or
    disclose any file this process can reach."""


MAX_SEGMENT_CHARACTERS = 255
"""The longest file name a Linux file system takes (NAME_MAX); longer is ENAMETOOLONG at open."""
MAX_NAME_CHARACTERS = 1024


def name_problem(name: object) -> str | None:
    """Why ``name`` is not a plain relative file name, or None when it is one.

    A plain name is ``/``-separated segments, none of them empty, ``.`` or ``..``, with no
    backslash (a separator on Windows, and a way to smuggle ``..\\``) and no NUL (which cuts the
    name short in C). Such a name can only point under the folder it is joined to; the one thing
    it cannot rule out is a symlink inside that folder, which :func:`inside` checks.
    """
    if not isinstance(name, str) or not name:
        return "it is not a non-empty string"
    if "\x00" in name:
        return "it contains NUL"
    if "\\" in name:
        return "it contains a backslash"
    if name.startswith("/"):
        return "it is absolute"
    segments = name.split("/")
    if "" in segments:
        return "it has an empty segment"
    if ".." in segments or "." in segments:
        return "it has a '.' or '..' segment"
    if len(name) > MAX_NAME_CHARACTERS or any(len(segment) > MAX_SEGMENT_CHARACTERS for segment in segments):
        return (f"it is longer than a file system takes ({MAX_SEGMENT_CHARACTERS} characters a segment, "
                f"{MAX_NAME_CHARACTERS} in all)")
    return None


def inside(folder: Path, name: str) -> Path | None:
    """``folder / name`` with every symlink followed, or None when that leaves ``folder``."""
    root = folder.resolve()
    try:
        path = (root / name).resolve()
    except (RuntimeError, OSError):  # a symlink loop (RuntimeError before Python 3.13), or worse
        return None
    return path if path.is_relative_to(root) else None


def _download_target(destination: Path, file: str, prefix: str) -> Path | None:
    """Where the object ``file`` lands under ``destination``; None for a folder marker (a key
    ending in ``/``, which holds no file). Raises :class:`UnsafeName` for a key that would land
    anywhere else."""
    relative = file[len(prefix):]
    if relative == "":
        return None  # the marker of the folder itself
    marker = relative.endswith("/")
    name = relative[:-1] if marker else relative
    problem = name_problem(name)
    if problem is None and inside(destination, name) is None:
        problem = "it resolves outside the download folder"
    if problem is not None:
        key = _split(file)[1]
        raise UnsafeName(f"{file}: the key {key!r} is not a plain relative name under {prefix} ({problem}); "
                         f"nothing was downloaded")
    return None if marker else destination / name


def download_tree(uri: str, destination: Path) -> Path:
    """Copy every file under ``uri`` into ``destination``, keeping relative paths; local folders are used in place.

    Every key is checked before the first is downloaded: one that would land outside
    ``destination`` (``..``, a leading ``/``, a backslash) refuses the whole tree, so a hostile
    bucket cannot write anywhere else on this machine.
    """
    if not is_s3(uri):
        return _local(uri)
    prefix = uri.rstrip("/") + "/"
    targets = [(file, _download_target(destination, file, prefix)) for file in list_files(prefix)]
    for file, target in targets:
        if target is None:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(read_bytes(file))
    return destination
