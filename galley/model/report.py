"""The evaluation report: one self-contained HTML file that opens from the bucket in any browser.

Loss and accuracy curves per epoch, the confusion matrix as a heat map, the per-class table,
and a few misclassified evaluation photos with their scores. No scripts, no external assets.

The trainer writes it into the package and the console draws its live curves and tables with the
same functions, so both sit here, beside the package format. Everything interpolated comes from a
package, which anyone with write access to its bucket can craft: every value is escaped (text) or
formatted as a number, and each function returns :class:`markupsafe.Markup`, so a template shows
it without ``|safe``.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any, NamedTuple

from markupsafe import Markup
from PIL import Image


class Mistake(NamedTuple):
    """A misclassified evaluation photo: the image, its true label, and the ranked scores."""

    image: Image.Image
    true: str
    scores: list[tuple[str, float]]


def _text(value: object) -> str:
    """Any value as escaped HTML text (quotes included, so it is safe in an attribute too)."""
    return html.escape(str(value), quote=True)


def number(value: object, spec: str = "") -> str:
    """A number formatted with ``spec``; anything else (a crafted package) as escaped text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return format(value, spec)
        except (OverflowError, ValueError):  # an integer beyond a float's range, from a crafted package
            return _text(str(value)[:40]) + "…"
    return _text(str(value)[:200])


def _fraction(count: object, total: float) -> float:
    """``count / total`` for shading a cell, 0 for a value that is not a number."""
    if isinstance(count, int | float) and not isinstance(count, bool) and total:
        try:
            return max(0.0, min(1.0, count / total))
        except OverflowError:
            return 0.0
    return 0.0


def split_summary(split: dict[str, Any] | None) -> Markup:
    if not split or not isinstance(split, dict):
        return Markup("")
    groups = split.get("near_duplicate_groups")
    if groups is None:
        grouping = "Near-duplicate search was off; the split went photo by photo."
    else:
        grouping = (f"Near-duplicate search found <b>{number(groups)}</b> groups holding "
                    f"{number(split.get('near_duplicate_photos', 0))} photos; each group is on one side of the "
                    "split, so evaluation photos show things training never saw.")
        if split.get("straddling_groups"):
            grouping += (f" <b>Warning:</b> the data set's own usage puts {number(split['straddling_groups'])} of "
                         "them on both sides; evaluation accuracy is optimistic for those.")
    return Markup(f"<p>{number(split.get('train_images', 0))} training and {number(split.get('eval_images', 0))} "
                  f"evaluation photos; {number(split.get('skipped_images', 0))} unreadable photos skipped. "
                  f"{grouping}</p>")


def _polyline(values: list[float | None], width: int, height: int, top: float) -> str:
    points = [(i, v) for i, v in enumerate(values) if isinstance(v, int | float)]
    span = max(1, len(values) - 1)
    return " ".join(f"{40 + i * (width - 60) / span:.1f},{height - 25 - (v / top) * (height - 45):.1f}"
                    for i, v in points)


def chart(title: str, series: dict[str, list[float | None]], top: float | None = None) -> Markup:
    width, height = 460, 220
    values = [v for s in series.values() for v in s if isinstance(v, int | float)]
    top = top or (max(values) * 1.1 if values else 1.0) or 1.0
    colours = ["#2563eb", "#dc2626", "#16a34a"]
    lines = "".join(
        f'<polyline fill="none" stroke="{colours[i % 3]}" stroke-width="2" data-series="{_text(name)}" '
        f'data-points="{sum(isinstance(v, int | float) for v in s)}" points="{_polyline(s, width, height, top)}"/>'
        f'<text x="{width - 150}" y="{20 + 16 * i}" fill="{colours[i % 3]}" font-size="12">{_text(name)}</text>'
        for i, (name, s) in enumerate(series.items())
    )
    return Markup(
        f'<figure><figcaption>{_text(title)}</figcaption><svg width="{width}" height="{height}" '
        f'role="img"><line x1="40" y1="{height - 25}" x2="{width - 20}" y2="{height - 25}" stroke="#999"/>'
        f'<line x1="40" y1="20" x2="40" y2="{height - 25}" stroke="#999"/>'
        f'<text x="4" y="24" font-size="11">{top:.2f}</text><text x="4" y="{height - 25}" font-size="11">0</text>'
        f'{lines}<text x="{width / 2 - 20}" y="{height - 6}" font-size="11">epoch</text></svg></figure>')


