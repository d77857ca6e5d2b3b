"""``galley dataset inspect`` through the CLI, on real photos (the demo's builder) with the faults a
user brings: a corrupt file, a class of one photo, an empty class folder, a manifest line without
a label; on a local folder, a manifest, and an S3 folder read with a ``--secret``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from galley.demo import photos

SMALL = ["-p", "image_size=128"]
"""Small inputs that still find the builder's near-duplicates one cut-out per group (at 64 pixels the last
feature map is 2 x 2, and the regional descriptors put a mandarine with an orange)."""
SCRIPT_LABEL = "<script>alert(1)</script>"


@dataclass(frozen=True)
class FaultySet:
    root: Path
    """A folder per class: 水果 and 鸟 (12 photos each, 3 variants of 4 cut-outs), 花 (one photo),
    鸟/broken.jpg (not an image), an empty folder 空, and notes.txt at the top."""
    manifest: Path
    """The same photos as a manifest, plus a line without a label and one labelled ``<script>``."""
    refused_line: int


def build_faulty_set(destination: Path) -> FaultySet:
    built = photos.build(destination, variants=3, max_per_class=4, seed=2,
                         classes={"水果": "food/fruit", "鸟": "animals/birds"})
    tiny = photos.build(destination.parent / f"{destination.name}-tiny", variants=1, max_per_class=1, seed=3,
                        classes={"花": "plants/flowers"})
    (destination / "花").mkdir()
    flower = next((tiny.root / "花").glob("*.jpg"))
    shutil.copy(flower, destination / "花" / flower.name)
    (destination / "鸟" / "broken.jpg").write_bytes(b"this is not a jpeg")
    (destination / "空").mkdir()
    (destination / "notes.txt").write_text("about these photos\n")
    lines = built.manifest.read_text(encoding="utf-8").splitlines()
    lines.append(json.dumps({"source": f"花/{flower.name}", "annotation": [{"name": "花"}]}, ensure_ascii=False))
    lines.append(json.dumps({"source": "鸟/broken.jpg", "annotation": [{"name": "鸟"}]}, ensure_ascii=False))
    lines.append(json.dumps({"source": f"花/{flower.name}", "annotation": []}))
    refused = len(lines)
    lines.append(json.dumps({"source": f"花/{flower.name}", "annotation": [{"name": SCRIPT_LABEL}]}))
    built.manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return FaultySet(destination, built.manifest, refused)


@pytest.fixture(scope="session")
def faulty_set(tmp_path_factory: pytest.TempPathFactory) -> FaultySet:
    return build_faulty_set(tmp_path_factory.mktemp("faulty") / "photos")


def inspect(*arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "galley.cli", "dataset", "inspect", *arguments], capture_output=True,
                          text=True, timeout=300, env=env)


def test_a_folder_set_shows_counts_samples_faults_groups_and_split(faulty_set: FaultySet) -> None:
    done = inspect(str(faulty_set.root), *SMALL)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    rows = {line.split()[0]: line.split()[1:6] for line in out.splitlines() if line.startswith(("水果", "鸟", "花"))}
    assert rows["水果"][:2] == ["12", "12"] and rows["鸟"][:2] == ["13", "12"]
    assert rows["花"][:4] == ["1", "1", "1", "0"]
    assert rows["水果"][4].endswith(".jpg,")  # sample file names
    assert "鸟/broken.jpg: " in out and "unreadable photos (1; training skips them)" in out
    assert "tiny: 1 photo" in out and "no evaluation photo, so its accuracy is never measured" in out
    assert "空" in out and "empty folder: training sees no class for it" in out
    assert "notes.txt: not in a class folder" in out
    assert "near-duplicates: searched with mobilenet_v2's ImageNet features" in out
    split = next(line for line in out.splitlines() if line.startswith("split: "))
    train, evaluation = int(split.split()[1]), int(split.split()[4])
    assert train + evaluation == 25 and evaluation >= 2 and "group by group" in split, split
    groups = out.split("near-duplicates: ", 1)[1].split("\n\n", 1)[0].splitlines()[2:]
    assert groups, out  # the builder pastes each cut-out several times: some are found as one object
    for group in groups:  # named after their cut-out, "<cut-out>-<variant>.jpg"
        assert len({name.strip().rsplit("-", 1)[0] for name in group.split(",")}) == 1, group
    assert "would stop" not in out


def test_a_manifest_as_json_names_the_refused_line_and_what_stops_a_job(faulty_set: FaultySet) -> None:
    done = inspect(str(faulty_set.manifest), "-o", "json", *SMALL)
    assert done.returncode == 1, done.stderr  # a job would stop on the refused line
    report: dict[str, Any] = json.loads(done.stdout)
    assert report["format"] == "manifest" and report["decoded"] is True
    assert [n for n, _ in report["refused_lines"]] == [faulty_set.refused_line]
    assert "no label (expected annotation[].name)" in report["refused_lines"][0][1]
    assert f"line {faulty_set.refused_line}: no label" in report["stops"][0]
    classes = {c["name"]: c for c in report["classes"]}
    assert set(classes) == {"水果", "鸟", "花", SCRIPT_LABEL}
    assert classes["鸟"]["photos"] == 13 and classes["鸟"]["readable"] == 12
    assert [Path(s).name for s, _ in report["unreadable"]] == ["broken.jpg"]
    # The demo's manifest says TRAIN/EVAL per cut-out, and the split follows it.
    told_eval = {json.loads(line)["source"] for line in faulty_set.manifest.read_text(encoding="utf-8").splitlines()
                 if json.loads(line).get("usage") == "EVAL"}
    assert {str(Path(s).relative_to(faulty_set.root)) for s, _ in report["eval"]} == told_eval
    assert report["near_duplicates"], report["near_duplicates_note"]
    train = {s for s, _ in report["train"]}
    for group in report["near_duplicates"]:  # the builder gave each cut-out's variants one usage
        assert len({member in train for member in group}) == 1, group


def test_an_s3_folder_with_a_secret_and_no_weights_splits_photo_by_photo(faulty_set: FaultySet, s3: Any,
                                                                         tmp_path: Path) -> None:
    s3.create_bucket(Bucket="inspect")
    for path in sorted(faulty_set.root.rglob("*")):
        if path.is_file() and path.name != "dataset.manifest":
            s3.put_object(Bucket="inspect", Key=f"photos/{path.relative_to(faulty_set.root)}", Body=path.read_bytes())
    home = tmp_path / "home"
    (home / "secrets").mkdir(parents=True)
    settings = {name: os.environ[name] for name in
                ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    (home / "secrets" / "s3-credentials.env").write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["TORCH_HOME"] = str(tmp_path / "no-torch-cache")  # no resnet18 ImageNet weights there, nor anywhere offline
    without_secret = inspect("s3://inspect/photos/", env=env)
    assert without_secret.returncode == 2 and "no storage settings here" in without_secret.stderr
    done = inspect("s3://inspect/photos/", "--home", str(home), "--secret", "s3-credentials", "--algorithm", "resnet18",
                   "-o", "json", *SMALL, env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert {c["name"]: c["readable"] for c in report["classes"]} == {"水果": 12, "鸟": 12, "花": 1}
    assert [s for s, _ in report["unreadable"]] == ["s3://inspect/photos/鸟/broken.jpg"]
    assert report["near_duplicates"] is None
    assert report["near_duplicates_note"].startswith("not searched: the network's weights were not found: "
                                                     "no ImageNet weights for resnet18")
    assert "photo by photo" in report["split_note"] and len(report["train"]) + len(report["eval"]) == 25


WITHOUT_TORCH = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("torch", "torchvision"):
            raise ImportError(f"{name} is not installed")
sys.meta_path.insert(0, Block())
from galley.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_without_torch_it_still_shows_classes_and_refused_lines(faulty_set: FaultySet) -> None:
    """As the console does in the operator image, which has no torch."""
    done = subprocess.run([sys.executable, "-c", WITHOUT_TORCH, "dataset", "inspect", str(faulty_set.manifest),
                           "-o", "json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["decoded"] is False and report["train"] is None
    assert {c["name"]: c["photos"] for c in report["classes"]} == {"水果": 12, "鸟": 13, "花": 1, SCRIPT_LABEL: 1}
    assert [n for n, _ in report["refused_lines"]] == [faulty_set.refused_line]
    assert report["near_duplicates_note"] == "not searched: torch is not installed here, so photos were not decoded"
