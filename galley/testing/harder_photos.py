"""A harder photo set: near-duplicates as users have them, with the object each photo shows.

The demo builder (:mod:`galley.demo.photos`) pastes each cut-out on generated gradients and noise,
which makes its variants easy to find. Users' near-duplicates differ more: the same dish on a
different table, shot from further away, re-saved by a phone. Here each object (one Tux Paint
cut-out) appears in 3 to 5 photos, each on a different crop of a real photograph (the photos
Debian's ``darknet`` package ships), rescaled to 55-90% of the frame, turned by up to 15 degrees,
flipped at random, and JPEG re-encoded at a quality between 50 and 95.

It lives in :mod:`galley.testing`, which the wheel leaves out: it exists to score the trainer's
near-duplicate search (tests and ``benchmarks/``), not for users, and ``galley/demo`` ships.
Thresholds are chosen on some seeds and checked on others (see :mod:`galley.trainer.grouping`).
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from PIL import Image

from galley.demo import photos
from galley.storage.uris import StorageError

BACKGROUND_PACKAGE = "darknet"
BACKGROUND_INSTALLED = Path("/usr/share/darknet/data")
BACKGROUND_CACHE = Path.home() / ".cache" / "galley" / "darknet"
BACKGROUND_PHOTOS = ("dog.jpg", "eagle.jpg", "giraffe.jpg", "horses.jpg", "kite.jpg", "person.jpg")
"""The package's photographs (its ``scream.jpg`` is a painting, left out)."""

SIZE = 256


@dataclass(frozen=True)
class HarderSet:
    """Where the built set is, and which object each photo shows."""

    root: Path
    manifest: Path
    """``usage`` TRAIN or EVAL by object: an object's photos are all on one side."""
    object_of: dict[str, str]
    """Manifest ``source`` (relative to ``root``) -> object name (``label/cut-out``)."""
    label_of: dict[str, str]
    """Manifest ``source`` -> label."""


def backgrounds_root() -> Path:
    """The folder with the background photographs: installed, or unpacked into the cache once."""
    if all((BACKGROUND_INSTALLED / name).is_file() for name in BACKGROUND_PHOTOS):
        return BACKGROUND_INSTALLED
    unpacked = BACKGROUND_CACHE / "usr" / "share" / "darknet" / "data"
    if all((unpacked / name).is_file() for name in BACKGROUND_PHOTOS):
        return unpacked
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise StorageError(f"the backgrounds come from Debian's {BACKGROUND_PACKAGE}; "
                           f"install it with: apt-get install {BACKGROUND_PACKAGE}")
    BACKGROUND_CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        download = subprocess.run(["apt-get", "download", BACKGROUND_PACKAGE], cwd=scratch,
                                  capture_output=True, text=True)
        debs = list(Path(scratch).glob(f"{BACKGROUND_PACKAGE}_*.deb"))
        if download.returncode != 0 or not debs:
            raise StorageError(f"could not download Debian's {BACKGROUND_PACKAGE} "
                               f"({download.stderr.strip()[-300:]})")
        subprocess.run(["dpkg", "-x", str(debs[0]), str(BACKGROUND_CACHE)], check=True)
    return unpacked


def _crop(scene: Image.Image, rng: random.Random, size: int) -> Image.Image:
    """A random square crop of ``scene`` (40-100% of its short side), resized to ``size``."""
    side = int(min(scene.size) * rng.uniform(0.4, 1.0))
    x = rng.randint(0, scene.width - side)
    y = rng.randint(0, scene.height - side)
    return scene.crop((x, y, x + side, y + side)).resize((size, size), Image.Resampling.BILINEAR)


def compose(cutout: Image.Image, scene: Image.Image, rng: random.Random, size: int = SIZE) -> Image.Image:
    """``cutout`` on a crop of ``scene``: rescaled to 55-90%, turned up to 15 degrees, maybe flipped,
    placed anywhere it fits, then JPEG re-encoded at a random quality."""
    background = _crop(scene, rng, size)
    item = cutout.convert("RGBA")
    if rng.random() < 0.5:
        item = item.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    item = item.rotate(rng.uniform(-15, 15), expand=True, resample=Image.Resampling.BICUBIC)
    scale = rng.uniform(0.55, 0.9) * size / max(item.size)
    item = item.resize((max(1, int(item.width * scale)), max(1, int(item.height * scale))), Image.Resampling.LANCZOS)
    background.paste(item, (rng.randint(0, max(0, size - item.width)), rng.randint(0, max(0, size - item.height))),
                     item)
    encoded = BytesIO()
    background.save(encoded, format="JPEG", quality=rng.randint(50, 95))
    with Image.open(encoded) as reread:
        return reread.convert("RGB")


def build(destination: Path, *, seed: int, max_per_class: int | None = None, eval_fraction: float = 0.25,
          photos_per_object: tuple[int, int] = (3, 5), classes: dict[str, str] | None = None) -> HarderSet:
    """Write ``<destination>/<label>/<cut-out>-<n>.jpg`` and ``dataset.manifest`` (TRAIN/EVAL by object)."""
    stamps = photos.stamps_root()
    scenes_root = backgrounds_root()
    scenes = []
    for name in BACKGROUND_PHOTOS:
        with Image.open(scenes_root / name) as scene:
            scenes.append(scene.convert("RGB"))
    rng = random.Random(seed)
    lines: list[str] = []
    object_of: dict[str, str] = {}
    label_of: dict[str, str] = {}
    for label, source, usage, _ in photos.objects(stamps, classes or photos.CLASSES, destination, rng,
                                                  max_per_class=max_per_class, eval_fraction=eval_fraction):
        with Image.open(source) as cutout:
            cutout.load()
            for variant in range(rng.randint(*photos_per_object)):
                relative = f"{label}/{source.stem}-{variant}.jpg"
                compose(cutout, rng.choice(scenes), rng).save(destination / relative, quality=95)
                object_of[relative] = f"{label}/{source.stem}"
                label_of[relative] = label
                lines.append(json.dumps({"source": relative, "usage": usage, "annotation": [{"name": label}]},
                                        ensure_ascii=False))
    manifest = destination / "dataset.manifest"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return HarderSet(destination, manifest, object_of, label_of)
