"""Reading Galley resources from YAML files, and saying precisely what is wrong with them.

Used by ``galley validate``, ``galley run`` and ``galley train``: a missing file, bad YAML or an
invalid resource becomes one line per problem, ``FILE: KIND/NAME: FIELD: message``, and nothing
is touched until every resource is valid.

The sources are read as kubectl reads them: ``-`` is standard input (``<stdin>`` in problems), a
file is its YAML documents, a folder is its YAML files, and a folder that holds a
``kustomization.yaml`` is built as ``kubectl apply -k`` builds it (:mod:`galley.kustomize`),
never read file by file: its patch files are fragments, not resources.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

import yaml
from pydantic import ValidationError

from galley import kustomize
from galley.api.flavors import FlavorCatalogue
from galley.api.meta import GROUP
from galley.api.resources import BY_KIND, Resource

YAML_SUFFIXES = (".yaml", ".yml")
STDIN = "-"
"""The file name that means standard input, as kubectl takes it."""
STDIN_NAME = "<stdin>"
"""How problems name standard input."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one resource."""

    file: str
    resource: str
    field: str
    message: str
    origin: str = ""
    """For a resource of a kustomization's build: the file it came from and the patches applied to it."""

    def __str__(self) -> str:
        text = f"{self.file}: {self.resource}: {self.field}: {self.message}"
        return f"{text} ({self.origin})" if self.origin else text


class InvalidManifests(Exception):
    """Raised with every problem found, so the user can fix them all in one go."""

    def __init__(self, problems: list[Problem]):
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def _walk(folder: Path) -> Iterator[Path]:
    """A folder's YAML files, sorted, and in place of a folder that holds a kustomization, that folder."""
    if kustomize.find(folder) is not None:
        yield folder
        return
    for child in sorted(folder.iterdir()):
        if child.is_dir():
            yield from _walk(child)
        elif child.suffix in YAML_SUFFIXES and child.is_file():
            yield child


def manifest_files(paths: Iterable[str | Path]) -> list[Path]:
    """The YAML files named, or found (sorted) in the folders named; a folder that holds a kustomization
    comes as that folder (it is built, not read file by file), and so does a kustomization file named."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files.extend(_walk(path))
        elif path.name in kustomize.FILES and path.is_file():
            files.append(path.parent)
        else:
            files.append(path)
    return files


def _field(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in ("function-after", "function-before") or "[" in str(part):
            continue
        else:
            text += f".{part}" if text else str(part)
    return text or "(resource)"


def _message(error: dict[str, Any]) -> str:
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if error["type"] == "missing":
        return "is required"
    if error["type"] == "extra_forbidden":
        return "is not a known field"
    if error["type"] == "literal_error":
        return message.replace("Input should be", "expected")
    return message


def _yaml_problem(file: str, error: yaml.YAMLError) -> Problem:
    return Problem(file, "-", "(yaml)", " ".join(str(error).split()))


def parse_resource(document: Any, file: str, catalogue: FlavorCatalogue | None = None,
                   index: int = 0) -> tuple[Resource | None, list[Problem]]:
    """Validate one YAML document; non-Galley documents come back as ``(None, [])``."""
    if not isinstance(document, dict):
        problem = Problem(file, f"document {index + 1}", "(document)", "expected a mapping with apiVersion and kind")
        return None, [problem]
    api_version = str(document.get("apiVersion", ""))
    kind = str(document.get("kind", ""))
    name = str((document.get("metadata") or {}).get("name", "?"))
    label = f"{kind or '?'}/{name}"
    if api_version.split("/")[0] != GROUP:
        return None, []
    cls = BY_KIND.get(kind)
    if cls is None:
        return None, [Problem(file, label, "kind", f"expected one of {', '.join(BY_KIND)}")]
    try:
        context = {"flavors": catalogue} if catalogue else None
        return cls.model_validate(document, context=context), []
    except ValidationError as error:
        return None, [
            Problem(file, label, _field(e["loc"]), _message(dict(e)))
            for e in error.errors(include_url=False)
        ]


@dataclass(frozen=True)
class Document:
    """One YAML document to check, and where it was read."""

    file: str
    """The file, ``<stdin>``, or the kustomization file whose build holds it."""
    index: int
    document: Any
    origin: str = ""
    """For a build by Galley's own reader: the file it came from and the patches applied to it."""


