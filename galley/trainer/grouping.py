"""Near-duplicate groups: photos of one object or scene, found from their pixels.

A labelled set often holds several photos of the same thing (the same dish from two angles, the
same plate on two tables). Split per photo, those land on both sides, and evaluation then scores
recognition of things the network has already seen. Grouping them first lets the split keep each
group on one side, so evaluation accuracy is what a user meets on new photos.

How a group is found, and why:

1. A descriptor per photo, R-MAC-like: the pretrained backbone's last feature map is max-pooled
   over 14 square regions at three scales (the whole map, 2 x 2 and 3 x 3 overlapping windows),
   each region L2-normalised, and the regions summed; the same for the mirrored photo is added
   (so a flip is no difference). An object that fills 55% of one photo and 90% of another still
   fills some region of each, so a different background weighs less than in one global max.
2. Shrinkage whitening fitted on the set itself, from the C x C covariance (memory and time grow
   with N x C, never N x N nor an N x C SVD): centre, rotate to principal axes, and scale each axis
   by ``1 / sqrt(variance + SHRINKAGE * mean variance)``, the mean over the axes the set spans.
   Directions shared by many photos (what makes a bird a bird, a background many photos share)
   are damped.
3. Within each class, a blocked top-k neighbour search (one matrix product per block of rows),
   union-find over the pairs at or above the threshold, then average linkage inside each
   connected component: clusters merge while their photos are, on average, that similar. Average
   linkage never joins photos of two components, so only components need a dense matrix; one
   larger than ``cap`` is split by searching it again at a tighter threshold, never scanned whole.

Measured with ``benchmarks/grouping_scale.py`` (descriptor, shrinkage and threshold chosen on the
harder builder's seeds 100-102, :mod:`galley.testing.harder_photos`; other seeds check them).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

SHRINKAGE = 0.65
"""Variance added to every principal axis, as a multiple of the mean variance of the axes the set spans
(at most N - 1 of them): so the same shrinkage suits 100 photos and 100,000."""
DEFAULT_THRESHOLD = 0.175
"""Cosine similarity of whitened descriptors at which photos count as near-duplicates."""
NEIGHBOURS = 16
"""Neighbours kept per photo by the search; a photo with more above the threshold keeps them all."""
CAP = 512
"""Largest component clustered with a dense similarity matrix (``CAP**2`` floats)."""
BLOCK = 2048
"""Rows per matrix product in the neighbour search and the whitening."""
TIGHTEN = 0.5
"""A component over ``CAP`` is searched again with its distance to similarity 1 times this."""
LEVELS = 3
"""Region scales of the descriptor (1: the whole map only)."""


@dataclass(frozen=True)
class Groups:
    """A group index per photo; photos that share one are near-duplicates."""

    of: list[int]

    def members(self) -> list[list[int]]:
        """Groups of two or more photos, as lists of photo indices."""
        by_group: dict[int, list[int]] = {}
        for index, group in enumerate(self.of):
            by_group.setdefault(group, []).append(index)
        return [m for m in by_group.values() if len(m) > 1]

    def summary(self) -> dict[str, int]:
        multi = self.members()
        return {"groups": len(multi), "photos": sum(len(m) for m in multi)}


def _regions(height: int, width: int, levels: int = LEVELS) -> Iterator[tuple[int, int, int]]:
    """Square windows ``(top, left, side)`` of R-MAC's grid: the whole map, then at level ``l``
    windows of side ``2 * short / (l + 1)`` spread evenly, ``l`` a row, overlapping."""
    short = min(height, width)
    yield 0, 0, short
    for level in range(2, levels + 1):
        side = max(1, int(np.ceil(2 * short / (level + 1))))
        tops = np.unique(np.linspace(0, height - side, level).round().astype(int))
        lefts = np.unique(np.linspace(0, width - side, level).round().astype(int))
        for top in tops:
            for left in lefts:
                yield int(top), int(left), side


def _rmac(maps: np.ndarray) -> np.ndarray:
    total = np.zeros(maps.shape[:2], dtype=np.float32)
    for top, left, side in _regions(*maps.shape[2:]):
        region = maps[:, :, top : top + side, left : left + side].max(axis=(2, 3)).astype(np.float32)
        total += region / np.maximum(np.linalg.norm(region, axis=1, keepdims=True), 1e-12)
    return total


def descriptors(maps: np.ndarray, mirrored_maps: np.ndarray) -> np.ndarray:
    """Per-photo descriptors ``(N, C)`` from feature maps ``(N, C, H, W)`` of the photos and their mirror images."""
    return (_rmac(maps) + _rmac(mirrored_maps)) / 2


def _normalised(x: np.ndarray) -> np.ndarray:
    result: np.ndarray = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return result


def whiten(features: np.ndarray, shrinkage: float | None = None, block: int = BLOCK) -> np.ndarray:
    """L2-normalised, shrinkage-whitened descriptors (float32; see the module docstring).

    The covariance is summed a block of rows at a time (float32 products into a float64 sum), so
    memory is two N x C float32 arrays and a C x C matrix, whatever N.
    """
    shrinkage = SHRINKAGE if shrinkage is None else shrinkage
    n, c = features.shape
    mean = np.zeros(c)
    for start in range(0, n, block):
        mean += _normalised(features[start : start + block].astype(np.float32)).sum(axis=0, dtype=np.float64)
    mean /= max(1, n)
    covariance = np.zeros((c, c))
    for start in range(0, n, block):  # float32 products, summed in float64
        x = _normalised(features[start : start + block].astype(np.float32)) - mean.astype(np.float32)
        covariance += x.T @ x
    variance, axes = np.linalg.eigh(covariance / max(1, n))
    variance = np.clip(variance, 0.0, None)
    floor = shrinkage * variance.sum() / min(c, max(1, n - 1))  # per axis the set can vary along
    projection = (axes / np.sqrt(variance + floor + 1e-12)).astype(np.float32)
    result = np.empty((n, c), dtype=np.float32)
    for start in range(0, n, block):
        x = _normalised(features[start : start + block].astype(np.float32)) - mean.astype(np.float32)
        result[start : start + block] = _normalised(x @ projection)
    return result


def average_linkage(similarity: np.ndarray, threshold: float) -> list[int]:
    """Cluster indices by average linkage: merge while two clusters' mean similarity >= ``threshold``."""
    n = len(similarity)
    between = similarity.astype(np.float64).copy()
    np.fill_diagonal(between, -np.inf)
    sizes = np.ones(n)
    cluster = np.arange(n)
    while n > 1:
        a, b = np.unravel_index(int(np.argmax(between)), between.shape)
        if between[a, b] < threshold:
            break
        merged = (sizes[a] * between[a] + sizes[b] * between[b]) / (sizes[a] + sizes[b])
        between[a], between[:, a] = merged, merged
        between[a, a] = -np.inf
        between[b], between[:, b] = -np.inf, -np.inf
        sizes[a] += sizes[b]
        cluster[cluster == b] = a
    return cluster.tolist()


