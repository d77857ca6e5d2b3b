"""``galley operator`` / ``python -m galley.operator``: run the kopf operator."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--namespace", action="append", default=[],
                        help="watch only this namespace (repeatable; default: all namespaces)")
    parser.add_argument("--liveness", default="http://0.0.0.0:8080/healthz",
                        help="kopf's liveness endpoint (default http://0.0.0.0:8080/healthz)")
    parser.add_argument("-v", "--verbose", action="store_true")


def run(args: argparse.Namespace) -> int:
    import kopf

    from galley import logs
    from galley.operator import handlers, metrics  # noqa: F401  (handlers: registers the handlers)
    from galley.operator.settings import OperatorSettings

    logs.configure(args.verbose)
    port = OperatorSettings().metrics_port
    if port is not None:  # metrics are worth less than reconciles: a port that is taken is said, not fatal
        log = logging.getLogger("galley.operator")
        try:
            log.info("serving Prometheus metrics on port %d at /metrics", metrics.serve(port))
        except OSError as error:
            log.error("cannot serve Prometheus metrics on port %d (%s); the operator runs without them", port, error)
    kopf.run(
        standalone=True,  # one operator per cluster (the chart runs one replica): no kopf peering
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        liveness_endpoint=args.liveness or None,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m galley.operator", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
