"""The ``galley`` command: one entry point for users on one machine and on a cluster.

Subcommands import their heavy dependencies (torch, kopf, kserve) only when they run, so
``galley validate`` answers in a fraction of a second.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from galley import __version__

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


def _rbac(args: argparse.Namespace) -> int:
    from galley.operator.rbac import cluster_role

    sys.stdout.write(_dump(cluster_role()))
    return 0


def _validate(args: argparse.Namespace) -> int:
    from galley.api.flavors import FlavorCatalogue
    from galley.manifests import InvalidManifests, load_resources

    try:
        catalogue = FlavorCatalogue.from_file(args.flavors) if args.flavors else None
    except (OSError, ValueError, yaml.YAMLError) as error:
        print(f"--flavors {args.flavors}: {error}", file=sys.stderr)
        return 1
    try:
        resources = load_resources(args.filename, catalogue)
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


def _store(args: argparse.Namespace) -> Any:
    from galley.local.state import Store

    return Store(Path(args.home) if args.home else None)


def _embedded(run: Callable[[], int], verbose: bool) -> int:
    """Run an embedded-mode command with the answers users expect to bad input, failure and Ctrl-C."""
    from galley import logs
    from galley.local.runner import RunFailed
    from galley.manifests import InvalidManifests

    logs.configure(verbose)
    try:
        return run()
    except InvalidManifests as error:
        print("\n".join(str(p) for p in error.problems), file=sys.stderr)
        return 1
    except RunFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to resume", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    def run() -> int:
        from galley.local.runner import run as run_resources

        run_resources(args.filename, store=_store(args))
        return 0

    return _embedded(run, args.verbose)


def _demo(args: argparse.Namespace) -> int:
    def run() -> int:
        from galley.demo.main import main as demo_main

        store = _store(args)
        workdir = Path(args.workdir) if args.workdir else store.home / "demo"
        return demo_main(workdir, epochs=args.epochs, auto_stop=args.auto_stop, store=store)

    return _embedded(run, args.verbose)


def _local(action: str) -> Command:
    def command(args: argparse.Namespace) -> int:
        from galley.local import commands

        try:
            if getattr(args, "cluster", False):
                return _on_cluster(action, args)
            store = _store(args)
            if action == "get":
                print(commands.get(store, args.kind, wide=args.output == "wide") if args.output in ("table", "wide")
                      else commands.get_list(store, args.kind, args.output))
            elif action == "describe":
                print(commands.describe(store, args.name))
            elif action == "logs":
                print(commands.logs(store, args.name), end="")
            elif action == "stop":
                print(commands.stop(store, args.name))
            elif action == "delete":
                print(commands.delete(store, args.name))
            elif action == "start":
                print(commands.start(store, args.name))
            elif action == "predict":
                images = [Path(p) for p in args.images]
                answers = commands.predict(store, args.target, images)
                if args.output == "json":
                    print(json.dumps(answers[0] if len(answers) == 1 else answers, ensure_ascii=False, indent=2))
                else:
                    print(commands.score_table(images, answers))
        except (commands.NotFound, RuntimeError) as error:
            return commands.fail(str(error))
        return 0

    return command


def _on_cluster(action: str, args: argparse.Namespace) -> int:
    """``get|describe|stop|start --cluster``: the same commands against the kubeconfig's cluster."""
    from kubernetes.client.rest import ApiException
    from kubernetes.config import ConfigException

    from galley.cluster import ClusterStore
    from galley.local import commands

    try:
        cluster = ClusterStore(args.namespace, args.context)
        if action == "get":
            print(commands.get(cluster, args.kind, wide=args.output == "wide") if args.output in ("table", "wide")
                  else commands.get_list(cluster, args.kind, args.output))
        elif action == "describe":
            print(commands.describe(cluster, args.name))
        elif action == "stop":
            print(cluster.stop(args.name))
        elif action == "delete":
            print(cluster.delete(args.name))
        else:
            print(cluster.start(args.name))
    except ConfigException as error:
        return commands.fail(f"no cluster to talk to: {error}")
    except ApiException as error:
        return commands.fail(f"the API server said {error.status} {error.reason}")
    except LookupError as error:
        return commands.fail(str(error))
    return 0


def _add_cluster_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cluster", action="store_true",
                        help="the resources on Kubernetes (kubeconfig, as kubectl), not the embedded ones")
    parser.add_argument("-n", "--namespace", help="with --cluster: the namespace (default: the context's)")
    parser.add_argument("--context", help="with --cluster: the kubeconfig context (default: the current one)")


