"""The ``galley`` command: one entry point for users on one machine and on a cluster.

Subcommands import their heavy dependencies (torch, kopf, kserve) only when they run, so
``galley validate`` answers in a fraction of a second.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

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

    if args.cluster and args.flavors:
        print("give --flavors FILE or --cluster, not both", file=sys.stderr)
        return 2
    try:
        catalogue = FlavorCatalogue.from_file(args.flavors) if args.flavors else None
    except (OSError, ValueError, yaml.YAMLError) as error:
        print(f"--flavors {args.flavors}: {error}", file=sys.stderr)
        return 1
    if args.cluster:
        found = _with_cluster(args, lambda cluster: cluster.flavor_catalogue())
        if found is None:
            return 1
        catalogue, where = found
        print(f"flavors: {where} ({', '.join(catalogue.names())})", file=sys.stderr)
    try:
        resources = load_resources(args.filename or [], catalogue,
                                   kustomizations=[args.kustomize] if args.kustomize else [])
    except InvalidManifests as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return 1
    for resource in resources:
        namespace = resource.metadata.namespace
        print(f"{resource.KIND}/{resource.name}: valid" + (f" (namespace {namespace})" if namespace else ""))
    return 0


def _algorithms(args: argparse.Namespace) -> int:
    """``galley algorithms``: the preset algorithms and their hyperparameters, from the tables that check them."""
    from galley import catalogue

    found = catalogue.algorithms()
    if args.name:
        found = [a for a in found if a.name == args.name]
        if not found:
            known = ", ".join(a.name for a in catalogue.algorithms())
            print(f"no algorithm {args.name!r}; known: {known}", file=sys.stderr)
            return 1
    if args.output == "json":
        print(json.dumps(catalogue.to_json(found), ensure_ascii=False, indent=2))
    else:
        print(catalogue.text(found))
    return 0


def _train(args: argparse.Namespace) -> int:
    from galley.trainer.__main__ import main as trainer_main

    return trainer_main(["-f", args.filename] + (["-v"] if args.verbose else []))


def _serve(args: argparse.Namespace) -> int:
    from galley import logs
    from galley.predictor.__main__ import run

    logs.configure()
    return run(args)


def _dataset_inspect(args: argparse.Namespace) -> int:
    """``galley dataset inspect``: the data set as a training job would see it, read from here.

    Storage is read with this machine's settings (``AWS_*``), or with ``--secret NAME``: the values
    ``storage.secretRef: NAME`` gives in the embedded mode (``<home>/secrets/NAME.env``). A cluster's
    Secrets are never read, as ``galley console --cluster`` reads none."""
    import logging

    from galley import logs, storage
    from galley.cluster import storage_unreadable_here
    from galley.local.secrets import read_env_file, secret_path
    from galley.trainer import data, inspection

    logs.configure(args.verbose)
    if not args.verbose:  # the report says what the trainer's steps found; their log lines are for -v
        logging.getLogger("galley.trainer").setLevel(logging.ERROR)
    values = None
    if args.secret:
        path = secret_path(_store(args).home, args.secret)
        if not path.is_file():
            print(f"--secret {args.secret}: {path} does not exist (KEY=VALUE lines, as kubectl create secret "
                  "generic --from-env-file takes)", file=sys.stderr)
            return 2
        values = read_env_file(path)
    else:
        reason = storage_unreadable_here(args.uri)
        if reason is not None:
            print(f"{reason}; or give --secret NAME", file=sys.stderr)
            return 2
    hyperparameters = dict(item.partition("=")[::2] for item in args.hyperparameter)
    try:
        with storage.using_credentials(values):
            report = inspection.inspect(args.uri, args.format, algorithm=args.algorithm, weights=args.weights,
                                        split=args.split, hyperparameters=hyperparameters)
    except inspection.InspectError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (storage.StorageError, data.DatasetError) as error:
        print(f"cannot read the data set: {error}", file=sys.stderr)
        return 1
    if args.output == "json":
        print(json.dumps(report.to_json(), ensure_ascii=False, indent=2))
    else:
        print(inspection.text(report))
    return 1 if report.stops else 0


def _store(args: argparse.Namespace) -> Any:
    """The embedded backend: the local store with the calls ``--cluster`` makes on a cluster."""
    from galley.local.backend import EmbeddedBackend

    return EmbeddedBackend(Path(args.home) if args.home else None)


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
        return demo_main(workdir, epochs=args.epochs, auto_stop=args.auto_stop, store=store,
                         data_only=args.data_only)

    return _embedded(run, args.verbose)


def _shared_action(backend: Any, action: str, args: argparse.Namespace) -> bool:
    """``get|describe|logs|stop|start``, the same calls on either backend; False for other actions."""
    from galley import commands

    if action == "get":
        print(commands.get(backend, args.kind, wide=args.output == "wide") if args.output in ("table", "wide")
              else commands.get_list(backend, args.kind, args.output))
    elif action == "describe":
        print(commands.describe(backend, args.name))
    elif action == "logs":
        print(backend.logs(args.name, args.tail), end="")
    elif action in ("stop", "start"):
        print(backend.stop(args.name) if action == "stop" else backend.start(args.name))
    else:
        return False
    return True


def _local(action: str) -> Command:
    def command(args: argparse.Namespace) -> int:
        from galley import commands

        try:
            if getattr(args, "cluster", False):
                return _on_cluster(action, args)
            store = _store(args)
            if _shared_action(store, action, args):
                return 0
            if action == "delete":
                if args.purge_output and not _confirm_purge(args):
                    return 1
                print(commands.delete(store, args.name, purge_output=args.purge_output))
            elif action == "open":
                _open_in_browser(commands.test_page_url(store, args.name), args.no_browser)
            elif action == "predict":
                images = [Path(p) for p in args.images]
                _print_answers(images, commands.predict(store, args.target, images), args.output)
        except BrokenPipeError:
            raise  # the reader went away (`| head`): main() ends quietly
        except (commands.NotFound, RuntimeError, OSError) as error:
            return commands.fail(str(error))
        return 0

    return command


T = TypeVar("T")


def _with_cluster(args: argparse.Namespace, act: Callable[[Any], T]) -> T | None:
    """Run ``act`` with the kubeconfig's cluster; None after printing why it could not."""
    from kubernetes.client.rest import ApiException
    from kubernetes.config import ConfigException

    from galley import commands
    from galley.cluster import ClusterStore

    try:
        return act(ClusterStore(args.namespace, args.context))
    except ConfigException as error:
        commands.fail(f"no cluster to talk to: {error}")
    except ApiException as error:
        try:
            detail = json.loads(error.body or "{}").get("message") or error.reason
        except ValueError:
            detail = error.reason
        commands.fail(f"the API server said {error.status}: {detail}")
    except BrokenPipeError:
        raise
    except (LookupError, RuntimeError, OSError) as error:
        commands.fail(str(error))
    return None


