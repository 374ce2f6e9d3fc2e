"""The report's evaluation of the model `automl predict` uses, on the test split: for
classification its confusion matrix and per-class precision, recall, F1 and support
(scikit-learn's classification_report); for regression predicted against true values and
the residuals.

Everything comes from the `evaluation` part of the final document (final/finish.py stores it
at the end of the run), so the report stays a pure function of the store. Mid-run, and in
runs older than it, there is none: no section, no plot.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

from automl.files import finite_number
from automl.reporting.formatting import format_value
from automl.reporting.plots import _png
from automl.reporting.sections import Block, Figure, Paragraph, Section, Table

EVALUATION_PLOTS = {  # file stem -> caption
    "confusion_matrix": "Confusion matrix on the test split (rows: true class; columns: predicted class)",
    "predicted_vs_true": "Predicted against true values on the test split (the diagonal is a perfect model)",
    "residuals": "Residuals (predicted − true) against the predicted value on the test split",
}
ANNOTATED_CLASSES = 20  # counts written in the cells up to this many classes; colour alone beyond
NAME_CHARS = 18  # of a class name on an axis


def draw_evaluation_plots(r: dict[str, Any]) -> dict[str, bytes]:
    """PNG bytes by file stem, of the plots the run's evaluation has data for."""
    evaluation = r.get("evaluation")
    if not evaluation:
        return {}
    if evaluation.get("task") == "classification":
        matrix = evaluation.get("confusion")
        return {"confusion_matrix": confusion_plot(matrix, evaluation["classes"])} if matrix else {}
    y_true, y_pred = _pairs(evaluation)
    if not y_true:
        return {}
    return {"predicted_vs_true": predicted_vs_true_plot(y_true, y_pred), "residuals": residual_plot(y_true, y_pred)}


def _pairs(evaluation: dict[str, Any]) -> tuple[list[float], list[float]]:
    """The stored (true, predicted) values, without a pair a diverged model left non-finite (null)."""
    pairs = [(t, p) for t, p in zip(evaluation.get("y_true") or [], evaluation.get("y_pred") or [])
             if finite_number(t) is not None and finite_number(p) is not None]
    return [t for t, _ in pairs], [p for _, p in pairs]


def _axis_name(name: str) -> str:
    short = name if len(name) <= NAME_CHARS else name[:NAME_CHARS - 1] + "…"
    return short.replace("$", r"\$")  # a pair of $ would be read as matplotlib math


def confusion_plot(matrix: Sequence[Sequence[int]], classes: Sequence[str]) -> bytes:
    from matplotlib.figure import Figure as MplFigure

    n = len(matrix)
    side = min(9.0, 3.0 + 0.35 * n)
    fig = MplFigure(figsize=(side + 2.2, side), dpi=100, layout="constrained")  # room for names and the bar
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, shrink=0.8, label="test rows")
    names = [_axis_name(str(c)) for c in classes]
    ax.set_xticks(range(n), names, rotation=45 if n > 3 else 0, ha="right" if n > 3 else "center")
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if n <= ANNOTATED_CLASSES:
        top = max((v for row in matrix for v in row), default=0)
        for i, row in enumerate(matrix):
            for j, value in enumerate(row):
                ax.text(j, i, str(value), ha="center", va="center", fontsize=8,
                        color="white" if value > top / 2 else "black")
    return _png(fig)


def _scatter(x: Sequence[float], y: Sequence[float], *, xlabel: str, ylabel: str):
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(5.5, 4.2), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(x, y, s=10, alpha=0.5 if len(x) < 2000 else 0.2, color="tab:blue")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def predicted_vs_true_plot(y_true: Sequence[float], y_pred: Sequence[float]) -> bytes:
    fig, ax = _scatter(y_true, y_pred, xlabel="true value", ylabel="predicted value")
    low, high = min(min(y_true), min(y_pred)), max(max(y_true), max(y_pred))
    ax.plot([low, high], [low, high], color="tab:gray", linewidth=1, linestyle="--")
    return _png(fig)


def residual_plot(y_true: Sequence[float], y_pred: Sequence[float]) -> bytes:
    residuals = [p - t for t, p in zip(y_true, y_pred)]
    fig, ax = _scatter(y_pred, residuals, xlabel="predicted value", ylabel="residual (predicted − true)")
    ax.axhline(0.0, color="tab:gray", linewidth=1, linestyle="--")
    return _png(fig)


def evaluation_section(r: dict[str, Any], plotted: Iterable[str]) -> Section | None:
    """The section, or None before the run's end (and for runs older than the evaluation)."""
    evaluation = r.get("evaluation")
    if not evaluation:
        return None
    plotted = set(plotted)
    blocks: list[Block] = [Paragraph(f"The model `automl predict` uses: {evaluation['label']}, on the "
                                     f"{evaluation['rows']} test rows (no choice in the run looked at them).")]
    if evaluation.get("task") == "classification":
        blocks += _classification_blocks(evaluation, plotted)
    else:
        blocks += _regression_blocks(evaluation, plotted)
    return Section("Evaluation on the test split", blocks)


def _figures(plotted: set[str], *stems: str) -> list[Block]:
    return [Figure(stem, EVALUATION_PLOTS[stem]) for stem in stems if stem in plotted]


def _classification_blocks(evaluation: dict[str, Any], plotted: set[str]) -> list[Block]:
    per_class = evaluation.get("per_class") or {}
    blocks = _figures(plotted, "confusion_matrix")
    if evaluation.get("confusion") is None:
        blocks.append(Paragraph(f"No confusion matrix: {len(evaluation['classes'])} classes are too many to show."))

    def row(name: str, scores: dict[str, float]) -> tuple[str, ...]:
        return (name, format_value(scores.get("precision")), format_value(scores.get("recall")),
                format_value(scores.get("f1-score")), str(int(scores.get("support") or 0)))

    rows = [row(name, per_class[name]) for name in [*evaluation["classes"], "macro avg", "weighted avg"]
            if isinstance(per_class.get(name), dict)]
    blocks.append(Table(("Class", "Precision", "Recall", "F1", "Support"), rows))
    if "accuracy" in per_class:
        blocks.append(Paragraph(f"Accuracy {format_value(per_class['accuracy'])}. Precision: of the rows predicted "
                                "as the class, the share that are; recall: of the rows of the class, the share found."))
    return blocks


def _regression_blocks(evaluation: dict[str, Any], plotted: set[str]) -> list[Block]:
    y_true, y_pred = _pairs(evaluation)
    blocks = _figures(plotted, "predicted_vs_true", "residuals")
    stored = evaluation.get("stored", len(y_true))
    if stored < evaluation["rows"]:
        blocks.append(Paragraph(f"The plots show a random {stored} of the {evaluation['rows']} test rows; "
                                "the test scores above are on every row."))
    if y_true:
        residuals = [p - t for t, p in zip(y_true, y_pred)]
        blocks.append(Paragraph(f"Mean residual {format_value(sum(residuals) / len(residuals))} (near 0: no bias); "
                                f"largest absolute residual {format_value(max(abs(e) for e in residuals))}."))
    return blocks
