"""The README's configuration reference and commands cannot drift from the code."""

import re
from pathlib import Path

import pytest
import yaml

from xray.promotion import PromotionGates
from xray.training import TrainConfig
from xray.validation import DriftGateConfig, QualityGateConfig

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _config_keys(pipeline: str = "training") -> dict[str, object]:
    config = yaml.safe_load((ROOT / "configs" / f"{pipeline}.yaml").read_text())
    keys: dict[str, object] = {f"model.{k}": v for k, v in config["model"].items()}
    keys = {k: v for k, v in keys.items() if k in ("model.name", "model.version")}
    for step, body in config["steps"].items():
        for name, value in body["parameters"].items():
            if isinstance(value, dict):
                keys.update({f"{step}.{name}.{k}": v for k, v in value.items()})
            else:
                keys[f"{step}.{name}"] = value
    return keys


@pytest.mark.parametrize("pipeline", ["training", "inference"])
def test_every_config_key_is_documented_with_its_value(pipeline: str) -> None:
    rows = dict(re.findall(r"^\| `([\w.]+)` \| `([^`]*)` \|", README, flags=re.MULTILINE))
    for key, value in _config_keys(pipeline).items():
        assert key in rows, f"README configuration table lacks {key}"
        shown = rows[key]
        expected = (
            "null"
            if value is None
            else str(value).lower()
            if isinstance(value, bool)
            else str(value)
        )
        number = _number(shown)
        assert shown == expected or (number is not None and number == _number(value)), (
            key,
            shown,
            value,
        )


def _number(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def test_every_train_setting_is_in_the_shipped_config() -> None:
    keys = {k.rsplit(".", 1)[-1] for k in _config_keys() if k.startswith("train_model.config.")}
    assert keys == set(TrainConfig.model_fields)


def test_every_step_setting_is_documented() -> None:
    documented = set(re.findall(r"^\| `([\w.]+)` \|", README, flags=re.MULTILINE))
    for step, model in (
        ("train_model", TrainConfig),
        ("check_data_quality", QualityGateConfig),
        ("check_data_drift", DriftGateConfig),
    ):
        for field in model.model_fields:
            assert f"{step}.config.{field}" in documented, f"{step}.config.{field} not in README"
    for step, model in (("promote_model", PromotionGates),):
        for field in model.model_fields:
            assert f"{step}.gates.{field}" in documented, f"{step}.gates.{field} not in README"


def test_quickstart_commands_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "make run" in README and "make test" in README
    assert re.search(r"^run: ", makefile, re.MULTILINE) and "run.py --stack local" in makefile
    assert re.search(r"^test: ", makefile, re.MULTILINE)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


# Step inputs that the pipelines wire (artifacts or pipeline arguments), not settings.
WIRED = {
    "load_dataset.listing_version",
    "load_dataset.extra_data_dirs",
    "create_model_card.temperature",
    "create_model_card.error_analysis",
    "create_model_card.external_metrics",
    "load_external_sets.listing_version",
    "promote_model.external_metrics",
    "register_model.external_metrics",
}


def test_every_step_parameter_with_a_default_is_documented() -> None:
    import importlib
    import inspect
    import pkgutil

    import steps

    documented = set(re.findall(r"^\| `([\w.]+)` \|", README, flags=re.MULTILINE))
    missing = []
    for module in pkgutil.iter_modules(steps.__path__):
        step = getattr(importlib.import_module(f"steps.{module.name}"), module.name, None)
        if step is None:
            continue
        for name, parameter in inspect.signature(step.entrypoint).parameters.items():
            key = f"{module.name}.{name}"
            if parameter.default is inspect.Parameter.empty or key in WIRED:
                continue
            if key not in documented and not any(d.startswith(key + ".") for d in documented):
                missing.append(key)
    assert not missing, f"step settings missing from the README's configuration tables: {missing}"
