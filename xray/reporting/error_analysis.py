"""Where the model goes wrong: results per PNEUMONIA subtype and its most confident errors.

The Kaggle file names say whether a PNEUMONIA image is bacterial or viral
(``person1000_bacteria_2931.jpeg``, ``person1_virus_6.jpeg``); viral pneumonia is the
subtler finding, so a model can detect one far better than the other while the overall
sensitivity hides it. The most confident false positives and false negatives, shown as
images, are where a reader looks for labelling errors and shortcuts.
"""

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from xray.logic.constants import CLASS_NAMES

SUBTYPES = ("bacteria", "virus")
_SUBTYPE = re.compile(r"(?<![a-z])(bacteria|virus)(?![a-z])", re.IGNORECASE)


def _file_name(path: str) -> str:
    """The last component of a local path, ``s3://``/``gs://`` URI or Windows path."""
    return re.split(r"[/\\]", str(path))[-1]


def short_name(path: str, width: int = 24) -> str:
    """The file name of ``path`` in at most ``width`` characters, for figure titles.

    A name that is too long loses its extension first, then its middle (``…``).
    """
    name = _file_name(path)
    if len(name) > width and "." in name[1:]:
        name = name.rsplit(".", 1)[0]
    if len(name) <= width:
        return name
    head = (width - 1) // 2
    return f"{name[:head]}…{name[-(width - 1 - head) :]}"


def subtype_of(path: str) -> str | None:
    """``"bacteria"`` or ``"virus"`` from a Kaggle file name, or None when it names neither.

    Only the file name is read (case-insensitive), never the folders above it.
    """
    match = _SUBTYPE.search(_file_name(path))
    return match.group(1).lower() if match else None


def _checked(
    y_true: Any, probabilities: Any, caller: str, paths: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).astype(int).ravel()
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    if len(y) != len(p) or (paths is not None and len(paths) != len(y)):
        counts = f"{len(y)} labels and {len(p)} probabilities"
        if paths is not None:
            counts += f" and {len(paths)} paths"
        raise ValueError(f"{caller} needs one label and probability per image; got {counts}.")
    return y, p


def subtype_results(
    paths: Sequence[str], y_true: Any, probabilities: Any, threshold: float
) -> dict[str, dict[str, float | int]]:
    """Detection per PNEUMONIA subtype, and specificity on the NORMAL images.

    An image is predicted PNEUMONIA when P(PNEUMONIA) >= ``threshold``.

    Args:
        paths: File path or name per image (the subtype is parsed from the file name).
        y_true: Labels (1 = PNEUMONIA).
        probabilities: P(PNEUMONIA) per image.
        threshold: The operating threshold.

    Returns:
        ``{"bacteria": {...}, "virus": {...}, "NORMAL": {...}}``, each subtype as ``{"n",
        "detected", "sensitivity", "mean_probability"}`` over the PNEUMONIA images whose
        name carries it, and NORMAL as ``{"n", "specificity", "mean_probability"}``.
        A subtype without images is left out, as is NORMAL without NORMAL images, so when
        no file name carries a subtype the result holds NORMAL only, or nothing.
        PNEUMONIA images without a subtype in their name count in no entry.

    Raises:
        ValueError: When the inputs do not have one entry per image.
    """
    y, p = _checked(y_true, probabilities, "subtype_results", paths)
    predicted = p >= threshold
    subtypes = np.array([subtype_of(path) for path in paths], dtype=object)
    results: dict[str, dict[str, float | int]] = {}
    for subtype in SUBTYPES:
        chosen = (y == 1) & (subtypes == subtype)
        n = int(chosen.sum())
        if n:
            detected = int(predicted[chosen].sum())
            results[subtype] = {
                "n": n,
                "detected": detected,
                "sensitivity": detected / n,
                "mean_probability": float(p[chosen].mean()),
            }
    normal = y == 0
    if normal.any():
        results[CLASS_NAMES[0]] = {
            "n": int(normal.sum()),
            "specificity": float((~predicted[normal]).mean()),
            "mean_probability": float(p[normal].mean()),
        }
    return results


def confident_errors(
    y_true: Any, probabilities: Any, threshold: float, k: int = 6
) -> dict[str, list[int]]:
    """Indices of the most confident misclassifications, most confident first.

    Args:
        y_true: Labels (1 = PNEUMONIA).
        probabilities: P(PNEUMONIA) per image.
        threshold: The operating threshold (PNEUMONIA when P >= threshold).
        k: At most this many of each kind.

    Returns:
        ``{"false_positives": [...], "false_negatives": [...]}``: NORMAL images predicted
        PNEUMONIA by decreasing P, and PNEUMONIA images predicted NORMAL by increasing P.
        Ties keep the order of the images.

    Raises:
        ValueError: For mismatched inputs or a negative ``k``.
    """
    if k < 0:
        raise ValueError(f"k must be 0 or more, not {k}.")
    y, p = _checked(y_true, probabilities, "confident_errors")
    predicted = p >= threshold
    false_positives = np.flatnonzero((y == 0) & predicted)
    false_negatives = np.flatnonzero((y == 1) & ~predicted)
    return {
        "false_positives": [
            int(i) for i in false_positives[np.argsort(-p[false_positives], kind="stable")][:k]
        ],
        "false_negatives": [
            int(i) for i in false_negatives[np.argsort(p[false_negatives], kind="stable")][:k]
        ],
    }


