"""Request limits of the predictor (kept apart so the command line reads them without importing torch)."""

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
"""Bodies above this are refused with 413; ``--max-body-bytes`` changes it."""

DEFAULT_MAX_IMAGES = 32
"""Images accepted in one request, on every route, counted before any is decoded."""

DEFAULT_MAX_IN_FLIGHT = 64
"""POST requests handled at once; more are answered 503 with Retry-After before their bodies are read."""

DEFAULT_MAX_QUEUED = 64
"""Images waiting for inference at once; past this, 503 with Retry-After."""
