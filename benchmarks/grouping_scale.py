"""Near-duplicate grouping at scale: seconds and peak memory for N synthetic descriptors.

The descriptors are what :func:`galley.trainer.grouping.descriptors` gives MobileNetV2 (1,280
non-negative channels): clusters of 1-5 noisy copies of random "objects", spread over classes. The
goal (issue 23): 100,000 descriptors grouped in under 60 s and under 2 GiB. Printed per size:
whitening, search-and-cluster, total seconds, peak RSS of the process (it also holds the input),
and how many of the planted clusters came out whole.

    .venv/bin/python benchmarks/grouping_scale.py [--sizes 10000,100000] [--dimension 1280] [--classes 20]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from galley.trainer import grouping


def synthetic(n: int, dimension: int, classes: int, seed: int = 0) -> tuple[np.ndarray, list[int], np.ndarray]:
    """``n`` descriptors in clusters of 1-5 copies of an object, with their classes and planted clusters."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 6, size=n)
    planted = np.repeat(np.arange(n), sizes)[:n]
    objects = planted.max() + 1
    class_of_object = rng.integers(0, classes, size=objects)
    class_mean = rng.gamma(1.0, 1.0, size=(classes, dimension)).astype(np.float32)
    base = np.empty((objects, dimension), dtype=np.float32)
    for start in range(0, objects, 10_000):
        stop = min(objects, start + 10_000)
        noise = rng.gamma(1.0, 1.0, size=(stop - start, dimension)).astype(np.float32)
        base[start:stop] = class_mean[class_of_object[start:stop]] + noise
    features = np.empty((n, dimension), dtype=np.float32)
    for start in range(0, n, 10_000):
        stop = min(n, start + 10_000)
        jitter = rng.normal(0, 0.35, size=(stop - start, dimension)).astype(np.float32)
        features[start:stop] = np.clip(base[planted[start:stop]] + jitter, 0, None)
    return features, class_of_object[planted].tolist(), planted


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--dimension", type=int, default=1280)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--threshold", type=float, default=grouping.DEFAULT_THRESHOLD)
    args = parser.parse_args()
    print(f"{'descriptors':>12}{'classes':>9}{'whiten s':>10}{'total s':>10}{'peak RSS MiB':>14}"
          f"{'input MiB':>11}{'groups':>9}{'planted whole':>15}")
    for n in (int(size) for size in args.sizes.split(",")):
        features, classes, planted = synthetic(n, args.dimension, args.classes)
        started = time.monotonic()
        grouping.whiten(features)
        whitened = time.monotonic() - started
        started = time.monotonic()
        found = grouping.find_groups(features, classes, args.threshold)
        total = time.monotonic() - started
        of = np.asarray(found.of)
        whole = np.mean([len(set(of[planted == p])) == 1 for p in np.unique(planted)[:2000]])
        print(f"{n:>12,}{args.classes:>9}{whitened:>10.1f}{total:>10.1f}{peak_rss_mib():>14,.0f}"
              f"{features.nbytes / 2**20:>11,.0f}{found.summary()['groups']:>9,}{whole:>15.1%}", flush=True)


if __name__ == "__main__":
    main()
