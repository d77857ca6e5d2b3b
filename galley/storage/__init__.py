"""Reading and writing by URI: ``s3://bucket/key`` through boto3, anything else as a local path.

One small surface (read, write, list, exists, download) serves the trainer, the predictor and the
operator, so a job reads the same whether its data sits in S3, MinIO or a local folder.
Credentials and the endpoint come from the standard AWS environment variables
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, ``AWS_DEFAULT_REGION``);
on Kubernetes the operator fills those from the Secret named in ``spec.storage``.
"""

from __future__ import annotations

from galley.storage.uris import (
    DEFAULT_ENDPOINT,
    S3_SETTINGS,
    StorageError,
    StorageNotFound,
    StorageUnavailable,
    Timeouts,
    delete_tree,
    download_tree,
    exists,
    is_s3,
    join,
    list_files,
    read_bytes,
    read_text,
    s3_configured,
    set_timeouts,
    using_credentials,
    write_bytes,
    write_text,
)

__all__ = [
    "DEFAULT_ENDPOINT",
    "S3_SETTINGS",
    "StorageError",
    "StorageNotFound",
    "StorageUnavailable",
    "Timeouts",
    "delete_tree",
    "download_tree",
    "exists",
    "is_s3",
    "join",
    "list_files",
    "read_bytes",
    "read_text",
    "s3_configured",
    "set_timeouts",
    "using_credentials",
    "write_bytes",
    "write_text",
]
