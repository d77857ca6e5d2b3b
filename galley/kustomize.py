"""Building a kustomization as ``kubectl apply -k`` does, so Galley checks what kubectl would apply.

A folder that holds a ``kustomization.yaml`` is not a pile of manifests: its patch files are
fragments, its bases live elsewhere, and what reaches the API server is the build. Galley
therefore builds it, in one of two ways:

- with kubectl's own kustomize (``kubectl kustomize DIR``) when a kubectl binary is here:
  ``$KUBECTL``, else ``kubectl`` on ``PATH``. That is exactly what ``kubectl apply -k`` applies.
- without kubectl, with the reader below. It reads the part of kustomize that a repository of
  Galley resources uses (:data:`SUPPORTED`) and refuses any other field by name, so a build it
  cannot reproduce is never validated as if it were something else.

The reader follows kustomize where Galley's resources are concerned: resources and bases
(files and folders, no remote URLs), strategic-merge patches (for custom resources kustomize
merges mappings and replaces lists whole, and so does this), JSON 6902 patches, targets
matched by group, version, kind, name and namespace as anchored regular expressions, then
namespace, namePrefix/nameSuffix, labels and annotations. It changes only ``metadata`` of other
kinds (kustomize also rewrites a Deployment's selector or a RoleBinding's subjects): Galley
reads only its own kinds from a build.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
"""The names kustomize looks for in a folder, in its order."""

SUPPORTED = ("apiVersion", "kind", "resources", "bases", "namespace", "namePrefix", "nameSuffix", "commonLabels",
             "labels", "commonAnnotations", "patches", "patchesStrategicMerge", "patchesJson6902")
"""The kustomization fields Galley's own reader builds; any other is refused by name."""

KUBECTL_TIMEOUT = 60.0
"""Seconds a ``kubectl kustomize`` may take (it reads local files only)."""

_CLUSTER_SCOPED = frozenset({
    "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PersistentVolume",
    "StorageClass", "PriorityClass", "IngressClass", "RuntimeClass", "APIService", "Node",
    "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration",
})
"""Kinds kustomize's namespace transformer leaves without a namespace."""

_TARGET_FIELDS = ("group", "version", "kind", "name", "namespace")


@dataclass(frozen=True)
class BuildProblem:
    """Why a kustomization could not be built: the file at fault and the field or document in it."""

    file: str
    field: str
    message: str
    resource: str = "-"
    """The resource a patch failed on, as KIND/NAME."""


class BuildFailed(Exception):
    """Raised with every problem found, so a user fixes them in one go."""

    def __init__(self, problems: list[BuildProblem]):
        super().__init__("\n".join(f"{p.file}: {p.field}: {p.message}" for p in problems))
        self.problems = problems


@dataclass
class Built:
    """One document of a build, and the files it was made from (Galley's reader only)."""

    document: Any
    origin: str = ""
    """The resource file it came from, with its document number where the file holds several."""
    patches: list[str] = field(default_factory=list)
    """The patch files applied to it, in order."""
    original_name: str = ""
    original_namespace: str = ""


@dataclass
class Build:
    """A kustomization's output: what ``kubectl kustomize`` prints, as documents."""

    kustomization: Path
    """The kustomization file that was built."""
    documents: list[Built]
    builder: str
    """``kubectl`` with its path, or ``galley`` for Galley's own reader."""


def find(directory: Path) -> Path | None:
    """The kustomization file in ``directory``, or None."""
    for name in FILES:
        candidate = directory / name
        if candidate.is_file():
            return candidate
    return None


def kubectl() -> str | None:
    """The kubectl to build with: ``$KUBECTL``, else ``kubectl`` on ``PATH``; None when there is none."""
    return os.environ.get("KUBECTL") or shutil.which("kubectl")


def build(directory: Path) -> Build:
    """Build the kustomization in ``directory`` with kubectl where there is one, else with Galley's reader."""
    file = find(directory)
    if file is None:
        raise BuildFailed([BuildProblem(str(directory), "(kustomization)",
                                        f"no {', '.join(FILES[:-1])} or {FILES[-1]} in this folder")])
    binary = kubectl()
    if binary is not None:
        return build_with_kubectl(binary, directory, file)
    return Build(file, _Reader().build(directory), "galley")


