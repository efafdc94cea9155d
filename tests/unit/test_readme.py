"""The README's configuration reference and commands cannot drift from the code."""

import re
from pathlib import Path

import pytest
import yaml

from xray.logic.settings import PIPELINE_STEPS, STEP_SETTINGS, settings_table

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _run_config(pipeline: str) -> dict:
    return yaml.safe_load((ROOT / "configs" / f"{pipeline}.yaml").read_text()) or {}


@pytest.mark.parametrize("pipeline", ["training", "inference"])
def test_readme_configuration_table_is_generated_from_the_settings(pipeline: str) -> None:
    table = settings_table(pipeline, _run_config(pipeline))
    shown = re.search(
        rf"<!-- settings:{pipeline} -->\n(.*?)\n<!-- /settings -->", README, flags=re.DOTALL
    )
    assert shown, f"README lacks the generated {pipeline} table (python -m xray.logic.settings)"
    assert shown.group(1).strip() == table, (
        f"README's {pipeline} configuration table is out of date: paste the output of "
        "python -m xray.logic.settings"
    )


@pytest.mark.parametrize("pipeline", ["training", "inference"])
def test_shipped_run_configs_hold_only_deliberate_valid_choices(pipeline: str) -> None:
    """Every value a run config sets is a valid setting and differs from its default
    (a value equal to the default would be a second place for it)."""
    config = _run_config(pipeline)
    for step, body in (config.get("steps") or {}).items():
        assert step in PIPELINE_STEPS[pipeline], f"{pipeline}.yaml configures unknown {step}"
        parameters = (body or {}).get("parameters") or {}
        assert set(parameters) <= {"config"}, f"{step}: settings go under parameters.config"
        model = STEP_SETTINGS[step]
        values = model.model_validate(parameters.get("config") or {})
        for name in parameters.get("config") or {}:
            default = model.model_fields[name].get_default(call_default_factory=True)
            assert getattr(values, name) != default, f"{step}.config.{name} repeats its default"


def test_every_configurable_step_takes_its_settings_model_as_config() -> None:
    """One parameter convention: a step's settings are its ``config`` (the model from
    xray.logic.settings); other parameters are wired inputs without defaults."""
    import importlib
    import inspect
    import pkgutil
    import typing

    import steps

    seen = set()
    found = []
    for module in pkgutil.walk_packages(steps.__path__, "steps."):
        step_name = module.name.rsplit(".", 1)[-1]
        step = getattr(importlib.import_module(module.name), step_name, None)
        if step is None or module.ispkg:
            continue
        found.append(module.name)
        for name, parameter in inspect.signature(step.entrypoint).parameters.items():
            key = f"{step_name}.{name}"
            if name == "config":
                assert typing.get_args(parameter.annotation)[0] is STEP_SETTINGS[step_name]
                seen.add(step_name)
            elif parameter.default is not inspect.Parameter.empty:
                assert key in WIRED, f"{key} has a default outside its settings model"
    assert seen == set(STEP_SETTINGS)
    assert len(found) == 26  # every step file, in its stage's folder


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
    "load_external_sets.listing_version",
    "make_release_record.calibration",
    "make_release_record.error_analysis",
    "make_release_record.external",
    "load_prediction_window.since",  # the monitoring window: run.py --since / --until
    "load_prediction_window.until",
    "batch_predict.shard_index",  # the pipeline's parallel shards (shards on a cloud stack)
    "batch_predict.shard_count",
}
