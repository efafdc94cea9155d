"""Evaluation and training plots rendered to PNG (matplotlib, no display needed)."""

import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from xray.logic.constants import CLASS_NAMES
from xray.logic.metrics import curves


@dataclass(frozen=True)
class PngFigure:
    """A rendered figure: PNG bytes and a title (shown in the ZenML dashboard)."""

    png: bytes
    title: str


def _figure_to_png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def evaluation_figure(
    y_true: np.ndarray, probabilities: np.ndarray, metrics: dict[str, Any]
) -> bytes:
    """Confusion matrix, ROC curve and precision-recall curve side by side, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = curves(y_true, probabilities)
    fig, (ax_cm, ax_roc, ax_pr) = plt.subplots(1, 3, figsize=(13, 4))
    matrix = np.array([[metrics["tn"], metrics["fp"]], [metrics["fn"], metrics["tp"]]])
    ax_cm.imshow(matrix, cmap="Blues")
    for (row, col), value in np.ndenumerate(matrix):
        color = "white" if value > matrix.max() / 2 else "black"
        ax_cm.text(col, row, str(value), ha="center", va="center", color=color, fontsize=14)
    ax_cm.set_xticks([0, 1], CLASS_NAMES)
    ax_cm.set_yticks([0, 1], CLASS_NAMES)
    ax_cm.set_xlabel("predicted")
    ax_cm.set_ylabel("true")
    ax_cm.set_title(f"Confusion matrix (threshold {metrics['threshold']:.3f})")

    ax_roc.plot(c["fpr"], c["tpr"], label=f"AUC {metrics['roc_auc']:.3f}")
    ax_roc.plot([0, 1], [0, 1], "--", color="grey", linewidth=1)
    ax_roc.scatter(
        [1 - metrics["specificity"]],
        [metrics["sensitivity"]],
        color="red",
        zorder=3,
        label="operating point",
    )
    ax_roc.set_xlabel("1 - specificity")
    ax_roc.set_ylabel("sensitivity")
    ax_roc.set_title("ROC (test)")
    ax_roc.legend(loc="lower right")

    ax_pr.plot(c["recall"], c["precision"], label=f"AP {metrics['pr_auc']:.3f}")
    ax_pr.set_xlabel("recall (sensitivity)")
    ax_pr.set_ylabel("precision")
    ax_pr.set_ylim(0, 1.02)
    ax_pr.set_title("Precision-recall (test)")
    ax_pr.legend(loc="lower left")
    return _figure_to_png(fig)


def history_figure(history: dict[str, list[Any]]) -> bytes:
    """Training and validation loss and AUC per epoch, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    for ax, key in zip(axes, ("loss", "auc"), strict=True):
        if key in history:
            ax.plot(epochs, history[key], marker="o", label=f"train {key}")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], marker="o", label=f"val {key}")
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend()
    return _figure_to_png(fig)


def reliability_figure(calibration: dict[str, Any]) -> bytes:
    """Reliability diagram of a :func:`xray.logic.metrics.calibration_summary`, as PNG.

    Top: the fraction of PNEUMONIA images against the mean predicted P(PNEUMONIA) in each
    non-empty bin, with the diagonal of perfect calibration. Bottom: images per bin.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = calibration["bins"]
    filled = [b for b in bins if b["count"] > 0]
    fig, (ax_rel, ax_count) = plt.subplots(
        2, 1, figsize=(5, 5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    ax_rel.plot([0, 1], [0, 1], "--", color="grey", linewidth=1, label="perfect calibration")
    ax_rel.plot(
        [b["mean_probability"] for b in filled],
        [b["fraction_positive"] for b in filled],
        marker="o",
        label="model",
    )
    ax_rel.set_xlim(0, 1)
    ax_rel.set_ylim(0, 1)
    ax_rel.set_ylabel("fraction PNEUMONIA")
    ax_rel.set_title(
        f"Reliability (test): ECE {calibration['ece']:.3f}, Brier {calibration['brier']:.3f}"
    )
    ax_rel.legend(loc="upper left")

    ax_count.bar(
        [b["lower"] for b in bins],
        [b["count"] for b in bins],
        width=[b["upper"] - b["lower"] for b in bins],
        align="edge",
        color="lightsteelblue",
        edgecolor="grey",
    )
    ax_count.set_xlabel("mean predicted P(PNEUMONIA)")
    ax_count.set_ylabel("images")
    return _figure_to_png(fig)


def data_overview_figure(splits: dict[str, Any], per_class: int = 4, seed: int = 0) -> bytes:
    """Images and patients per class in every split (bars), and a few training images of
    each class with their patient ids, as PNG.

    Args:
        splits: Split name -> :class:`xray.logic.dataset.ImageDataset`.
        per_class: Training images shown per class.
        seed: Which images are shown.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    names = list(splits)
    fig = plt.figure(figsize=(2.0 * per_class + 4, 2.2 * len(CLASS_NAMES)))
    grid = fig.add_gridspec(len(CLASS_NAMES), per_class + 2)
    ax = fig.add_subplot(grid[:, :2])
    x = np.arange(len(names))
    for offset, (label, name) in zip((-0.2, 0.2), enumerate(CLASS_NAMES), strict=True):
        counts = [int((splits[s].labels == label).sum()) for s in names]
        bars = ax.bar(x + offset, counts, width=0.4, label=name)
        ax.bar_label(bars, fontsize=8)
    ax.set_xticks(x, [f"{s}\n{splits[s].patient_count()} patients" for s in names])
    ax.set_ylabel("images")
    ax.set_title("Images per class and split")
    ax.legend(fontsize=8)
    train = splits.get("train") or next(iter(splits.values()))
    rng = np.random.default_rng(seed)
    for row, name in enumerate(CLASS_NAMES):
        indices = np.flatnonzero(train.labels == row)
        chosen = rng.choice(indices, size=min(per_class, len(indices)), replace=False)
        for col in range(per_class):
            axis = fig.add_subplot(grid[row, col + 2])
            axis.axis("off")
            if col >= len(chosen):
                continue
            i = int(chosen[col])
            with Image.open(io.BytesIO(train.images[i])) as image:
                thumb = image.convert("L")
                thumb.thumbnail((160, 160))
                axis.imshow(np.asarray(thumb), cmap="gray")
            axis.set_title(f"{name}\n{train.patients[i][:22]}", fontsize=7)
    return _figure_to_png(fig)


def stack_pngs(pngs: list[bytes]) -> bytes:
    """PNG images one below the other (white background), as one PNG."""
    from PIL import Image

    images = [Image.open(io.BytesIO(png)).convert("RGB") for png in pngs]
    width = max(image.width for image in images)
    canvas = Image.new("RGB", (width, sum(image.height for image in images)), "white")
    top = 0
    for image in images:
        canvas.paste(image, (0, top))
        top += image.height
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()