def build_with_kubectl(binary: str, directory: Path, file: Path) -> Build:
    """``kubectl kustomize DIR``: kustomize's own build, its error said plainly when it fails."""
    if not (Path(binary).is_file() and os.access(binary, os.X_OK)) and shutil.which(binary) is None:
        raise BuildFailed([BuildProblem(str(file), "(kustomization)",
                                        f"KUBECTL={binary} is not an executable file; set KUBECTL to kubectl's path, "
                                        "or unset it to use kubectl on PATH or Galley's own reader")])
    try:
        result = subprocess.run([binary, "kustomize", str(directory)], capture_output=True, text=True,
                                timeout=KUBECTL_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise BuildFailed([BuildProblem(str(file), "(kustomization)", f"{binary} kustomize: {error}")]) from None
    if result.returncode != 0:
        raise BuildFailed([BuildProblem(str(file), "(kustomization)",
                                        f"kubectl kustomize: {_kubectl_error(result.stderr)}")])
    try:
        documents = [Built(d) for d in yaml.safe_load_all(result.stdout) if d is not None]
    except yaml.YAMLError as error:
        raise BuildFailed([BuildProblem(str(file), "(kustomization)",
                                        f"kubectl kustomize printed what is not YAML: {' '.join(str(error).split())}")]
                          ) from None
    return Build(file, documents, f"kubectl ({binary})")


def _kubectl_error(stderr: str) -> str:
    """kubectl's error on one line, without its deprecation warnings and klog's prefix."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip() and not line.startswith("# Warning")]
    text = " ".join(lines) or "failed with no message"
    logged = re.fullmatch(r'[EWIF]\d{4} \S+\s+\d+ \S+\] "command failed" err=(?:"(.*)"|<(.*)>)', text)
    if logged:
        text = (logged.group(1) or logged.group(2) or "").replace('\\"', '"').strip()
    return text.removeprefix("error: ").removeprefix("Error: ")


# -- Galley's own reader ----------------------------------------------------------------------


class _Reader:
    """Galley's reader of :data:`SUPPORTED`; collects every problem before it gives up."""

    def __init__(self) -> None:
        self.problems: list[BuildProblem] = []

    def problem(self, file: Path | str, where: str, message: str) -> None:
        self.problems.append(BuildProblem(str(file), where, message))

    def build(self, directory: Path) -> list[Built]:
        built = self._build(directory, ())
        if self.problems:
            raise BuildFailed(self.problems)
        return built

    def _build(self, directory: Path, seen: tuple[Path, ...]) -> list[Built]:
        file = find(directory)
        if file is None:
            self.problem(directory, "(kustomization)", f"no {', '.join(FILES[:-1])} or {FILES[-1]} in this folder")
            return []
        file = _join(file.parent, file.name)
        if directory.resolve() in seen:
            self.problem(file, "(kustomization)", "includes itself through its resources or bases")
            return []
        try:
            with file.open(encoding="utf-8") as stream:
                data = yaml.safe_load(stream) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            self.problem(file, "(yaml)", " ".join(str(error).split()))
            return []
        if not isinstance(data, dict):
            self.problem(file, "(kustomization)", "expected a mapping of kustomization fields")
            return []
        before = len(self.problems)
        for name in data:
            if name not in SUPPORTED:
                self.problem(file, str(name), "is not supported by Galley's own kustomization reader (it reads "
                             f"{', '.join(SUPPORTED[2:])}); install kubectl, or set $KUBECTL, to build it with "
                             "kustomize")
        if data.get("kind", "Kustomization") != "Kustomization":
            self.problem(file, "kind", f"{data['kind']!r}: Galley's own reader builds a Kustomization only")
        if len(self.problems) > before:
            return []
        resources: list[Built] = []
        for key in ("resources", "bases"):
            for index, entry in enumerate(self._strings(file, data, key)):
                resources += self._resource(directory, file, f"{key}[{index}]", entry, (*seen, directory.resolve()))
        self._no_duplicates(file, resources)
        self._strategic_merge(directory, file, data, resources)
        self._patches(directory, file, data, resources, json6902=False)
        self._metadata(file, data, resources)
        self._patches(directory, file, data, resources, json6902=True)
        return resources

    def _no_duplicates(self, file: Path, resources: list[Built]) -> None:
        """kustomize refuses two resources with one id (apiVersion's group, kind, namespace and name)."""
        seen: dict[tuple[str, ...], str] = {}
        for built in resources:
            metadata = built.document.get("metadata") or {}
            group = str(built.document.get("apiVersion", "")).rpartition("/")[0]
            key = (group, str(built.document.get("kind")), str(metadata.get("namespace", "")), str(metadata["name"]))
            if key in seen:
                self.problem(file, "resources", f"{key[1]}/{key[3]} comes twice: from {seen[key]} and {built.origin}")
            seen.setdefault(key, built.origin)

    def _strings(self, file: Path, data: dict[str, Any], key: str) -> list[str]:
        value = data.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problem(file, key, "expected a list of paths")
            return []
        return value

    def _inside(self, directory: Path, path: Path) -> bool:
        """kustomize's default load restriction: files (not folders) in or below the kustomization's folder."""
        return path.resolve().is_relative_to(directory.resolve())

    def _resource(self, directory: Path, file: Path, where: str, entry: str, seen: tuple[Path, ...]) -> list[Built]:
        if Path(entry).is_absolute():
            self.problem(file, where, f"{entry!r}: kustomize takes paths relative to the kustomization's folder, "
                                      "never absolute ones")
            return []
        if "://" in entry or entry.startswith(("git@", "github.com/")):
            self.problem(file, where, f"{entry!r}: Galley's own reader builds local files and folders only; install "
                                      "kubectl, or set $KUBECTL, to build remote resources with kustomize")
            return []
        path = _join(directory, entry)
        if path.is_dir():
            return self._build(path, seen)
        if not path.is_file():
            self.problem(file, where, f"{entry!r}: no such file or folder")
            return []
        if not self._inside(directory, path):
            self.problem(file, where, f"{entry!r} is not in or below {directory}: kustomize refuses files outside the "
                                      "kustomization's folder (a folder of its own, with a kustomization, may be)")
            return []
        built = []
        for index, document in self._documents(path):
            label = f"{path}" if index is None else f"{path} document {index + 1}"
            metadata = document.get("metadata") if isinstance(document, dict) else None
            if not isinstance(document, dict) or not document.get("kind") or not isinstance(metadata, dict) or \
                    not metadata.get("name"):
                self.problem(path, f"document {(index or 0) + 1}",
                             "expected a resource: a mapping with apiVersion, kind and metadata.name")
                continue
            built.append(Built(document, label, [], str(metadata.get("name", "")), str(metadata.get("namespace", ""))))
        return built

    def _documents(self, path: Path) -> list[tuple[int | None, Any]]:
        """The file's documents, numbered only when there are several."""
        try:
            with path.open(encoding="utf-8") as stream:
                documents = [d for d in yaml.safe_load_all(stream) if d is not None]
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            self.problem(path, "(yaml)", " ".join(str(error).split()))
            return []
        if len(documents) == 1:
            return [(None, documents[0])]
        return list(enumerate(documents))

    def _patch_text(self, directory: Path, file: Path, where: str, path: str | None,
                    inline: str | None) -> tuple[str, list[Any]] | None:
        """``(name, documents)`` of a patch given by file or inline; None after a problem."""
        if (path is None) == (inline is None):
            self.problem(file, where, "set exactly one of path and patch")
            return None
        if inline is not None:
            try:
                return f"{file} {where}", [d for d in yaml.safe_load_all(inline) if d is not None]
            except yaml.YAMLError as error:
                self.problem(file, f"{where}.patch", " ".join(str(error).split()))
                return None
        assert path is not None
        patch_file = _join(directory, path)
        if not patch_file.is_file():
            self.problem(file, f"{where}.path", f"{path!r}: no such file")
            return None
        if not self._inside(directory, patch_file):
            self.problem(file, f"{where}.path", f"{path!r} is not in or below {directory}: kustomize refuses it")
            return None
        try:
            with patch_file.open(encoding="utf-8") as stream:
                documents = [d for d in yaml.safe_load_all(stream) if d is not None]
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            self.problem(patch_file, "(yaml)", " ".join(str(error).split()))
            return None
        return str(patch_file), documents

    def _strategic_merge(self, directory: Path, file: Path, data: dict[str, Any], resources: list[Built]) -> None:
        for index, entry in enumerate(self._strings(file, data, "patchesStrategicMerge")):
            where = f"patchesStrategicMerge[{index}]"
            is_file = "\n" not in entry and ":" not in entry  # a path; kustomize also takes a patch inline
            found = self._patch_text(directory, file, where, entry if is_file else None, None if is_file else entry)
            if found is None:
                continue
            name, documents = found
            for number, document in enumerate(documents):
                self._merge_into(name, f"document {number + 1}", document, None, resources)

    def _patches(self, directory: Path, file: Path, data: dict[str, Any], resources: list[Built], *,
                 json6902: bool) -> None:
        key = "patchesJson6902" if json6902 else "patches"
        entries = data.get(key) or []
        if not isinstance(entries, list):
            self.problem(file, key, "expected a list of patches")
            return
        for index, entry in enumerate(entries):
            where = f"{key}[{index}]"
            if not isinstance(entry, dict):
                self.problem(file, where, "expected a mapping with path or patch, and target")
                continue
            unknown = sorted(set(entry) - {"path", "patch", "target"})
            if unknown:
                self.problem(file, f"{where}.{unknown[0]}", "is not supported by Galley's own kustomization reader; "
                                                           "install kubectl, or set $KUBECTL, to build it")
                continue
            ok, target = self._target(file, f"{where}.target", entry.get("target"), required=json6902)
            if not ok:
                continue
            found = self._patch_text(directory, file, where, entry.get("path"), entry.get("patch"))
            if found is None:
                continue
            name, documents = found
            if json6902 or (len(documents) == 1 and isinstance(documents[0], list)):
                if target is None:
                    self.problem(file, f"{where}.target", "a JSON 6902 patch needs a target")
                elif len(documents) != 1 or not isinstance(documents[0], list):
                    self.problem(name, "document 1", "expected a list of JSON 6902 operations (op, path, value)")
                else:
                    for built in self._matching(target, resources):
                        self._json6902(name, documents[0], built)
            else:
                for number, document in enumerate(documents):
                    self._merge_into(name, f"document {number + 1}", document, target, resources)

    def _target(self, file: Path, where: str, value: Any, *,
                required: bool) -> tuple[bool, dict[str, str] | None]:
        """``(ok, target)``: a patch's target as patterns (None when absent and allowed); not ok after a problem."""
        if value is None:
            if required:
                self.problem(file, where, "is required")
            return not required, None
        if not isinstance(value, dict):
            self.problem(file, where, f"expected a mapping of {', '.join(_TARGET_FIELDS)}")
            return False, None
        unknown = sorted(set(value) - set(_TARGET_FIELDS))
        if unknown:
            self.problem(file, f"{where}.{unknown[0]}", "is not supported by Galley's own kustomization reader (it "
                         f"matches {', '.join(_TARGET_FIELDS)}); install kubectl, or set $KUBECTL, to build it")
            return False, None
        return True, {k: str(v) for k, v in value.items() if v is not None}

    def _matching(self, target: dict[str, str], resources: list[Built]) -> Iterator[Built]:
        for built in resources:
            document = built.document
            group, _, version = str(document.get("apiVersion", "")).rpartition("/")
            metadata = document.get("metadata") or {}
            current = {"group": group, "version": version, "kind": str(document.get("kind", "")),
                       "name": str(metadata.get("name", "")), "namespace": str(metadata.get("namespace", ""))}
            original = {**current, "name": built.original_name, "namespace": built.original_namespace}
            if any(all(re.fullmatch(pattern, ids[key]) for key, pattern in target.items())
                   for ids in (current, original)):
                yield built

    def _merge_into(self, name: str, where: str, patch: Any, target: dict[str, str] | None,
                    resources: list[Built]) -> None:
        if not isinstance(patch, dict):
            self.problem(name, where, "expected a strategic-merge patch: a mapping with apiVersion, kind and "
                                      "metadata.name (or a list of JSON 6902 operations under patches)")
            return
        metadata = patch.get("metadata") or {}
        if not patch.get("kind") or not isinstance(metadata, dict) or not metadata.get("name"):
            self.problem(name, where, "a strategic-merge patch names a resource, as kustomize needs: kind and "
                                      "metadata.name (with a target, any kind and name do)")
            return
        if target is None:
            group, _, version = str(patch.get("apiVersion", "")).rpartition("/")
            target = {"group": re.escape(group), "version": re.escape(version), "kind": re.escape(str(patch["kind"])),
                      "name": re.escape(str(metadata["name"]))}
            if metadata.get("namespace"):
                target["namespace"] = re.escape(str(metadata["namespace"]))
            matches = list(self._matching(target, resources))
            if len(matches) != 1:
                self.problem(name, where, f"{patch['kind']}/{metadata['name']}: matches "
                                          f"{'no' if not matches else len(matches)} resources of the build; kustomize "
                                          "needs exactly one")
                return
        else:
            matches = list(self._matching(target, resources))
        for built in matches:
            body = copy.deepcopy(patch)
            # The patch's kind and name choose what it hits (or, with a target, only satisfy kustomize's parser).
            for key in ("apiVersion", "kind"):
                body.pop(key, None)
            body["metadata"].pop("name", None)
            body["metadata"].pop("namespace", None)
            merged = _merge(built.document, body)
            if not isinstance(merged, dict):
                self.problem(name, where, "the patch deletes the whole resource ($patch: delete): not supported")
                continue
            built.document = merged
            built.patches.append(name)

    def _json6902(self, name: str, operations: list[Any], built: Built) -> None:
        document = copy.deepcopy(built.document)
        for index, operation in enumerate(operations):
            where = f"operation {index + 1}"
            try:
                document = _apply_operation(document, operation)
            except ValueError as error:
                metadata = built.document.get("metadata") or {}
                self.problems.append(BuildProblem(name, where, str(error),
                                                  f"{built.document.get('kind')}/{metadata.get('name')}"))
                return
        built.document = document
        built.patches.append(name)

    def _metadata(self, file: Path, data: dict[str, Any], resources: list[Built]) -> None:
        """namespace, namePrefix/nameSuffix, labels and annotations, in kustomize's order."""
        for key in ("namespace", "namePrefix", "nameSuffix"):
            if key in data and not isinstance(data[key], str):
                self.problem(file, key, "expected a string")
                return
        labels = self._pairs(file, data, "commonLabels")
        annotations = self._pairs(file, data, "commonAnnotations")
        for index, entry in enumerate(data.get("labels") or []):
            if not isinstance(entry, dict) or not isinstance(entry.get("pairs", {}), dict) or \
                    set(entry) - {"pairs", "includeSelectors", "includeTemplates", "fields"}:
                self.problem(file, f"labels[{index}]", "expected a mapping with pairs (includeSelectors and "
                                                       "includeTemplates touch only built-in kinds)")
                return
            if "fields" in entry:
                self.problem(file, f"labels[{index}].fields", "is not supported by Galley's own kustomization "
                                                              "reader; install kubectl, or set $KUBECTL, to build it")
                return
            labels.update({str(k): str(v) for k, v in (entry.get("pairs") or {}).items()})
        for built in resources:
            metadata = built.document.setdefault("metadata", {})
            if data.get("namespace") and built.document.get("kind") not in _CLUSTER_SCOPED:
                metadata["namespace"] = data["namespace"]
            metadata["name"] = f"{data.get('namePrefix', '')}{metadata['name']}{data.get('nameSuffix', '')}"
            if labels:
                metadata["labels"] = {**(metadata.get("labels") or {}), **labels}
            if annotations:
                metadata["annotations"] = {**(metadata.get("annotations") or {}), **annotations}

    def _pairs(self, file: Path, data: dict[str, Any], key: str) -> dict[str, str]:
        value = data.get(key) or {}
        if not isinstance(value, dict):
            self.problem(file, key, "expected a mapping of names to values")
            return {}
        return {str(k): str(v) for k, v in value.items()}


def _join(directory: Path, entry: str) -> Path:
    """``directory/entry`` with ``..`` taken out lexically, as kustomize joins paths."""
    return Path(os.path.normpath(directory / entry))


def _merge(base: Any, patch: Any) -> Any:
    """A strategic-merge patch as kustomize applies it to a custom resource: mappings merge key by key,
    ``null`` deletes a key, lists and scalars are replaced; ``$patch: replace|delete`` on a mapping."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    body = {k: v for k, v in patch.items() if k != "$patch"}
    if directive == "replace" or not isinstance(base, dict):
        return _merge({}, body)
    merged = dict(base)
    for key, value in body.items():
        if value is None:
            merged.pop(key, None)
            continue
        result = _merge(merged.get(key), value)
        if result is None:
            merged.pop(key, None)
        else:
            merged[key] = result
    return merged


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise ValueError(f"path {path!r}: expected a JSON pointer such as /spec/replicas")
    return [part.replace("~1", "/").replace("~0", "~") for part in path.split("/")[1:]] if path else []


def _step(node: Any, part: str, path: str) -> Any:
    if isinstance(node, dict) and part in node:
        return node[part]
    if isinstance(node, list) and part.isdigit() and int(part) < len(node):
        return node[int(part)]
    raise ValueError(f"path {path}: {part!r} is not in the resource")


def _parent(document: Any, parts: list[str], path: str) -> tuple[Any, str]:
    node = document
    for part in parts[:-1]:
        node = _step(node, part, path)
    return node, parts[-1]


def _get(document: Any, path: str) -> Any:
    node = document
    for part in _pointer(path):
        node = _step(node, part, path)
    return node


def _remove(document: Any, path: str) -> Any:
    parts = _pointer(path)
    if not parts:
        raise ValueError("path '': the whole resource cannot be removed")
    node, leaf = _parent(document, parts, path)
    if isinstance(node, dict) and leaf in node:
        return node.pop(leaf)
    if isinstance(node, list) and leaf.isdigit() and int(leaf) < len(node):
        return node.pop(int(leaf))
    raise ValueError(f"path {path}: {leaf!r} is not in the resource")


def _add(document: Any, path: str, value: Any, *, replace: bool) -> Any:
    parts = _pointer(path)
    if not parts:
        return copy.deepcopy(value)
    node, leaf = _parent(document, parts, path)
    if isinstance(node, dict):
        if replace and leaf not in node:
            raise ValueError(f"path {path}: replace needs a field the resource has; {leaf!r} is not there (use add)")
        node[leaf] = copy.deepcopy(value)
    elif isinstance(node, list):
        if leaf == "-" and not replace:
            node.append(copy.deepcopy(value))
        elif leaf.isdigit() and int(leaf) < len(node) + (0 if replace else 1):
            if replace:
                node[int(leaf)] = copy.deepcopy(value)
            else:
                node.insert(int(leaf), copy.deepcopy(value))
        else:
            raise ValueError(f"path {path}: {leaf!r} is not an index of the list")
    else:
        raise ValueError(f"path {path}: its parent is neither a mapping nor a list")
    return document


def _apply_operation(document: Any, operation: Any) -> Any:
    """One RFC 6902 operation: add, remove, replace, move, copy, test."""
    if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
        raise ValueError("expected an operation with op and path")
    op, path = operation["op"], operation["path"]
    if op in ("add", "replace", "test") and "value" not in operation:
        raise ValueError(f"{op} {path}: needs a value")
    if op == "add":
        return _add(document, path, operation["value"], replace=False)
    if op == "replace":
        return _add(document, path, operation["value"], replace=True)
    if op == "remove":
        _remove(document, path)
        return document
    if op in ("move", "copy"):
        if "from" not in operation:
            raise ValueError(f"{op} {path}: needs from")
        source = operation["from"]
        value = _remove(document, source) if op == "move" else copy.deepcopy(_get(document, source))
        return _add(document, path, value, replace=False)
    if op == "test":
        if _get(document, path) != operation["value"]:
            raise ValueError(f"test {path}: the resource holds {_get(document, path)!r}, not {operation['value']!r}")
        return document
    raise ValueError(f"op {op!r}: expected add, remove, replace, move, copy or test")
