"""The training pipeline: load -> split -> validate -> train -> calibrate -> evaluate ->
fit the input guard -> analyze errors -> release record -> model card -> package ->
register -> promote."""

from pathlib import Path

from zenml import Model, pipeline

from steps.training.analyze_errors import analyze_errors
from steps.training.build_bento import build_bento
from steps.training.calibrate_model import calibrate_model
from steps.training.check_data_drift import check_data_drift
from steps.training.check_data_quality import check_data_quality
from steps.training.compute_image_statistics import compute_image_statistics
from steps.training.create_model_card import create_model_card
from steps.training.evaluate_external import evaluate_external
from steps.training.evaluate_model import evaluate_model
from steps.training.fit_input_guard import fit_input_guard
from steps.training.load_dataset import load_dataset
from steps.training.load_external_sets import load_external_sets
from steps.training.make_release_record import make_release_record
from steps.training.package_model import package_model
from steps.training.promote_model import promote_model
from steps.training.register_model import register_model
from steps.training.split_dataset import split_dataset
from steps.training.train_model import train_model
from steps.training.validation_gate import validation_gate
from xray.io.loading import listing_version
from xray.io.paths import resolve_location
from xray.logic.constants import MODEL_NAME

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def data_listing(data_dir: str) -> str:
    """The listing version of a data folder (relative paths: relative to the project)."""
    return listing_version(resolve_location(data_dir, PROJECT_ROOT))


MODEL = Model(
    name=MODEL_NAME,
    description="Chest X-ray NORMAL vs PNEUMONIA classifier. Not a medical device.",
    license="Apache-2.0 (code); trained on CC BY 4.0 data (Kermany et al., 2018)",
    tags=["chest-xray", "pneumonia", "keras"],
)
"""The ZenML Model every training run adds a version to (a run config's ``model`` may
name another)."""


@pipeline(name="training", model=MODEL)
def training_pipeline(
    data_dir: str,
    listing: str = "",
    extra_data_dirs: list[str] | None = None,
    external_test_dirs: list[str] | None = None,
) -> None:
    """Trains, evaluates, registers and (when it is better) promotes a pneumonia classifier.

    Training starts only after the data quality and drift gates pass (or only warn). The
    new model version becomes ``production`` only if it passes the promotion gates and
    is not worse than the current production model on this run's test images.

    Args:
        data_dir: Data folder (local, ``s3://`` or ``gs://``); Kaggle or single-folder
            layout. A relative path is relative to the project root (the shipped sample
            is ``data/sample``; inside a cloud stack's image it is there too).
        listing: Version of the folder listings. By default it is computed here, when
            the pipeline is built, so that the load step's cache is invalidated
            whenever files change.
        extra_data_dirs: More data folders merged into the data set (a retrain on new
            data after drift: the production model's folders plus the new one).
        external_test_dirs: Labelled folders from another site or collection, scored by
            the final model at the final threshold and never used for any choice.
    """
    extra = list(extra_data_dirs or [])
    if not listing:
        listing = "+".join(data_listing(d) for d in [data_dir, *extra])
    dataset, fingerprint = load_dataset(
        data_dir=data_dir, listing_version=listing, extra_data_dirs=extra
    )
    train_set, val_set, test_set, split_summary = split_dataset(dataset)
    statistics, _overview = compute_image_statistics(train_set, val_set, test_set)
    _quality_report, quality = check_data_quality(dataset, statistics)
    _drift_report, drift = check_data_drift(statistics)
    validation = validation_gate(quality, drift)
    trained, _history, training_report, _curves = train_model(
        train_set, val_set, after="validation_gate"
    )
    model, calibration = calibrate_model(trained, val_set)
    evaluation, threshold, _plots, _calibration_plot = evaluate_model(model, val_set, test_set)
    guard = fit_input_guard(model, train_set, val_set)
    _errors, _gradcam, error_analysis = analyze_errors(model, test_set, threshold)
    external = None
    if external_test_dirs:
        external_listing = "+".join(data_listing(d) for d in external_test_dirs)
        external_sets, external_sources = load_external_sets(external_test_dirs, external_listing)
        external, _external_plots, _external_drift = evaluate_external(
            model,
            threshold,
            external_sets,
            external_sources,
            train_set,
            val_set,
            test_set,
            statistics,
        )
    release = make_release_record(
        statistics,
        fingerprint,
        [data_dir, *extra],
        split_summary,
        training_report,
        evaluation,
        validation,
        calibration,
        error_analysis,
        external,
    )
    card, _card_html = create_model_card(release)
    bentoml_model, model_archive = package_model(model, release, guard)
    bento, _archive = build_bento(bentoml_model, model_archive, card)
    registered = register_model(release, bentoml_model, bento)
    promote_model(model, test_set, registered)
