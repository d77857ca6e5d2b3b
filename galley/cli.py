"""The ``galley`` command: one entry point for users on one machine and on a cluster.

Subcommands import their heavy dependencies (torch, kopf, kserve) only when they run, so
``galley validate`` answers in a fraction of a second.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml

Command = Callable[[argparse.Namespace], int]


def _crds(args: argparse.Namespace) -> int:
    from galley.api.crds import all_crds

    crds = all_crds()
    if args.stdout:
        sys.stdout.write("---\n".join(_dump(crd) for crd in crds.values()))
        return 0
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    for name, crd in crds.items():
        (out / name).write_text(_dump(crd), encoding="utf-8")
        print(f"wrote {out / name}")
    return 0


def _dump(document: object) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=120)


def _validate(args: argparse.Namespace) -> int:
    from galley.manifests import InvalidManifests, load_resources

    try:
        resources = load_resources(args.filename)
    except InvalidManifests as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return 1
    for resource in resources:
        print(f"{resource.KIND}/{resource.name}: valid")
    return 0


def _train(args: argparse.Namespace) -> int:
    from galley.trainer.__main__ import main as trainer_main

    return trainer_main(["-f", args.filename] + (["-v"] if args.verbose else []))


def _serve(args: argparse.Namespace) -> int:
    from galley import logs
    from galley.predictor.__main__ import run

    logs.configure()
    return run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="galley", description="Train and serve image classifiers.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    crds = commands.add_parser("crds", help="write the CustomResourceDefinitions generated from the API models")
    crds.add_argument("--output", "-o", default="crds", help="folder to write into (default: crds)")
    crds.add_argument("--stdout", action="store_true", help="print them instead of writing files")
    crds.set_defaults(run=_crds)

    validate = commands.add_parser("validate", help="check Galley resources in YAML files")
    validate.add_argument("-f", "--filename", action="append", required=True, metavar="FILE_OR_DIR")
    validate.set_defaults(run=_validate)

    train = commands.add_parser("train", help="run a TrainingJob in the foreground on this machine")
    train.add_argument("-f", "--filename", required=True, help="a YAML file holding one TrainingJob")
    train.add_argument("-v", "--verbose", action="store_true")
    train.set_defaults(run=_train)

    serve = commands.add_parser("serve", help="serve a model package over HTTP on this machine")
    from galley.predictor.__main__ import add_arguments

    add_arguments(serve)
    serve.set_defaults(run=_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Command = args.run
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
