"""Reading Galley resources from YAML files, and saying precisely what is wrong with them.

Used by ``galley validate``, ``galley run`` and ``galley train``: a missing file, bad YAML or an
invalid resource becomes one line per problem, ``FILE: KIND/NAME: FIELD: message``, and nothing
is touched until every resource is valid.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from galley.api.flavors import FlavorCatalogue
from galley.api.meta import GROUP
from galley.api.resources import BY_KIND, Resource

YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one resource."""

    file: str
    resource: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.resource}: {self.field}: {self.message}"


class InvalidManifests(Exception):
    """Raised with every problem found, so the user can fix them all in one go."""

    def __init__(self, problems: list[Problem]):
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def manifest_files(paths: Iterable[str | Path]) -> list[Path]:
    """The YAML files named, or found (sorted) in the folders named; kustomization files skipped."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files.extend(
                p for p in sorted(path.rglob("*"))
                if p.suffix in YAML_SUFFIXES and p.is_file() and p.stem != "kustomization"
            )
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


def _documents(file: Path) -> Iterator[tuple[int, Any]]:
    with file.open(encoding="utf-8") as stream:
        yield from enumerate(yaml.safe_load_all(stream))


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


def load_resources(paths: Iterable[str | Path], catalogue: FlavorCatalogue | None = None) -> list[Resource]:
    """Every Galley resource in ``paths``, or :class:`InvalidManifests` listing every problem."""
    resources: list[Resource] = []
    problems: list[Problem] = []
    files = manifest_files(paths)
    if not files:
        raise InvalidManifests([Problem(", ".join(map(str, paths)), "-", "(file)", "no YAML files found")])
    for file in files:
        if not file.is_file():
            problems.append(Problem(str(file), "-", "(file)", "no such file"))
            continue
        try:
            documents = list(_documents(file))
        except yaml.YAMLError as error:
            problems.append(Problem(str(file), "-", "(yaml)", " ".join(str(error).split())))
            continue
        for index, document in documents:
            if document is None:
                continue
            resource, found = parse_resource(document, str(file), catalogue, index)
            problems.extend(found)
            if resource is not None:
                resources.append(resource)
    if problems:
        raise InvalidManifests(problems)
    return resources
