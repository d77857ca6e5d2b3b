"""The evaluation report: one self-contained HTML file that opens from the bucket in any browser.

Loss and accuracy curves per epoch, the confusion matrix as a heat map, the per-class table,
and a few misclassified evaluation photos with their scores. No scripts, no external assets.
The console draws its live curves and tables with the same functions.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any, NamedTuple

from PIL import Image


class Mistake(NamedTuple):
    """A misclassified evaluation photo: the image, its true label, and the ranked scores."""

    image: Image.Image
    true: str
    scores: list[tuple[str, float]]


def split_summary(split: dict[str, Any] | None) -> str:
    if not split:
        return ""
    groups = split.get("near_duplicate_groups")
    if groups is None:
        grouping = "Near-duplicate search was off; the split went photo by photo."
    else:
        grouping = (f"Near-duplicate search found <b>{groups}</b> groups holding {split.get('near_duplicate_photos', 0)} "
                    "photos; each group is on one side of the split, so evaluation photos show things training "
                    "never saw.")
        if split.get("straddling_groups"):
            grouping += (f" <b>Warning:</b> the data set's own usage puts {split['straddling_groups']} of them on "
                         "both sides; evaluation accuracy is optimistic for those.")
    return (f"<p>{split.get('train_images', 0)} training and {split.get('eval_images', 0)} evaluation photos; "
            f"{split.get('skipped_images', 0)} unreadable photos skipped. {grouping}</p>")


def _polyline(values: list[float | None], width: int, height: int, top: float) -> str:
    points = [(i, v) for i, v in enumerate(values) if v is not None]
    if not points:
        return ""
    span = max(1, len(values) - 1)
    coords = " ".join(f"{40 + i * (width - 60) / span:.1f},{height - 25 - (v / top) * (height - 45):.1f}"
                      for i, v in points)
    return coords


def chart(title: str, series: dict[str, list[float | None]], top: float | None = None) -> str:
    width, height = 460, 220
    values = [v for s in series.values() for v in s if v is not None]
    top = top or (max(values) * 1.1 if values else 1.0) or 1.0
    colours = ["#2563eb", "#dc2626", "#16a34a"]
    lines = "".join(
        f'<polyline fill="none" stroke="{colours[i % 3]}" stroke-width="2" data-series="{html.escape(name)}" '
        f'data-points="{sum(v is not None for v in s)}" points="{_polyline(s, width, height, top)}"/>'
        f'<text x="{width - 150}" y="{20 + 16 * i}" fill="{colours[i % 3]}" font-size="12">{html.escape(name)}</text>'
        for i, (name, s) in enumerate(series.items())
    )
    return (f'<figure><figcaption>{html.escape(title)}</figcaption><svg width="{width}" height="{height}" '
            f'role="img"><line x1="40" y1="{height - 25}" x2="{width - 20}" y2="{height - 25}" stroke="#999"/>'
            f'<line x1="40" y1="20" x2="40" y2="{height - 25}" stroke="#999"/>'
            f'<text x="4" y="24" font-size="11">{top:.2f}</text><text x="4" y="{height - 25}" font-size="11">0</text>'
            f'{lines}<text x="{width / 2 - 20}" y="{height - 6}" font-size="11">epoch</text></svg></figure>')


def confusion_table(metrics: dict[str, Any]) -> str:
    labels = metrics["confusion_matrix"]["labels"]
    matrix = metrics["confusion_matrix"]["matrix"]
    head = "".join(f"<th>{html.escape(label)}</th>" for label in labels)
    rows = []
    for label, row in zip(labels, matrix, strict=True):
        total = sum(row) or 1
        cells = "".join(
            f'<td style="background:rgba(37,99,235,{count / total:.2f});color:{"#fff" if count / total > .5 else "#000"}">'
            f"{count}</td>" for count in row)
        rows.append(f"<tr><th>{html.escape(label)}</th>{cells}</tr>")
    return (f'<table class="cm"><caption>Confusion matrix (rows: true class, columns: predicted)</caption>'
            f"<tr><th></th>{head}</tr>{''.join(rows)}</table>")


def per_class_table(metrics: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(label)}</td><td>{m['precision']:.3f}</td><td>{m['recall']:.3f}</td>"
        f"<td>{m['f1']:.3f}</td><td>{m['support']}</td></tr>"
        for label, m in metrics["per_class"].items())
    return ("<table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>"
            f"{rows}</table>")


def _thumbnail(image: Image.Image) -> str:
    copy = image.copy()
    copy.thumbnail((160, 160))
    buffer = io.BytesIO()
    copy.convert("RGB").save(buffer, format="JPEG", quality=80)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def precision_summary(quantization: dict[str, Any] | None) -> str:
    if not quantization:
        return ""
    if quantization.get("int8_accuracy") is None:
        return f"<p>INT8: not produced ({html.escape(str(quantization.get('reason')))}); the FP32 graph serves.</p>"
    decision = "kept: the predictor serves INT8" if quantization["kept"] else "refused: the predictor serves FP32"
    return (f"<p>INT8 (ONNX Runtime, evaluation split): accuracy <b>{quantization['int8_accuracy']:.4f}</b> against "
            f"FP32 {quantization['fp32_accuracy']:.4f}, tolerance {quantization['tolerance']:.2f}; {decision}.</p>")


def render(name: str, history: list[dict[str, Any]], metrics: dict[str, Any], mistakes: list[Mistake],
           quantization: dict[str, Any] | None = None, *, selection: str = "",
           split: dict[str, Any] | None = None) -> str:
    """The report as HTML text."""
    epochs_loss = [r["train_loss"] for r in history]
    train_acc = [r["train_accuracy"] for r in history]
    eval_acc = [r.get("eval_accuracy") for r in history]
    cards = "".join(
        f'<div class="card"><img alt="{html.escape(true)}" src="data:image/jpeg;base64,{_thumbnail(image)}">'
        f"<p>true: <b>{html.escape(true)}</b></p><ol>"
        + "".join(f"<li>{html.escape(label)}: {score:.3f}</li>" for label, score in scores[:3])
        + "</ol></div>"
        for image, true, scores in mistakes)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(name)}: evaluation report</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:1000px}}table{{border-collapse:collapse;margin:1rem 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}figure{{display:inline-block;margin:0 1rem 1rem 0}}
.card{{display:inline-block;width:180px;vertical-align:top;margin:4px;font-size:13px}}.cm td{{min-width:3em;text-align:center}}</style>
</head><body>
<h1>{html.escape(name)}</h1>
<p>Evaluation accuracy <b>{metrics['accuracy']:.4f}</b> on {metrics['eval_images']} images; macro F1 {metrics['macro_f1']:.4f}.</p>
<p>{html.escape(selection)}</p>
{split_summary(split)}
{precision_summary(quantization)}
<section><h2>Training curves</h2>
{chart("Training loss", {"train loss": epochs_loss})}
{chart("Accuracy", {"train": train_acc, "eval": eval_acc}, top=1.0)}</section>
<section><h2>Per class</h2>{per_class_table(metrics)}{confusion_table(metrics)}</section>
<section id="mistakes"><h2>Misclassified evaluation photos</h2>{cards or "<p>None: every evaluation photo was classified correctly.</p>"}</section>
</body></html>
"""