def _thumbnail(data: bytes, size: int) -> np.ndarray:
    """The image as the shared preprocessing decodes it, at ``size`` pixels, in gray."""
    from PIL import Image

    from xray.ml.preprocessing import prepare_image

    return np.asarray(Image.fromarray(prepare_image(data, size)).convert("L"))


def error_grid(
    images: Sequence[bytes],
    paths: Sequence[str],
    y_true: Any,
    probabilities: Any,
    threshold: float,
    k: int = 6,
) -> bytes:
    """The most confident false positives and false negatives as one PNG.

    Two rows (false positives, then false negatives) of up to ``k`` images each, as the
    shared preprocessing decodes them, each titled with its shortened file name and
    P(PNEUMONIA); a row without errors says so.

    Args:
        images: Encoded image bytes, one per label.
        paths: File path or name per image.
        y_true: Labels (1 = PNEUMONIA).
        probabilities: P(PNEUMONIA) per image.
        threshold: The operating threshold.
        k: Images per row at most (at least 1).

    Returns:
        PNG bytes (about 120 px per thumbnail; well under 1 MB for ``k = 6``).

    Raises:
        ValueError: For mismatched inputs or ``k < 1``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from xray.reporting.plots import _figure_to_png

    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}.")
    y, p = _checked(y_true, probabilities, "error_grid", paths)
    if len(images) != len(y):
        raise ValueError(f"error_grid needs one image per label; got {len(images)} for {len(y)}.")
    errors = confident_errors(y, p, threshold, k)
    rows = (
        ("false_positives", f"Most confident false positives (true NORMAL, P ≥ {threshold:.3f})"),
        (
            "false_negatives",
            f"Most confident false negatives (true PNEUMONIA, P < {threshold:.3f})",
        ),
    )
    fig = plt.figure(figsize=(1.45 * k, 4.0))
    for subfig, (key, title) in zip(fig.subfigures(2, 1), rows, strict=True):
        subfig.suptitle(title, fontsize=9)
        axes = np.atleast_1d(subfig.subplots(1, k))
        for ax in axes:
            ax.set_axis_off()
        if not errors[key]:
            axes[0].text(0, 0.5, "none", fontsize=9, va="center", transform=axes[0].transAxes)
        for ax, index in zip(axes, errors[key], strict=False):
            ax.imshow(_thumbnail(images[index], 120), cmap="gray", vmin=0, vmax=255)
            ax.set_title(f"{short_name(paths[index])}\nP = {p[index]:.3f}", fontsize=6)
    return _figure_to_png(fig)


def gradcam_examples(
    model: Any,
    images: Sequence[bytes],
    labels: Any,
    paths: Sequence[str],
    per_class: int = 3,
    image_size: int | None = None,
    seed: int = 0,
) -> bytes:
    """Grad-CAM of a few images of each class, as one PNG for the dashboard.

    Each image goes through exactly what the service's ``/explain`` does:
    :func:`xray.ml.preprocessing.prepare_image`, :func:`xray.ml.gradcam.gradcam` and
    :func:`xray.ml.gradcam.overlay_png`.
    One row per class; per image, the prepared image and its overlay side by side.

    Args:
        model: A model built by :func:`xray.ml.model.build_model` (calibrated or not).
        images: Encoded image bytes.
        labels: Class index per image (1 = PNEUMONIA).
        paths: File path or name per image, for the titles.
        per_class: Images of each class to show (fewer when a class has fewer).
        image_size: Side length to prepare images at; the model's own by default.
        seed: Which images are picked; the same inputs and seed pick the same ones.

    Returns:
        PNG bytes (well under 1.5 MB for ``per_class = 3``).

    Raises:
        ValueError: For mismatched inputs or ``per_class < 1``.
    """
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from xray.logic.constants import CLASS_NAMES
    from xray.ml.gradcam import gradcam, overlay_png
    from xray.ml.model import model_image_size
    from xray.ml.preprocessing import prepare_image
    from xray.reporting.plots import _figure_to_png

    y = np.asarray(labels).astype(int).ravel()
    if not len(images) == len(y) == len(paths):
        raise ValueError(
            f"gradcam_examples needs one label and path per image; got {len(images)} images, "
            f"{len(y)} labels and {len(paths)} paths."
        )
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, not {per_class}.")
    size = image_size or model_image_size(model)
    rng = np.random.default_rng(seed)
    fig = plt.figure(figsize=(3.4 * per_class, 4.6))
    for label, subfig in enumerate(fig.subfigures(2, 1)):
        members = np.flatnonzero(y == label)
        chosen = np.sort(rng.choice(members, min(per_class, len(members)), replace=False))
        subfig.suptitle(f"True {CLASS_NAMES[label]}", fontsize=9)
        axes = np.atleast_1d(subfig.subplots(1, 2 * per_class))
        for ax in axes:
            ax.set_axis_off()
        if not len(chosen):
            axes[0].text(0, 0.5, "none", fontsize=9, va="center", transform=axes[0].transAxes)
        for pair, index in enumerate(chosen):
            image = prepare_image(images[index], size)
            heatmap, probability = gradcam(model, image)
            overlay = np.asarray(Image.open(io.BytesIO(overlay_png(image, heatmap))))
            axes[2 * pair].imshow(image)
            axes[2 * pair].set_title(short_name(paths[index]), fontsize=6)
            axes[2 * pair + 1].imshow(overlay)
            axes[2 * pair + 1].set_title(f"Grad-CAM, P = {probability:.3f}", fontsize=6)
    return _figure_to_png(fig)
