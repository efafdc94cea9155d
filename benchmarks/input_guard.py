"""The input guard measured: acceptance of in-split chest X-rays, refusal of everything else.

The guard is fitted exactly as the training pipeline's ``fit_input_guard`` step fits it
(:func:`xray.ml.guard.fit_guard` on the training split, threshold on validation, target
0.99), on the model exported by ``benchmarks/full_data.py --export DIR`` and the same
patient-level split. Then:

- **acceptance** of the held-out test split (in-split: same collection as the training
  images), overall and per class; the target is >= 99 %;
- **refusal** of a corpus of things that are not chest X-rays this model can judge,
  assembled from what installed packages ship (target >= 95 %): natural photographs and
  crops of them (scikit-image, matplotlib), grayscale faces (scikit-image's LFW subset),
  CT/MR/dose slices (pydicom's test files), noise, rendered text, chart screenshots, and
  test X-rays inverted or rotated by 90/180/270 degrees. Each item goes the service's
  way: :func:`xray.ml.serving.decode_upload` (a decode refusal is a 400, counted apart),
  then the guard;
- the **baseline** is the same model without a guard, which answers every input: its
  share of PNEUMONIA labels on the corpus is reported;
- **acceptance under shift**: the test images under each acquisition change of
  ``xray/logic/shifts.py`` (a collection from another site looks like this; the guard should
  keep answering it);
- the guard's **cost** per image next to the forward pass, in the same run.

usage: python benchmarks/input_guard.py [--model DIR] [DATA_DIR] [--name RESULT]
"""

import argparse
import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import PROJECT_ROOT, SHARED_TRAIN, save
from PIL import Image, ImageDraw


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _natural_images() -> dict[str, bytes]:
    import matplotlib
    import skimage.data

    images: dict[str, bytes] = {}
    folder = Path(skimage.data.__file__).parent
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in (".png", ".jpg"):
            continue
        try:
            image = Image.open(path)
            image.load()
        except OSError:
            continue
        images[f"skimage/{path.name}"] = path.read_bytes()
        # Three crops per picture, at different places and scales (still not X-rays).
        width, height = image.size
        for k, (fx, fy, fs) in enumerate(((0.0, 0.0, 0.6), (0.3, 0.2, 0.5), (0.1, 0.4, 0.45))):
            side = int(min(width, height) * fs)
            if side < 48:
                continue
            x, y = int(fx * (width - side)), int(fy * (height - side))
            images[f"skimage/{path.stem}-crop{k}"] = _jpeg(image.crop((x, y, x + side, y + side)))
    sample = Path(matplotlib.get_data_path()) / "sample_data"
    for name in ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png", "logo2.png"):
        images[f"matplotlib/{name}"] = (sample / name).read_bytes()
    return images


def _faces(count: int = 40) -> dict[str, bytes]:
    import skimage.data

    faces = np.load(Path(skimage.data.__file__).parent / "lfw_subset.npy")[:count]
    out = {}
    for i, face in enumerate(faces):
        gray = (np.clip(face, 0, 1) * 255).astype(np.uint8)
        out[f"lfw_face/{i}"] = _png(np.asarray(Image.fromarray(gray).resize((128, 128))))
    return out


def _medical_not_cxr() -> dict[str, bytes]:
    from pydicom.data import get_testdata_file

    names = [
        "CT_small.dcm",
        "MR_small.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "JPEG2000.dcm",
        "liver_1frame.dcm",
        "rtdose_1frame.dcm",
        "SC_rgb.dcm",
        "SC_rgb_rle.dcm",
        "examples_palette.dcm",
    ]
    out = {}
    for name in names:
        path = get_testdata_file(name)
        if path:
            out[f"pydicom/{name}"] = Path(path).read_bytes()
    return out


def _noise(rng: np.random.Generator) -> dict[str, bytes]:
    out = {}
    for i in range(10):
        out[f"noise/uniform-gray-{i}"] = _png(rng.integers(0, 256, (224, 224), np.uint8))
        out[f"noise/uniform-rgb-{i}"] = _png(rng.integers(0, 256, (224, 224, 3), np.uint8))
        gauss = np.clip(rng.normal(128, 20 + 5 * i, (224, 224)), 0, 255).astype(np.uint8)
        out[f"noise/gaussian-{i}"] = _png(gauss)
        out[f"noise/flat-{i}"] = _png(np.full((224, 224), 25 * i, np.uint8))
    return out


