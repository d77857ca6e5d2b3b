"""Storage locations: ``s3://bucket/prefix/`` or a local path.

S3 covers MinIO, Ceph and OBS through an endpoint setting; other schemes are refused here so
that a typo (``s4://``, ``http://``) fails at ``kubectl apply`` and not an hour into a job.
"""

from __future__ import annotations

import re

S3_BUCKET = r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"
PATTERN = rf"^(s3://{S3_BUCKET}(/.*)?|file://.+|[^:]+)$"
"""``s3://bucket[/key]``, ``file://path``, or a path without a scheme."""

EXPECTED = "expected s3://bucket/prefix/ or a local path"


def check_storage_uri(text: str) -> str:
    """Return ``text`` when it names a storage location Galley can reach, else raise."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"is empty; {EXPECTED}")
    if text.startswith("s3://"):
        bucket = text[len("s3://") :].split("/", 1)[0]
        if not re.fullmatch(S3_BUCKET, bucket):
            raise ValueError(
                f"{text!r}: bucket {bucket!r} must be 3-63 lowercase letters, digits, dots or hyphens; {EXPECTED}"
            )
        return text
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text) and not text.startswith("file://"):
        raise ValueError(f"{text!r} uses an unsupported scheme; {EXPECTED}")
    if not re.fullmatch(PATTERN, text):
        raise ValueError(f"{text!r} is not a storage location; {EXPECTED}")
    return text