def _on_cluster(action: str, args: argparse.Namespace) -> int:
    """``get|describe|logs|stop|start|delete|predict|open --cluster``: the same commands against the
    kubeconfig's cluster."""
    from galley import commands

    def act(cluster: Any) -> int:
        if _shared_action(cluster, action, args):
            return 0
        if action == "delete":
            if args.purge_output:
                raise LookupError("--purge-output is for the embedded mode only; on a cluster, delete storage "
                                  "with your object store's own tools")
            print(cluster.delete(args.name))
        elif action == "predict":
            images = [Path(p) for p in args.images]
            body, content_type = commands.multipart(images)
            answer = json.loads(cluster.predict(args.target, body, content_type))
            _print_answers(images, answer if isinstance(answer, list) else [answer], args.output)
        elif action == "open":
            url = commands.test_page_url(cluster, args.name)
            if ".svc." in url:
                name = args.name.split("/")[-1]
                print(f"{url}\nThat address works inside the cluster only. From here, run\n"
                      f"  galley port-forward osvc/{name}{' -n ' + args.namespace if args.namespace else ''}\n"
                      "and open the address it prints; or expose the service with spec.expose.ingress.")
            else:
                _open_in_browser(url, args.no_browser)
        return 0

    done = _with_cluster(args, act)
    return 1 if done is None else done


