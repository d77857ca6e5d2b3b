"""Evaluation numbers: accuracy, per-class precision/recall/F1/support, confusion matrix."""

from __future__ import annotations

from typing import Any

import numpy as np


def classification_metrics(labels: list[str], targets: np.ndarray, predictions: np.ndarray) -> dict[str, Any]:
    """metrics.json's content; rows of the confusion matrix are true classes, columns predictions."""
    n = len(labels)
    matrix = np.zeros((n, n), dtype=np.int64)
    np.add.at(matrix, (targets, predictions), 1)
    per_class: dict[str, dict[str, float]] = {}
    for i, label in enumerate(labels):
        true_positive = float(matrix[i, i])
        predicted = float(matrix[:, i].sum())
        actual = float(matrix[i, :].sum())
        precision = true_positive / predicted if predicted else 0.0
        recall = true_positive / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {"precision": round(precision, 4), "recall": round(recall, 4),
                            "f1": round(f1, 4), "support": int(actual)}
    total = int(matrix.sum())
    accuracy = float(np.trace(matrix)) / total if total else 0.0
    return {
        "accuracy": round(accuracy, 4),
        "macro_f1": round(float(np.mean([c["f1"] for c in per_class.values()])), 4) if per_class else 0.0,
        "eval_images": total,
        "per_class": per_class,
        "confusion_matrix": {"labels": labels, "matrix": matrix.tolist()},
    }
