"""Logging set-up shared by the command-line entry points: plain lines on stdout, no secrets."""

from __future__ import annotations

import logging
import sys


def configure(verbose: bool = False, prefix: str = "") -> None:
    """One handler on stdout with timestamps; library chatter kept at WARNING."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter(f"%(asctime)s {prefix}%(name)s %(levelname)s %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "kubernetes", "PIL", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
