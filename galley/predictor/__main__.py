"""The predictor container's entry point: ``python -m galley.predictor --model URI``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

# OpenMP threads that spin after each forward pass take the cores from the event loop and the
# decoding threads; passive waiting keeps a 2-core server's latency at the bare network's. It only
# takes effect before torch is first imported, which is why torch is imported lazily below.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from galley import logs
from galley.predictor.limits import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_IMAGES,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_QUEUED,
)

log = logging.getLogger("galley.predictor")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="PATH_OR_URI", help="the model package (holds config.json)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    parser.add_argument("--name", help="model name in KServe routes (default: the package's name)")
    parser.add_argument("--model-version", help="version shown on the test page (default: the package's)")
    parser.add_argument("--runtime", choices=["auto", "onnxruntime", "pytorch-bf16", "pytorch"], default="auto",
                        help="auto (default) measures the candidates at load and keeps the fastest")
    parser.add_argument("--precision", choices=["auto", "fp32", "int8"], default="auto",
                        help="auto serves the package's INT8 graph where it has one (default auto)")
    parser.add_argument("--threads", type=int, help="inference threads (default: the container's CPU limit)")
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES,
                        help=f"larger request bodies get 413 (default {DEFAULT_MAX_BODY_BYTES})")
    parser.add_argument("--max-images", type=int, default=DEFAULT_MAX_IMAGES,
                        help=f"most images in one request, on every route (default {DEFAULT_MAX_IMAGES})")
    parser.add_argument("--max-in-flight", type=int, default=DEFAULT_MAX_IN_FLIGHT,
                        help=f"POST requests handled at once; more get 503 with Retry-After "
                             f"(default {DEFAULT_MAX_IN_FLIGHT})")
    parser.add_argument("--max-queued", type=int, default=DEFAULT_MAX_QUEUED,
                        help=f"images waiting for inference; more get 503 with Retry-After "
                             f"(default {DEFAULT_MAX_QUEUED})")
    parser.add_argument("--max-batch", type=int, default=16, help="most images run in one pass")
    parser.add_argument("--batch-window-ms", type=float, default=10.0,
                        help="longest wait for requests still being decoded before a pass (default 10; "
                             "a lone request never waits)")


def run(args: argparse.Namespace) -> int:
    from galley.model.package import PackageError
    from galley.predictor.server import PortInUse, ServeOptions, serve
    from galley.storage import StorageError

    options = ServeOptions(
        model_uri=args.model, host=args.host, port=args.port, name=args.name, version=args.model_version,
        runtime=args.runtime, threads=args.threads, max_body_bytes=args.max_body_bytes, max_batch=args.max_batch,
        batch_window_ms=args.batch_window_ms, max_images=args.max_images, max_in_flight=args.max_in_flight,
        max_queued=args.max_queued, precision=args.precision,
    )
    try:
        serve(options)
    except (PortInUse, PackageError, StorageError, RuntimeError) as error:
        log.error("%s", error)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m galley.predictor", description="Serve a Galley model package.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    logs.configure()
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