def _text(rng: np.random.Generator) -> dict[str, bytes]:
    words = [
        "patient",
        "report",
        "chest",
        "pneumonia",
        "normal",
        "findings",
        "impression",
        "lungs",
        "clear",
    ]
    out = {}
    for i in range(20):
        dark = i % 2 == 1
        image = Image.new("L", (320, 240), 20 if dark else 235)
        draw = ImageDraw.Draw(image)
        for row in range(10):
            line = " ".join(rng.choice(words, 5))
            draw.text((8, 8 + 22 * row), line, fill=230 if dark else 10)
        out[f"text/{i}"] = _png(np.asarray(image))
    return out


def _screenshots(rng: np.random.Generator) -> dict[str, bytes]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    for i in range(15):
        fig, ax = plt.subplots(figsize=(4, 3), dpi=80)
        kind = i % 3
        if kind == 0:
            ax.plot(np.cumsum(rng.normal(size=100)))
        elif kind == 1:
            ax.bar(range(6), rng.uniform(1, 5, 6))
        else:
            ax.imshow(rng.normal(size=(20, 20)), cmap="gray")
        ax.set_title(f"Dashboard panel {i}")
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        plt.close(fig)
        out[f"screenshot/{i}"] = buffer.getvalue()
    return out


def _altered_xrays(test_images: list[bytes], rng: np.random.Generator) -> dict[str, bytes]:
    from xray.io.images import decode_image

    out = {}
    chosen = rng.choice(len(test_images), 50, replace=False)
    for k, i in enumerate(chosen):
        pixels = decode_image(test_images[i]).pixels
        out[f"inverted_xray/{k}"] = _png(255 - pixels)
        for turns in (1, 2, 3):
            out[f"rotated_{90 * turns}_xray/{k}"] = _png(
                np.ascontiguousarray(np.rot90(pixels, turns))
            )
    return out


def build_corpus(test_images: list[bytes], seed: int = 0) -> dict[str, bytes]:
    """Name -> file bytes; the name's first path part is the category."""
    rng = np.random.default_rng(seed)
    return {
        **_natural_images(),
        **_faces(),
        **_medical_not_cxr(),
        **_noise(rng),
        **_text(rng),
        **_screenshots(rng),
        **_altered_xrays(test_images, rng),
    }


def _prepared(images: list[bytes], size: int) -> np.ndarray:
    """The model inputs of encoded images, through the training input pipeline (as the
    ``fit_input_guard`` step prepares them)."""
    from xray.ml.preprocessing import make_dataset

    batches = make_dataset(images, None, size, batch_size=64, cache=False)
    return np.concatenate([batch.numpy() for batch in batches])


