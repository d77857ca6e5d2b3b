"""The split keeps near-duplicate groups whole, respects a manifest's usage, and says when it cannot."""

from __future__ import annotations

import numpy as np

from galley.trainer.data import Sample, split
from galley.trainer.grouping import average_linkage, find_groups


def _samples(objects_per_class: int, variants: int) -> tuple[list[Sample], list[int]]:
    samples, groups = [], []
    for label in ("cat", "dog"):
        for obj in range(objects_per_class):
            for variant in range(variants):
                samples.append(Sample(f"{label}/{obj}-{variant}.jpg", label))
                groups.append(len(samples) - 1 - variant)  # the object's first photo names its group
    return samples, groups


def test_every_group_lands_whole_on_one_side_near_the_asked_fraction() -> None:
    samples, groups = _samples(objects_per_class=10, variants=4)
    result = split(samples, "train:0.8,eval:0.2", seed=3, groups=groups)
    side = {s.source: "train" for s in result.train} | {s.source: "eval" for s in result.eval}
    for obj in {s.source.rsplit("-", 1)[0] for s in samples}:
        assert len({side[f"{obj}-{v}.jpg"] for v in range(4)}) == 1, obj
    assert len(result.eval) == 16  # 2 of 10 objects per class, 4 photos each: exactly 20%
    assert len(result.near_duplicates) == 20 and result.straddling == []
    record = result.split_record()
    assert record["near_duplicate_groups"][0] == ["cat/0-0.jpg", "cat/0-1.jpg", "cat/0-2.jpg", "cat/0-3.jpg"]


def test_without_groups_the_split_goes_photo_by_photo() -> None:
    samples, _ = _samples(objects_per_class=10, variants=4)
    result = split(samples, "train:0.8,eval:0.2", seed=3)
    assert len(result.eval) == 16 and result.near_duplicates == []


def test_manifest_usage_is_kept_and_a_group_across_it_is_reported() -> None:
    samples, groups = _samples(objects_per_class=3, variants=2)
    told = [Sample(s.source, s.label, "EVAL" if s.source.startswith("cat/0-0") else None) for s in samples]
    told[1] = Sample(told[1].source, told[1].label, "TRAIN")  # cat/0-1: the other side of its group
    result = split(told, "train:0.5,eval:0.5", seed=0, groups=groups)
    assert "cat/0-0.jpg" in {s.source for s in result.eval}
    assert "cat/0-1.jpg" in {s.source for s in result.train}
    assert result.straddling == [["cat/0-0.jpg", "cat/0-1.jpg"]]
    assert result.split_record()["straddling_groups"] == [["cat/0-0.jpg", "cat/0-1.jpg"]]


def test_untold_members_follow_their_group() -> None:
    samples, groups = _samples(objects_per_class=3, variants=3)
    told = [Sample(s.source, s.label, "EVAL" if s.source == "dog/2-0.jpg" else None) for s in samples]
    result = split(told, "train:0.8,eval:0.2", seed=0, groups=groups)
    evaluation = {s.source for s in result.eval}
    assert {"dog/2-0.jpg", "dog/2-1.jpg", "dog/2-2.jpg"} <= evaluation


def test_average_linkage_does_not_chain_through_a_bridge() -> None:
    # a-b and b-c are similar, a-c are not: single linkage would put all three together.
    similarity = np.array([[1.0, 0.6, 0.0], [0.6, 1.0, 0.6], [0.0, 0.6, 1.0]])
    clusters = average_linkage(similarity, threshold=0.5)
    assert len(set(clusters)) == 2


def test_groups_never_span_classes() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(1, 64))
    features = np.repeat(base, 4, axis=0) + rng.normal(scale=0.01, size=(4, 64))  # four near-identical photos
    features = np.vstack([features, rng.normal(size=(12, 64))])
    groups = find_groups(features, classes=[0, 0, 1, 1] + [0] * 6 + [1] * 6)
    assert groups.of[0] == groups.of[1] and groups.of[2] == groups.of[3]
    assert groups.of[0] != groups.of[2]