def confusion_table(metrics: dict[str, Any]) -> Markup:
    confusion = metrics.get("confusion_matrix")
    labels = confusion.get("labels") if isinstance(confusion, dict) else None
    matrix = confusion.get("matrix") if isinstance(confusion, dict) else None
    if not isinstance(labels, list) or not isinstance(matrix, list) or not all(isinstance(r, list) for r in matrix):
        return Markup("")
    head = "".join(f"<th>{_text(label)}</th>" for label in labels)
    rows = []
    for label, row in zip(labels, matrix, strict=False):
        total = sum(c for c in row if isinstance(c, int | float) and not isinstance(c, bool)) or 1
        cells = "".join(
            f'<td style="background:rgba(37,99,235,{_fraction(count, total):.2f});'
            f'color:{"#fff" if _fraction(count, total) > .5 else "#000"}">{number(count)}</td>' for count in row)
        rows.append(f"<tr><th>{_text(label)}</th>{cells}</tr>")
    return Markup(f'<table class="cm"><caption>Confusion matrix (rows: true class, columns: predicted)</caption>'
                  f"<tr><th></th>{head}</tr>{''.join(rows)}</table>")


def per_class_table(metrics: dict[str, Any]) -> Markup:
    per_class = metrics.get("per_class")
    if not isinstance(per_class, dict):
        return Markup("")
    rows = "".join(
        f"<tr><td>{_text(label)}</td><td>{number(m.get('precision'), '.3f')}</td>"
        f"<td>{number(m.get('recall'), '.3f')}</td><td>{number(m.get('f1'), '.3f')}</td>"
        f"<td>{number(m.get('support'))}</td></tr>"
        for label, m in per_class.items() if isinstance(m, dict))
    return Markup("<table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>"
                  f"{rows}</table>")


def _thumbnail(image: Image.Image) -> str:
    copy = image.copy()
    copy.thumbnail((160, 160))
    buffer = io.BytesIO()
    copy.convert("RGB").save(buffer, format="JPEG", quality=80)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def precision_summary(quantization: dict[str, Any] | None) -> Markup:
    if not quantization or not isinstance(quantization, dict):
        return Markup("")
    if quantization.get("int8_accuracy") is None:
        return Markup(f"<p>INT8: not produced ({_text(quantization.get('reason'))}); the FP32 graph serves.</p>")
    decision = "kept: the predictor serves INT8" if quantization.get("kept") else "refused: the predictor serves FP32"
    return Markup(
        f"<p>INT8 (ONNX Runtime, evaluation split): accuracy <b>{number(quantization['int8_accuracy'], '.4f')}</b> "
        f"against FP32 {number(quantization.get('fp32_accuracy'), '.4f')}, tolerance "
        f"{number(quantization.get('tolerance'), '.2f')}; {decision}.</p>")


def render(name: str, history: list[dict[str, Any]], metrics: dict[str, Any], mistakes: list[Mistake],
           quantization: dict[str, Any] | None = None, *, selection: str = "",
           split: dict[str, Any] | None = None) -> Markup:
    """The report as HTML text."""
    epochs_loss = [r["train_loss"] for r in history]
    train_acc = [r["train_accuracy"] for r in history]
    eval_acc = [r.get("eval_accuracy") for r in history]
    cards = "".join(
        f'<div class="card"><img alt="{_text(true)}" src="data:image/jpeg;base64,{_thumbnail(image)}">'
        f"<p>true: <b>{_text(true)}</b></p><ol>"
        + "".join(f"<li>{_text(label)}: {number(score, '.3f')}</li>" for label, score in scores[:3])
        + "</ol></div>"
        for image, true, scores in mistakes)
    return Markup(f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{_text(name)}: evaluation report</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:1000px}}table{{border-collapse:collapse;margin:1rem 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}figure{{display:inline-block;margin:0 1rem 1rem 0}}
.card{{display:inline-block;width:180px;vertical-align:top;margin:4px;font-size:13px}}.cm td{{min-width:3em;text-align:center}}</style>
</head><body>
<h1>{_text(name)}</h1>
<p>Evaluation accuracy <b>{number(metrics['accuracy'], '.4f')}</b> on {number(metrics['eval_images'])} images; macro F1 {number(metrics['macro_f1'], '.4f')}.</p>
<p>{_text(selection)}</p>
{split_summary(split)}
{precision_summary(quantization)}
<section><h2>Training curves</h2>
{chart("Training loss", {"train loss": epochs_loss})}
{chart("Accuracy", {"train": train_acc, "eval": eval_acc}, top=1.0)}</section>
<section><h2>Per class</h2>{per_class_table(metrics)}{confusion_table(metrics)}</section>
<section id="mistakes"><h2>Misclassified evaluation photos</h2>{cards or "<p>None: every evaluation photo was classified correctly.</p>"}</section>
</body></html>
""")