def _batches(pixels: np.ndarray, batch: int = 64) -> list[np.ndarray]:
    return [pixels[i : i + batch] for i in range(0, len(pixels), batch)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", nargs="?", default=str(SHARED_TRAIN))
    parser.add_argument("--model", default=str(PROJECT_ROOT / "models" / "after"))
    parser.add_argument("--name", default="input_guard")
    args = parser.parse_args()

    import tensorflow as tf

    from xray.io.loading import load_images
    from xray.logic.split import split_by_patient
    from xray.ml.guard import embedding_model, features_and_embeddings, fit_guard
    from xray.ml.model import load_model, model_image_size
    from xray.ml.serving import RequestError, decode_upload

    model_dir = Path(args.model)
    info = json.loads((model_dir / "model.json").read_text())
    model = load_model(model_dir / "model.keras")
    size = model_image_size(model)
    split = info["split"]
    splits, _ = split_by_patient(
        load_images(args.data),
        val_fraction=split["val_fraction"],
        test_fraction=split["test_fraction"],
        seed=split["seed"],
    )
    start = time.perf_counter()
    fitted = {
        name: features_and_embeddings(model, _batches(_prepared(splits[name].images, size)))
        for name in ("train", "val", "test")
    }
    guard = fit_guard(*fitted["train"][:2], *fitted["val"][:2])
    fit_seconds = time.perf_counter() - start

    test_features, test_embeddings, _ = fitted["test"]
    test_verdicts = [
        guard.check(f, float(d))
        for f, d in zip(test_features, guard.distances(test_embeddings), strict=True)
    ]
    labels = splits["test"].labels
    accepted = np.array([v.accepted for v in test_verdicts])
    acceptance = {
        "all": round(float(accepted.mean()), 4),
        "NORMAL": round(float(accepted[labels == 0].mean()), 4),
        "PNEUMONIA": round(float(accepted[labels == 1].mean()), 4),
        "images": len(labels),
        "refused_examples": [
            {"file": splits["test"].paths[i], "reason": test_verdicts[i].reason}
            for i in np.flatnonzero(~accepted)[:10]
        ],
    }

    # Acceptance under the acquisition changes of xray/logic/shifts.py (a data set from another
    # site is "shifted"; the guard should keep answering it): 300 test images per shift.
    from xray.logic.shifts import SHIFTS, shift_images

    sample_index = np.random.default_rng(1).choice(len(labels), 300, replace=False)
    sample_images = [splits["test"].images[i] for i in sample_index]
    under_shift = {}
    for shift in SHIFTS:
        shifted = _prepared(shift_images(sample_images, shift), size)
        f, e, _ = features_and_embeddings(model, _batches(shifted))
        ok = [guard.check(x, float(d)).accepted for x, d in zip(f, guard.distances(e), strict=True)]
        under_shift[shift.name] = round(float(np.mean(ok)), 4)

    corpus = build_corpus(splits["test"].images)
    rows: list[dict[str, Any]] = []
    decodable: list[tuple[str, np.ndarray]] = []
    for name, data in corpus.items():
        try:
            decodable.append((name, decode_upload(data, size, name)))
        except RequestError as error:
            rows.append({"item": name, "outcome": f"{error.status}", "reason": error.message})
    pixels = np.stack([p for _, p in decodable])
    features, embeddings, probabilities = features_and_embeddings(model, _batches(pixels))
    distances = guard.distances(embeddings)
    for (name, _), f, d, p in zip(decodable, features, distances, probabilities, strict=True):
        verdict = guard.check(f, float(d))
        rows.append(
            {
                "item": name,
                "outcome": "accepted" if verdict.accepted else "422",
                "reason": verdict.reason,
                "distance": round(float(d), 2),
                "probability_without_guard": round(float(p), 5),
            }
        )
    categories: dict[str, dict[str, Any]] = {}
    for row in rows:
        category = categories.setdefault(
            row["item"].split("/")[0], {"items": 0, "refused": 0, "pneumonia_without_guard": 0}
        )
        category["items"] += 1
        category["refused"] += row["outcome"] != "accepted"
        p = row.get("probability_without_guard")
        category["pneumonia_without_guard"] += p is not None and p >= info["threshold"]
    for category in categories.values():
        category["refusal"] = round(category["refused"] / category["items"], 4)
    refused = sum(row["outcome"] != "accepted" for row in rows)
    answered = [r for r in rows if "probability_without_guard" in r]

    # Cost: forward pass alone vs forward + embedding + statistics + distance, same images.
    sample = _prepared(splits["test"].images[:256], size)
    plain = tf.function(lambda x: model(x, training=False))
    twin_model = embedding_model(model)
    twin = tf.function(lambda x: twin_model(x, training=False))
    for function in (plain, twin):
        function(sample[:64])
    t0 = time.perf_counter()
    for batch in _batches(sample):
        plain(batch)
    forward_ms = (time.perf_counter() - t0) / len(sample) * 1000
    t0 = time.perf_counter()
    for batch in _batches(sample):
        _, embedding = twin(batch)
        guard.check_batch(batch, np.asarray(embedding))
    guarded_ms = (time.perf_counter() - t0) / len(sample) * 1000

    save(
        args.name,
        {
            "model": str(model_dir),
            "data": args.data,
            "split": split,
            "guard": guard.summary(),
            "fit_seconds": round(fit_seconds, 1),
            "in_split_test_acceptance": acceptance,
            "acceptance_under_shift": under_shift,
            "corpus": {
                "items": len(rows),
                "refused": refused,
                "refusal": round(refused / len(rows), 4),
                "refused_at_decode_400": sum(r["outcome"] == "400" for r in rows),
                "by_category": categories,
                "accepted_items": [
                    {k: r[k] for k in ("item", "probability_without_guard")}
                    for r in rows
                    if r["outcome"] == "accepted"
                ],
            },
            "baseline_without_guard": {
                "answered": len(answered) / len(rows),
                "labelled_pneumonia": round(
                    sum(r["probability_without_guard"] >= info["threshold"] for r in answered)
                    / len(rows),
                    4,
                ),
                "note": "the same model, no guard: every decodable input gets a label",
            },
            "cost_ms_per_image": {
                "forward_only": round(forward_ms, 2),
                "forward_with_guard": round(guarded_ms, 2),
                "ratio": round(guarded_ms / forward_ms, 2),
            },
        },
    )


if __name__ == "__main__":
    main()
