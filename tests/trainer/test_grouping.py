"""Near-duplicate grouping: the blocked search gives the brute-force groups, big components are
split, and the harder photo builder's objects are found with real ImageNet weights."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from galley.testing import harder_photos
from galley.trainer import grouping


def brute_force(whitened: np.ndarray, classes: list[int], threshold: float) -> list[int]:
    """The reference: the whole threshold graph per class, average linkage in each of its components."""
    group = np.arange(len(whitened))
    labels = np.asarray(classes)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        similarity = whitened[members] @ whitened[members].T
        linked = similarity >= threshold
        component = np.full(len(members), -1)
        for seed in range(len(members)):
            if component[seed] >= 0:
                continue
            stack, component[seed] = [seed], seed
            while stack:
                for other in np.flatnonzero(linked[stack.pop()] & (component < 0)):
                    component[other] = seed
                    stack.append(int(other))
        for root in np.unique(component):
            inside = np.flatnonzero(component == root)
            local = np.asarray(grouping.average_linkage(similarity[np.ix_(inside, inside)], threshold))
            for cluster in np.unique(local):
                photos = members[inside[local == cluster]]
                group[photos] = photos.min()
    return group.tolist()


def partition(of: list[int]) -> set[frozenset[int]]:
    by: dict[int, set[int]] = {}
    for index, group in enumerate(of):
        by.setdefault(group, set()).add(index)
    return {frozenset(members) for members in by.values()}


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 90), classes=st.integers(1, 3),
       neighbours=st.integers(1, 6), block=st.integers(1, 40), threshold=st.floats(0.05, 0.6))
def test_blocked_search_gives_the_brute_force_groups(seed: int, n: int, classes: int, neighbours: int, block: int,
                                                     threshold: float) -> None:
    rng = np.random.default_rng(seed)
    centres = rng.gamma(1.0, 1.0, size=(max(1, n // 3), 32))
    features = np.clip(centres[rng.integers(0, len(centres), n)] + rng.normal(0, 0.3, (n, 32)), 0, None)
    labels = rng.integers(0, classes, n).tolist()
    whitened = grouping.whiten(features)
    expected = partition(brute_force(whitened, labels, threshold))
    # few neighbours and small blocks: dense rows and the spanning-forest path are taken too
    original = grouping.NEIGHBOURS, grouping.BLOCK
    grouping.NEIGHBOURS, grouping.BLOCK = neighbours, block
    try:
        found = grouping.find_groups(features, labels, threshold)
    finally:
        grouping.NEIGHBOURS, grouping.BLOCK = original
    assert partition(found.of) == expected


def test_neighbour_search_keeps_every_pair_of_a_dense_row() -> None:
    vectors = np.tile(np.eye(4, dtype=np.float32)[:1], (10, 1))  # ten identical photos
    first, second = grouping.neighbour_pairs(vectors, 0.9, neighbours=2, block=3)
    assert len(grouping.components(vectors, 0.9, neighbours=2, block=3)) == 1
    assert set(first.tolist()) | set(second.tolist()) == set(range(10)) and not (first == second).any()


def test_a_component_over_the_cap_is_split_not_clustered_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forty pairs of look-alike photos in a chain (each pair a little like the next) form one
    component at the threshold; with a cap of 16 the dense clustering never sees more than 16
    photos, and every pair is still found."""
    pairs = 40
    angles = np.concatenate([[0.05 * i, 0.05 * i + 0.01] for i in range(pairs)])
    vectors = np.stack([np.cos(angles), np.sin(angles), np.zeros_like(angles)], axis=1).astype(np.float32)
    threshold = float(np.cos(0.06))
    assert len(grouping.components(vectors, threshold)) == 1
    seen: list[int] = []
    linkage = grouping.average_linkage

    def watched(similarity: np.ndarray, at: float) -> list[int]:
        seen.append(len(similarity))
        return linkage(similarity, at)

    monkeypatch.setattr(grouping, "average_linkage", watched)
    clusters = list(grouping._cluster(vectors, threshold, threshold, 16))
    assert seen and max(seen) <= 16
    assert sorted(np.concatenate(clusters).tolist()) == list(range(2 * pairs))
    found = {frozenset(c.tolist()) for c in clusters}
    assert all(any({2 * i, 2 * i + 1} <= c for c in found) for i in range(pairs)), found
    assert max(len(c) for c in found) <= 16


@pytest.fixture(scope="module")
def harder(tmp_path_factory: pytest.TempPathFactory) -> harder_photos.HarderSet:
    try:
        return harder_photos.build(tmp_path_factory.mktemp("harder"), seed=7, max_per_class=5)
    except Exception as error:  # no Debian packages reachable
        pytest.skip(f"harder photo set not buildable here: {error}")


def test_harder_builder_records_the_object_of_every_photo(harder: harder_photos.HarderSet) -> None:
    photos_per_object = Counter(harder.object_of.values())
    assert len(photos_per_object) == 20 and set(photos_per_object.values()) <= {3, 4, 5}
    for source, name in harder.object_of.items():
        assert source.startswith(harder.label_of[source] + "/") and name.startswith(harder.label_of[source] + "/")
        with Image.open(Path(harder.root) / source) as image:
            assert image.format == "JPEG" and image.size == (256, 256)