class _HelpWithDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help shows its default, unless the help already says what the default is."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """The command's parser and its subcommands' (argparse makes those of the same class)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpWithDefaults)
        super().__init__(**kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="galley", description="Train and serve image classifiers.")
    parser.add_argument("--version", action="version", version=f"galley {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    crds = commands.add_parser("crds", help="write the CustomResourceDefinitions generated from the API models")
    crds.add_argument("--output", "-o", default="crds", help="folder to write into")
    crds.add_argument("--stdout", action="store_true", help="print them instead of writing files")
    crds.set_defaults(run=_crds)

    validate = commands.add_parser("validate", help="check Galley resources in YAML files")
    validate.add_argument("-f", "--filename", action="append", required=True, metavar="FILE_OR_DIR",
                          help="a YAML file or a folder of them (repeatable)")
    validate.add_argument("--flavors", metavar="FILE",
                          help="the cluster's flavor catalogue ('flavors: [...]', as the chart's values or its "
                               "ConfigMap's flavors.yaml) instead of the built-in one")
    validate.set_defaults(run=_validate)

    train = commands.add_parser("train", help="run a TrainingJob in the foreground on this machine")
    train.add_argument("-f", "--filename", required=True, help="a YAML file holding one TrainingJob")
    train.add_argument("-v", "--verbose", action="store_true", help="log debug messages too")
    train.set_defaults(run=_train)

    serve = commands.add_parser("serve", help="serve a model package over HTTP on this machine")
    from galley.predictor.__main__ import add_arguments

    add_arguments(serve)
    serve.set_defaults(run=_serve)

    operator = commands.add_parser("operator", help="run the Kubernetes operator (kopf)")
    from galley.operator.__main__ import add_arguments as operator_arguments
    from galley.operator.__main__ import run as run_operator

    operator_arguments(operator)
    operator.set_defaults(run=run_operator)

    rbac = commands.add_parser("rbac", help="print the operator's ClusterRole")
    rbac.set_defaults(run=_rbac)

    def local(name: str, help_: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_)
        sub.add_argument("--home", help="state folder of the embedded mode (default: $GALLEY_HOME or ./.galley)")
        return sub

    run = local("run", "apply TrainingJobs, Models and OnlineServices and run them on this machine")
    run.add_argument("-f", "--filename", action="append", required=True, metavar="FILE_OR_DIR",
                     help="a YAML file or a folder of them (repeatable)")
    run.add_argument("-v", "--verbose", action="store_true", help="log debug messages too")
    run.set_defaults(run=_run)

    demo = local("demo", "the whole story with real photos and weights: train, serve, classify, stop")
    demo.add_argument("--workdir", help="where data, resources and output go (default: <home>/demo)")
    demo.add_argument("--epochs", type=int, default=6, help="training epochs at 0.001")
    demo.add_argument("--auto-stop", default="2m", help="how long the service runs once ready")
    demo.add_argument("-v", "--verbose", action="store_true", help="log debug messages too")
    demo.set_defaults(run=_demo)

    get = local("get", "list resources (like kubectl get)")
    get.add_argument("kind", nargs="?", help="trainingjobs (tj), models, onlineservices (osvc)")
    get.add_argument("-o", "--output", choices=["table", "wide", "yaml", "json"], default="table",
                     help="wide adds the algorithm, flavor, model and runtime; yaml and json print whole objects, "
                          "status included, as kubectl does")
    get.set_defaults(run=_local("get"))
    _add_cluster_options(get)
    for action, help_ in (("describe", "show a resource with its conditions and events"),
                          ("logs", "print a training job's or a service's log"),
                          ("stop", "stop an OnlineService (keeps its configuration)"),
                          ("start", "start a stopped OnlineService again, with a fresh autoStop"),
                          ("delete", "stop what runs for a resource, then remove it (never its storage)")):
        sub = local(action, help_)
        sub.add_argument("name", help="NAME or KIND/NAME" if action in ("describe", "logs", "delete") else "NAME")
        sub.set_defaults(run=_local(action))
        if action != "logs":
            _add_cluster_options(sub)

    predict = local("predict", "classify images with a running service and print the scores")
    predict.add_argument("target", metavar="URL_OR_NAME", help="a predictor's URL, or an OnlineService's name")
    predict.add_argument("images", nargs="+", metavar="IMAGE", help="photos to classify")
    predict.add_argument("-o", "--output", choices=["table", "json"], default="table", help="output format")
    predict.set_defaults(run=_local("predict"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Command = args.run
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
