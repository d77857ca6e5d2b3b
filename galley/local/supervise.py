"""``python -m galley.local.supervise NAME``: a background supervisor for one started service."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from galley import logs
from galley.api.resources import Model, OnlineService
from galley.local.secrets import use_secret_of
from galley.local.services import Supervisor
from galley.local.state import Store


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("name")
    args = parser.parse_args()
    logs.configure()
    store = Store(args.home)
    service = store.get(OnlineService, args.name)
    model = store.get(Model, service.spec.model) if service else None
    use_secret_of([r for r in (service, model) if r is not None], store.home)
    try:
        Supervisor(store, [args.name]).run()
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