def _roots(n: int, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Union-find over the edges ``first[i] -- second[i]``, vectorised: each round hooks every
    edge's larger root under its smaller one, then halves paths until every node points at a root.
    Returns each node's root (the smallest index of its component)."""
    parent = np.arange(n)
    while True:
        a, b = parent[first], parent[second]
        moving = a != b
        if not moving.any():
            return parent
        low, high = np.minimum(a[moving], b[moving]), np.maximum(a[moving], b[moving])
        np.minimum.at(parent, high, low)
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped


def neighbour_pairs(vectors: np.ndarray, threshold: float, neighbours: int = NEIGHBOURS,
                    block: int = BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(i, j)``, ``i != j``, of unit ``vectors`` with similarity >= ``threshold``, found a
    block of rows at a time: each row keeps its ``neighbours`` most similar, or every one above the
    threshold where more than that are (so components are exactly those of the threshold graph).
    Memory: one block x N similarity matrix and the kept pairs."""
    n = len(vectors)
    firsts: list[np.ndarray] = []
    seconds: list[np.ndarray] = []
    kept = 0
    for start in range(0, n, block):
        similarity = vectors[start : start + block] @ vectors.T
        rows = np.arange(len(similarity))
        similarity[rows, rows + start] = -np.inf
        k = min(neighbours, n - 1)
        if k <= 0:
            break
        top = np.argpartition(similarity, n - k, axis=1)[:, n - k :]
        top_similarity = np.take_along_axis(similarity, top, axis=1)
        saturated = top_similarity.min(axis=1) >= threshold
        keep = top_similarity >= threshold
        keep[saturated] = False
        i, j = np.nonzero(keep)
        firsts.append(i + start)
        seconds.append(top[i, j])
        kept += len(i)
        if saturated.any():
            i, j = np.nonzero(similarity[saturated] >= threshold)
            firsts.append(np.flatnonzero(saturated)[i] + start)
            seconds.append(j)
            kept += len(i)
        if kept > 8 * n:  # many dense rows: keep only a spanning forest of what was found so far
            first, second = np.concatenate(firsts), np.concatenate(seconds)
            roots = _roots(n, first, second)
            linked = np.flatnonzero(roots != np.arange(n))
            firsts, seconds, kept = [linked], [roots[linked]], len(linked)
    if not firsts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(firsts).astype(np.int64), np.concatenate(seconds).astype(np.int64)


def components(vectors: np.ndarray, threshold: float, **search: int) -> list[np.ndarray]:
    """Connected components (index arrays) of the graph linking rows with similarity >= ``threshold``."""
    first, second = neighbour_pairs(vectors, threshold, **search)
    roots = _roots(len(vectors), first, second)
    order = np.argsort(roots, kind="stable")
    _, starts = np.unique(roots[order], return_index=True)
    return np.split(order, starts[1:])


def _cluster(vectors: np.ndarray, threshold: float, search_threshold: float, cap: int) -> Iterator[np.ndarray]:
    """Clusters (index arrays into ``vectors``): average linkage at ``threshold`` inside each
    component of the ``search_threshold`` graph, a component over ``cap`` searched again tighter."""
    for component in components(vectors, search_threshold):
        if len(component) == 1:
            yield component
        elif len(component) <= cap:
            within = vectors[component]
            local = np.asarray(average_linkage(within @ within.T, threshold))
            for label in np.unique(local):
                yield component[local == label]
        elif search_threshold >= 1.0 - 1e-6:
            yield component  # all but identical: one group, however large
        else:
            tighter = 1.0 - (1.0 - search_threshold) * TIGHTEN
            for part in _cluster(vectors[component], threshold, tighter, cap):
                yield component[part]


def find_groups(features: np.ndarray, classes: list[int], threshold: float = DEFAULT_THRESHOLD, *,
                cap: int = CAP) -> Groups:
    """Near-duplicate groups among photos with ``features`` (one row each, from :func:`descriptors`),
    never across classes. A group is named by the index of one of its photos."""
    if len(features) == 0:
        return Groups([])
    whitened = whiten(features)
    group = np.arange(len(features))
    labels = np.asarray(classes)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        for cluster in _cluster(whitened[members], threshold, threshold, cap):
            photos = members[cluster]
            group[photos] = photos.min()
    return Groups(group.tolist())
