"""``python -m galley.local.supervise NAME``: a background supervisor for one started service."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from galley import logs
from galley.local.services import Supervisor
from galley.local.state import Store


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("name")
    args = parser.parse_args()
    logs.configure()
    try:
        Supervisor(Store(args.home), [args.name]).run()
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