def _print_answers(images: list[Path], answers: list[dict[str, Any]], output: str) -> None:
    from galley import commands

    if output == "json":
        print(json.dumps(answers[0] if len(answers) == 1 else answers, ensure_ascii=False, indent=2))
    else:
        print(commands.score_table(images, answers))


def _open_in_browser(url: str, no_browser: bool) -> None:
    """Print the test page's address; open it where a browser is there (``$BROWSER`` is honoured)."""
    import webbrowser

    print(url)
    if no_browser:
        return
    try:
        webbrowser.get().open(url)
    except webbrowser.Error:
        print("(no browser found here: open the address above in one)", file=sys.stderr)


def _confirm_purge(args: argparse.Namespace) -> bool:
    """``--purge-output`` deletes a job's output for good: ``--yes``, or the job's name typed back."""
    from galley import commands

    resource = commands.lookup(_store(args), args.name)
    locations = commands.output_locations(resource)
    if args.yes:
        return True
    print(f"This deletes every file under {' and '.join(locations)}, model packages included.\n"
          f"Type the job's name ({resource.name}) to confirm: ", end="", file=sys.stderr, flush=True)
    if sys.stdin.readline().strip() == resource.name:
        return True
    print("not confirmed: nothing was deleted", file=sys.stderr)
    return False


def _port_forward(args: argparse.Namespace) -> int:
    """``kubectl port-forward`` to the service's predictor Service (raw runtime and KServe name it alike)."""
    import shutil
    import subprocess

    from galley import commands
    from galley.api.resources import OnlineService

    name = args.target.split("/", 1)[1] if "/" in args.target else args.target
    if "/" in args.target and commands.KIND_ALIASES.get(args.target.split("/", 1)[0].lower()) is not OnlineService:
        return commands.fail(f"{args.target}: port-forward reaches an OnlineService (osvc/NAME)")
    found = _with_cluster(args, lambda cluster: (cluster.get(OnlineService, name), cluster.namespace))
    if found is None:
        return 1
    service, namespace = found
    if service is None:
        return commands.fail(f"OnlineService {name!r} not found in namespace {namespace!r}")
    kubectl = os.environ.get("KUBECTL") or shutil.which("kubectl")
    if kubectl is None:
        return commands.fail("kubectl is not on PATH (set $KUBECTL to its path); port-forward runs it")
    command = [kubectl, "port-forward", "-n", namespace, "--address", args.address,
               f"service/{name}-predictor", f"{args.port}:80"]
    if args.context:
        command[1:1] = ["--context", args.context]
    print(f"OnlineService {name}: test page at http://{args.address}:{args.port}/ (Ctrl-C stops forwarding)",
          flush=True)
    try:
        return subprocess.call(command)
    except KeyboardInterrupt:
        return 0