def _build(folder: Path) -> tuple[list[Document], list[Problem]]:
    """A kustomization's build as documents, or the problems that stopped it."""
    try:
        built = kustomize.build(folder)
    except kustomize.BuildFailed as error:
        return [], [Problem(p.file, p.resource, p.field, p.message) for p in error.problems]
    file = os.path.normpath(built.kustomization)
    if not built.documents:
        return [], [Problem(file, "-", "(kustomization)", "the build holds no resources")]
    documents = []
    for index, item in enumerate(built.documents):
        origin = ", patched by ".join([item.origin, *item.patches]) if item.origin else ""
        documents.append(Document(file, index, item.document, f"from {origin}" if origin else ""))
    return documents, []


def read_documents(paths: Iterable[str | Path], kustomizations: Iterable[str | Path] = (),
                   stdin: TextIO | None = None) -> tuple[list[Document], list[Problem]]:
    """Every YAML document in ``paths`` (``-`` is ``stdin``, default the process's) and in the builds
    of ``kustomizations``, with the problems met reading them."""
    documents: list[Document] = []
    problems: list[Problem] = []
    names = [str(p) for p in paths]
    found_any = STDIN in names
    if names.count(STDIN) > 1:
        problems.append(Problem(STDIN_NAME, "-", "(file)", "'-' is given more than once; standard input is read once"))
    for path in dict.fromkeys(names):
        if path == STDIN:
            text = (stdin or sys.stdin).read()
            try:
                found = [Document(STDIN_NAME, i, d) for i, d in enumerate(yaml.safe_load_all(text)) if d is not None]
            except yaml.YAMLError as error:
                problems.append(_yaml_problem(STDIN_NAME, error))
                continue
            if not found:
                problems.append(Problem(STDIN_NAME, "-", "(file)", "no YAML documents on standard input"))
            documents.extend(found)
            continue
        files = manifest_files([path])
        found_any = found_any or bool(files)
        for file in files:
            if file.is_dir():
                built, failed = _build(file)
                documents.extend(built)
                problems.extend(failed)
            elif not file.is_file():
                problems.append(Problem(str(file), "-", "(file)", "no such file"))
            else:
                try:
                    with file.open(encoding="utf-8") as stream:
                        loaded = list(enumerate(yaml.safe_load_all(stream)))
                    documents.extend(Document(str(file), i, d) for i, d in loaded if d is not None)
                except yaml.YAMLError as error:
                    problems.append(_yaml_problem(str(file), error))
    folders = [Path(k) for k in kustomizations]
    if not found_any and not folders:
        problems.append(Problem(", ".join(names), "-", "(file)", "no YAML files found"))
    for folder in folders:
        if not folder.is_dir():
            problems.append(Problem(str(folder), "-", "(kustomization)",
                                    "no such folder" if not folder.exists() else "-k takes the folder that holds "
                                                                                  "kustomization.yaml"))
            continue
        built, failed = _build(folder)
        documents.extend(built)
        problems.extend(failed)
    return documents, problems


def load_resources(paths: Iterable[str | Path], catalogue: FlavorCatalogue | None = None, *,
                   kustomizations: Iterable[str | Path] = (), stdin: TextIO | None = None) -> list[Resource]:
    """Every Galley resource in ``paths`` and ``kustomizations``, or :class:`InvalidManifests` listing
    every problem."""
    documents, problems = read_documents(paths, kustomizations, stdin)
    resources: list[Resource] = []
    for item in documents:
        resource, found = parse_resource(item.document, item.file, catalogue, item.index)
        problems.extend(replace(p, origin=item.origin) for p in found)
        if resource is not None:
            resources.append(resource)
    if problems:
        raise InvalidManifests(problems)
    return resources
