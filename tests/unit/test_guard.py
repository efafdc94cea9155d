"""The input-domain guard: fitted ranges and distance, verdicts, JSON round trip."""

import json

import numpy as np
import pytest

from synthetic import synthetic_pixels
from xray.ml.guard import InputGuard, features_and_embeddings, fit_guard, image_features

RNG = np.random.default_rng(0)


def xray_like(n: int) -> list[np.ndarray]:
    return [np.stack([synthetic_pixels(i % 2, 48, RNG)] * 3, axis=2) for i in range(n)]


@pytest.fixture(scope="module")
def guard() -> InputGuard:
    train = xray_like(200)
    val = xray_like(200)
    emb_train = RNG.normal(0, 1, (200, 8))
    emb_val = RNG.normal(0, 1, (200, 8))
    return fit_guard(
        [image_features(p) for p in train],
        emb_train,
        [image_features(p) for p in val],
        emb_val,
        target_acceptance=0.99,
    )


def test_threshold_accepts_the_target_share_of_validation(guard: InputGuard) -> None:
    assert guard.fitted["val_acceptance"] >= 0.99
    assert guard.fitted["train_acceptance"] >= 0.95
    fresh = xray_like(100)
    verdicts = guard.check_batch(np.stack(fresh), RNG.normal(0, 1, (100, 8)))
    assert sum(v.accepted for v in verdicts) >= 95  # unseen in-distribution images


def test_far_embedding_is_refused_with_the_distance(guard: InputGuard) -> None:
    image = xray_like(1)[0]
    verdict = guard.check(image_features(image), float(guard.distances(np.full((1, 8), 6.0))[0]))
    assert not verdict.accepted and "feature space" in verdict.reason
    assert verdict.distance > guard.threshold


def test_colour_photo_is_refused_and_gray_images_are_not(guard: InputGuard) -> None:
    photo = np.zeros((48, 48, 3), np.uint8)
    photo[..., 0], photo[..., 1], photo[..., 2] = 200, 120, 40
    photo += RNG.integers(0, 30, photo.shape, dtype=np.uint8)
    reasons = guard.statistic_reasons(image_features(photo))
    assert len(reasons) == 1 and "colour image" in reasons[0]
    assert guard.colour_limit >= 6.0
    blank = np.full((48, 48, 3), 255, np.uint8)
    assert guard.statistic_reasons(image_features(blank)) == []  # the distance decides


def test_round_trips_through_json(guard: InputGuard) -> None:
    copy = InputGuard.from_dict(json.loads(json.dumps(guard.to_dict())))
    emb = RNG.normal(0, 1, (5, 8))
    assert np.allclose(copy.distances(emb), guard.distances(emb))
    assert copy.summary()["val_acceptance"] == guard.fitted["val_acceptance"]


def test_too_few_validation_images_turn_the_distance_test_off() -> None:
    features = [image_features(p) for p in xray_like(30)]
    small = fit_guard(features, RNG.normal(0, 1, (30, 4)), features, RNG.normal(0, 1, (30, 4)))
    assert small.threshold is None and not small.fitted["distance_test"]
    assert "too few" in small.fitted["note"] and "199 are needed" in small.fitted["note"]
    far = small.check(features[0], 1e9)
    assert far.accepted  # only the colour test runs
    with pytest.raises(ValueError, match="at least 2 training images"):
        fit_guard(features[:1], np.zeros((1, 2)), features, np.zeros((30, 2)))
    with pytest.raises(ValueError, match="target_acceptance"):
        fit_guard(features, np.zeros((30, 2)), features, np.zeros((30, 2)), 1.0)


def test_conformal_threshold_is_the_right_order_statistic() -> None:
    features = [image_features(p) for p in xray_like(10)] * 40
    train = RNG.normal(0, 1, (400, 3))
    val = RNG.normal(0, 1, (399, 3))
    guard = fit_guard(features, train, features[:399], val, target_acceptance=0.99)
    distances = np.sort(guard.distances(val))
    assert guard.threshold == pytest.approx(distances[395], rel=1e-6)  # ceil(400 * 0.99) = 396


def test_embeddings_come_from_the_models_pool_layer() -> None:
    from xray.ml.model import build_model

    model = build_model(backbone="compact_cnn", image_size=48, seed=0).model
    batch = np.stack(xray_like(4))
    features, embeddings, probabilities = features_and_embeddings(model, [batch[:2], batch[2:]])
    assert len(features) == 4 and embeddings.shape == (4, 256)
    expected = np.asarray(model(batch, training=False)).reshape(-1)
    assert np.allclose(probabilities, expected, atol=1e-5)


def test_colourfulness_is_the_mean_channel_spread() -> None:
    rng = np.random.default_rng(4)
    colour = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    expected = (colour.max(axis=2).astype(int) - colour.min(axis=2)).mean()
    assert image_features(colour)["colourfulness"] == pytest.approx(expected, abs=1e-12)
    gray = np.repeat(colour[:, :, :1], 3, axis=2)
    assert image_features(gray)["colourfulness"] == 0.0
