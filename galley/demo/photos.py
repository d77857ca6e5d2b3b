"""A labelled photo set built from Debian's ``tuxpaint-stamps-default``.

The package holds real photographs cut out on transparent backgrounds. Each cut-out is pasted
onto a generated background at a random size, angle and place, several times, which gives a
small but honest classification task. Cut-outs are assigned to training or evaluation as a
whole, so evaluation photos show objects the network never saw. The package is GPL-2: the set is
built on the user's machine, never shipped.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from galley.storage.uris import StorageError

PACKAGE = "tuxpaint-stamps-default"
INSTALLED = Path("/usr/share/tuxpaint/stamps")
CACHE = Path.home() / ".cache" / "galley" / "tuxpaint-stamps"

CLASSES: dict[str, str] = {
    "水果": "food/fruit",
    "蔬菜": "food/vegetables",
    "鸟": "animals/birds",
    "花": "plants/flowers",
}
"""Label -> stamp folder. Chinese labels, like the reference case, so UTF-8 is exercised end to end."""


@dataclass(frozen=True)
class PhotoSet:
    """Where the built set is."""

    root: Path
    manifest: Path
    holdout: list[tuple[Path, str]]
    """A few evaluation photos with their labels, for classifying after training."""

    def held_out(self) -> list[tuple[Path, str]]:
        """Every photo of the objects training never sees (usage EVAL), with its label: each object's
        photos are all on that side, so accuracy on them is accuracy on new objects."""
        found = []
        for line in self.manifest.read_text(encoding="utf-8").splitlines():
            record = json.loads(line) if line.strip() else {}
            if record.get("usage") == "EVAL":
                found.append((self.root / record["source"], record["annotation"][0]["name"]))
        return found


def stamps_root() -> Path:
    """The stamps folder: the installed package, or the package unpacked into the cache (downloaded once)."""
    if INSTALLED.is_dir():
        return INSTALLED
    unpacked = CACHE / "usr" / "share" / "tuxpaint" / "stamps"
    if unpacked.is_dir():
        return unpacked
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise StorageError(f"the photos come from Debian's {PACKAGE}; install it with: apt-get install {PACKAGE}")
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        download = subprocess.run(["apt-get", "download", PACKAGE], cwd=scratch, capture_output=True, text=True)
        debs = list(Path(scratch).glob(f"{PACKAGE}_*.deb"))
        if download.returncode != 0 or not debs:
            raise StorageError(f"could not download Debian's {PACKAGE} ({download.stderr.strip()[-300:]}); "
                               f"install it with: apt-get install {PACKAGE}")
        subprocess.run(["dpkg", "-x", str(debs[0]), str(CACHE)], check=True)
    return unpacked


def cutouts(root: Path, folder: str) -> list[Path]:
    """Photo cut-outs in a stamp folder (cartoon drawings left out)."""
    return sorted(p for p in (root / folder).rglob("*.png") if "cartoon" not in p.parts)


def _background(rng: random.Random, size: int) -> Image.Image:
    top = np.array([rng.randint(0, 255) for _ in range(3)], dtype=np.float32)
    bottom = np.array([rng.randint(0, 255) for _ in range(3)], dtype=np.float32)
    ramp = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
    pixels = top * (1 - ramp) + bottom * ramp
    noise = np.random.default_rng(rng.randint(0, 2**31)).normal(0, rng.uniform(4, 24), (size, size, 3))
    pixels = np.broadcast_to(pixels, (size, size, 3)) + noise
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def compose(cutout: Image.Image, rng: random.Random, size: int = 256) -> Image.Image:
    """Paste ``cutout`` on a generated background, randomly scaled, turned, flipped and placed."""
    background = _background(rng, size)
    item = cutout.convert("RGBA")
    if rng.random() < 0.5:
        item = item.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    item = item.rotate(rng.uniform(-25, 25), expand=True, resample=Image.Resampling.BICUBIC)
    scale = rng.uniform(0.45, 0.9) * size / max(item.size)
    item = item.resize((max(1, int(item.width * scale)), max(1, int(item.height * scale))), Image.Resampling.LANCZOS)
    x = rng.randint(0, max(0, size - item.width))
    y = rng.randint(0, max(0, size - item.height))
    background.paste(item, (x, y), item)
    return background


def holdout_of(destination: Path) -> list[tuple[Path, str]]:
    """The holdout photos of a set built earlier (the first variant of the first evaluation cut-outs)."""
    chosen: list[tuple[Path, str]] = []
    seen: dict[str, int] = {}
    for line in (destination / "dataset.manifest").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        label = record["annotation"][0]["name"]
        if record.get("usage") == "EVAL" and record["source"].endswith("-0.jpg") and seen.get(label, 0) < 2:
            seen[label] = seen.get(label, 0) + 1
            chosen.append((destination / record["source"], label))
    return chosen


def objects(root: Path, classes: dict[str, str], destination: Path, rng: random.Random, *,
            max_per_class: int | None, eval_fraction: float) -> Iterator[tuple[str, Path, str, int]]:
    """Each class's cut-outs (an object each) in a shuffled order, at most ``max_per_class``, the first
    ``eval_fraction`` of them for evaluation: ``(label, cut-out, usage, index in its class)``, with
    the class's folder made. Shared by the builders, so that every object's photos are on one side."""
    for label, folder in classes.items():
        sources = cutouts(root, folder)
        rng.shuffle(sources)
        sources = sources[:max_per_class] if max_per_class else sources
        n_eval = max(1, round(len(sources) * eval_fraction))
        (destination / label).mkdir(parents=True, exist_ok=True)
        for index, source in enumerate(sources):
            yield label, source, "EVAL" if index < n_eval else "TRAIN", index


def build(destination: Path, *, variants: int = 4, eval_fraction: float = 0.25, seed: int = 0,
          max_per_class: int | None = None, classes: dict[str, str] | None = None) -> PhotoSet:
    """Write ``<destination>/<label>/*.jpg`` and ``<destination>/dataset.manifest`` (usage TRAIN/EVAL by cut-out)."""
    root = stamps_root()
    rng = random.Random(seed)
    lines: list[str] = []
    holdout: list[tuple[Path, str]] = []
    for label, source, usage, index in objects(root, classes or CLASSES, destination, rng, max_per_class=max_per_class,
                                                eval_fraction=eval_fraction):
        with Image.open(source) as cutout:
            cutout.load()
            for variant in range(variants):
                path = destination / label / f"{source.stem}-{variant}.jpg"
                compose(cutout, rng).save(path, quality=90)
                relative = f"{label}/{path.name}"
                lines.append(json.dumps({"source": relative, "usage": usage, "annotation": [{"name": label}]},
                                        ensure_ascii=False))
                if usage == "EVAL" and variant == 0 and index < 2:
                    holdout.append((path, label))
    manifest = destination / "dataset.manifest"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return PhotoSet(destination, manifest, holdout)