def _console(args: argparse.Namespace) -> int:
    from galley import logs
    from galley.api.flavors import FLAVORS_FILE_ENV, default_catalogue
    from galley.console.server import cluster_catalogue, demo_defaults, serve

    logs.configure()
    if args.cluster:
        def on_cluster(cluster: Any) -> int:
            catalogue = default_catalogue() if os.environ.get(FLAVORS_FILE_ENV) else cluster_catalogue(cluster)
            serve(cluster, catalogue, host=args.host, port=args.port, token=args.token,
                  where=cluster.home, allowed_hosts=tuple(args.allowed_host))
            return 0

        done = _with_cluster(args, on_cluster)
        return 1 if done is None else done
    store = _store(args)
    serve(store, default_catalogue(), host=args.host, port=args.port, token=args.token,
          where=f"this machine ({store.home})", form_defaults=demo_defaults(store.home),
          allowed_hosts=tuple(args.allowed_host))
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

    validate = commands.add_parser("validate", help="check Galley resources in YAML files, standard input or a "
                                                    "kustomization")
    sources = validate.add_mutually_exclusive_group(required=True)
    sources.add_argument("-f", "--filename", action="append", metavar="FILE_OR_DIR",
                         help="a YAML file, a folder of them, or - for standard input (repeatable); a folder that "
                              "holds a kustomization.yaml is built as kubectl apply -k builds it")
    sources.add_argument("-k", "--kustomize", metavar="DIR",
                         help="build the kustomization in DIR (with kubectl's kustomize where kubectl is here, "
                              "else Galley's own reader) and check the result")
    validate.add_argument("--flavors", metavar="FILE",
                          help="the cluster's flavor catalogue ('flavors: [...]', as the chart's values or its "
                               "ConfigMap's flavors.yaml) instead of the built-in one")
    validate.add_argument("--cluster", action="store_true",
                          help="read the flavor catalogue the chart installed on the kubeconfig's cluster")
    validate.add_argument("-n", "--namespace", help="with --cluster: where Galley is installed (default: search "
                                                    "every namespace)")
    validate.add_argument("--context", help="with --cluster: the kubeconfig context (default: the current one)")
    validate.set_defaults(run=_validate)

    algorithms = commands.add_parser("algorithms", help="the preset algorithms: network, input size, ImageNet "
                                                        "weights here, and every hyperparameter")
    algorithms.add_argument("name", nargs="?", metavar="NAME", help="only this algorithm (default: all)")
    algorithms.add_argument("-o", "--output", choices=["text", "json"], default="text", help="output format")
    algorithms.set_defaults(run=_algorithms)

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
    demo.add_argument("--data-only", action="store_true",
                      help="only build the photo set into <workdir>/data (examples/01-embedded trains on it)")
    demo.add_argument("-v", "--verbose", action="store_true", help="log debug messages too")
    demo.set_defaults(run=_demo)

    dataset = commands.add_parser("dataset", help="look at a data set before training on it")
    dataset_commands = dataset.add_subparsers(dest="dataset_command", required=True, metavar="COMMAND")
    inspect = dataset_commands.add_parser(
        "inspect", help="classes, counts, unreadable files, refused manifest lines, near-duplicates and the "
                        "train/eval split, as a training job would find them (exit status 1: a job would stop)")
    inspect.add_argument("uri", metavar="URI", help="a folder per class, or a .manifest (local path or s3://)")
    inspect.add_argument("-o", "--output", choices=["text", "json"], default="text", help="output format")
    inspect.add_argument("--format", choices=["auto", "folders", "manifest"], default="auto",
                         help="as spec.dataset.format: auto reads a .manifest as one")
    inspect.add_argument("--algorithm", default="mobilenet_v2", choices=["resnet50", "resnet18", "mobilenet_v2"],
                         help="the network whose ImageNet features find near-duplicates")
    inspect.add_argument("--weights", metavar="URI", help="as spec.algorithm.weights (default: torch's cache, or the "
                                                          "MobileNetV2 file Galley's install brings)")
    inspect.add_argument("--split", help="as spec.dataset.split (default: train:0.8,eval:0.2)")
    inspect.add_argument("-p", "--hyperparameter", action="append", default=[], metavar="NAME=VALUE",
                         help="as spec.hyperparameters, e.g. seed=1, image_size=160, near_duplicate_threshold=0.5 "
                              "(repeatable)")
    inspect.add_argument("--secret", metavar="NAME",
                         help="read storage with <home>/secrets/NAME.env, as storage.secretRef in the embedded mode "
                              "(default: AWS_* from the environment)")
    inspect.add_argument("--home", help="state folder of the embedded mode (default: $GALLEY_HOME or ./.galley)")
    inspect.add_argument("-v", "--verbose", action="store_true", help="log what the trainer's steps say")
    inspect.set_defaults(run=_dataset_inspect)

    get = local("get", "list resources (like kubectl get)")
    get.add_argument("kind", nargs="?", help="trainingjobs (tj), models, onlineservices (osvc)")
    get.add_argument("-o", "--output", choices=["table", "wide", "yaml", "json"], default="table",
                     help="wide adds the algorithm, flavor, model and runtime; yaml and json print whole objects, "
                          "status included, as kubectl does")
    get.set_defaults(run=_local("get"))
    _add_cluster_options(get)
    subs = {}
    for action, help_ in (("describe", "show a resource with its conditions and events"),
                          ("logs", "print a training job's or a service's log (on a cluster: its pod's)"),
                          ("stop", "stop an OnlineService (keeps its configuration)"),
                          ("start", "start a stopped OnlineService again, with a fresh autoStop"),
                          ("delete", "stop what runs for a resource, then remove it (storage only if asked)"),
                          ("open", "print an OnlineService's test page address and open it in a browser")):
        sub = subs[action] = local(action, help_)
        sub.add_argument("name", help="NAME or KIND/NAME" if action in ("describe", "logs", "delete", "open")
                         else "NAME")
        sub.set_defaults(run=_local(action))
        _add_cluster_options(sub)
    subs["logs"].add_argument("--tail", type=int, metavar="N", help="only the last N lines (default: all)")
    subs["delete"].add_argument("--purge-output", action="store_true",
                                help="embedded mode: also delete a TrainingJob's output and logs, model packages "
                                     "included (asks you to type the job's name)")
    subs["delete"].add_argument("--yes", action="store_true", help="with --purge-output: do not ask")
    subs["open"].add_argument("--no-browser", action="store_true", help="only print the address")

    predict = local("predict", "classify images with a running service and print the scores")
    predict.add_argument("target", metavar="URL_OR_NAME", help="a predictor's URL, or an OnlineService's name")
    predict.add_argument("images", nargs="+", metavar="IMAGE", help="photos to classify")
    predict.add_argument("-o", "--output", choices=["table", "json"], default="table", help="output format")
    predict.set_defaults(run=_local("predict"))
    _add_cluster_options(predict)

    console = local("console", "a web console for the whole lifecycle: jobs, curves, models, services, create")
    console.add_argument("--host", default="127.0.0.1",
                         help="address to listen on; beyond loopback, every request needs a token")
    console.add_argument("--port", type=int, default=8765, help="port to listen on")
    console.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                         help="a name clients reach the console by, beyond loopback names, IP literals and --host "
                              "(repeatable); any other Host header is refused")
    console.add_argument("--token", help="the token every request needs (default: $GALLEY_CONSOLE_TOKEN; a new one is "
                                         "made when --host is not loopback)")
    console.set_defaults(run=_console)
    _add_cluster_options(console)

    forward = commands.add_parser("port-forward", help="reach an OnlineService on a cluster from this machine "
                                                       "(runs kubectl port-forward)")
    forward.add_argument("target", metavar="osvc/NAME", help="the OnlineService (NAME or osvc/NAME)")
    forward.add_argument("--port", type=int, default=8080, help="local port")
    forward.add_argument("--address", default="127.0.0.1", help="local address to listen on")
    forward.add_argument("-n", "--namespace", help="the namespace (default: the context's)")
    forward.add_argument("--context", help="the kubeconfig context (default: the current one)")
    forward.set_defaults(run=_port_forward)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Command = args.run
    try:
        return run(args)
    except BrokenPipeError:  # `galley predict ... | head`: stop writing, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
