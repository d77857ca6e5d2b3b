"""``python -m galley.local.background --home DIR train NAME``: a TrainingJob created from the
console, trained after the console's request has returned.

It trains as ``galley run`` does (resuming from checkpoints), then records every Model that names
the job, so that "deploy this" finds them Ready; its output goes to ``<home>/logs/``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from galley import logs
from galley.api.resources import Model, TrainingJob
from galley.local.models import reconcile_model
from galley.local.secrets import use_secret_of
from galley.local.state import Store


def train(store: Store, name: str) -> int:
    from galley.local.training import run_training_job

    job = store.get(TrainingJob, name)
    if job is None:
        print(f"TrainingJob {name!r} not found in {store.home}", file=sys.stderr)
        return 1
    use_secret_of([job], store.home)
    result = run_training_job(store, name)
    for model in store.all(Model):
        if model.spec.source.training_job == name:
            reconcile_model(store, model.name)
    return 0 if result.status is not None and result.status.phase == "Succeeded" else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("action", choices=["train"])
    parser.add_argument("name")
    args = parser.parse_args(argv)
    logs.configure()
    try:
        return train(Store(args.home), args.name)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
