"""The ``production`` version of the ZenML Model, and its Bento on this machine.

Used by ``run.py --pipeline inference`` (which model scores new data), by the serving
launcher (``python -m application.serve``; the service itself never imports this) and by
the tests.
"""

import logging
import tempfile
from pathlib import Path
from typing import Any

from xray.logic.constants import BENTO_ARCHIVE_ARTIFACT, MODEL_NAME

logger = logging.getLogger(__name__)


class NoProductionModelError(RuntimeError):
    """There is no ``production`` version of the model; the message says how to get one."""


def production_version(model_name: str = MODEL_NAME) -> Any | None:
    """The ``production`` model version, or None when there is none (or no model)."""
    from zenml.client import Client
    from zenml.enums import ModelStages

    try:
        return Client().get_model_version(model_name, ModelStages.PRODUCTION)
    except KeyError:
        return None


def _versions_summary(model_name: str) -> str:
    from zenml.client import Client

    try:
        versions = Client().list_model_versions(model_name, sort_by="desc:number", size=5)
    except KeyError:
        return f"There is no model '{model_name}' yet."
    lines = []
    for version in versions.items:
        promotion = version.run_metadata.get("promotion") or {}
        reasons = [r for r in promotion.get("reasons", []) if r.startswith("FAILED")]
        why = f": {'; '.join(reasons)}" if reasons else ""
        lines.append(f"  version {version.number} ({version.stage or 'no stage'}){why}")
    return "Latest versions:\n" + "\n".join(lines) if lines else "It has no version yet."


def require_production(model_name: str = MODEL_NAME) -> Any:
    """The ``production`` model version.

    Raises:
        NoProductionModelError: Naming the latest versions, why they were not promoted,
            and the commands that fix it.
    """
    version = production_version(model_name)
    if version is not None:
        return version
    raise NoProductionModelError(
        f"No production version of model '{model_name}'. "
        f"{_versions_summary(model_name)}\n"
        "Train one that passes the promotion gates (python run.py --stack local), or "
        "promote a version by hand: zenml model version update "
        f"{model_name} <version> --stage production"
    )


def production_model_tag(model_name: str = MODEL_NAME) -> str:
    """The BentoML model tag of the production version, present in the local store.

    When the version was trained elsewhere (a cloud stack, another machine), its Bento is
    imported from the artifact store first; importing a Bento adds its model to the
    local BentoML model store.

    Raises:
        NoProductionModelError: No production version, or one without a packaged model.
    """
    import bentoml
    from bentoml.exceptions import NotFound

    version = require_production(model_name)
    tag = version.run_metadata.get("bentoml_model_tag")
    if not tag:
        raise NoProductionModelError(
            f"Production version {version.number} of '{model_name}' has no BentoML model "
            "(it was registered before packaging existed); train again: python run.py"
        )
    try:
        bentoml.models.get(tag)
    except NotFound:
        import_bento_archive(version)
    return str(tag)


def version_model_tag(model_name: str, version: str) -> tuple[Any, str]:
    """A model version (a number, or a stage: ``staging``, ``latest``) and its BentoML
    model tag, present in the local store (imported from its Bento archive if needed).

    Raises:
        NoProductionModelError: No such version, or one without a packaged model.
    """
    import bentoml
    from bentoml.exceptions import NotFound
    from zenml.client import Client

    try:
        found = Client().get_model_version(model_name, version)
    except KeyError:
        raise NoProductionModelError(
            f"Model '{model_name}' has no version {version!r}. {_versions_summary(model_name)}"
        ) from None
    tag = found.run_metadata.get("bentoml_model_tag")
    if not tag:
        raise NoProductionModelError(
            f"Version {found.number} of '{model_name}' has no BentoML model; train again"
        )
    try:
        bentoml.models.get(tag)
    except NotFound:
        import_bento_archive(found)
    return found, str(tag)


def import_bento_archive(version: Any) -> str:
    """Imports a model version's exported Bento (and so its model) into the local stores.

    Returns:
        The imported Bento's tag.
    """
    import bentoml

    try:
        data: bytes = version.get_artifact(BENTO_ARCHIVE_ARTIFACT).load()
    except (AttributeError, KeyError):
        data = None  # type: ignore[assignment]
    if not data:
        raise NoProductionModelError(
            f"Version {version.number} has no {BENTO_ARCHIVE_ARTIFACT} artifact to import "
            "its model from; train again: python run.py"
        )
    with tempfile.TemporaryDirectory(prefix="xray-bento-") as tmp:
        path = Path(tmp) / "service.bento"
        path.write_bytes(data)
        bento = bentoml.bentos.import_bento(str(path))
    logger.info("Imported Bento %s of model version %s", bento.tag, version.number)
    return str(bento.tag)
