"""Stores a :class:`xray.reporting.plots.PngFigure` and shows it as an image in the dashboard."""

import json
import os
from typing import Any, ClassVar

from zenml.enums import ArtifactType, VisualizationType
from zenml.materializers.base_materializer import BaseMaterializer

from xray.reporting.plots import PngFigure

PNG_FILE = "figure.png"
INFO_FILE = "figure.json"


class PngFigureMaterializer(BaseMaterializer):
    """Writes ``figure.png`` (also the visualization) and its title."""

    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (PngFigure,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA_ANALYSIS

    def save(self, data: PngFigure) -> None:
        """Writes the PNG and a JSON file with the title."""
        with self.artifact_store.open(os.path.join(self.uri, PNG_FILE), "wb") as f:
            f.write(data.png)
        with self.artifact_store.open(os.path.join(self.uri, INFO_FILE), "w") as f:
            json.dump({"title": data.title}, f)

    def load(self, data_type: type[Any]) -> PngFigure:
        """Reads the figure back."""
        with self.artifact_store.open(os.path.join(self.uri, PNG_FILE), "rb") as f:
            png = f.read()
        with self.artifact_store.open(os.path.join(self.uri, INFO_FILE), "r") as f:
            title = json.load(f)["title"]
        return PngFigure(png=png, title=title)

    def save_visualizations(self, data: PngFigure) -> dict[str, VisualizationType]:
        """The PNG itself is the visualization."""
        return {os.path.join(self.uri, PNG_FILE): VisualizationType.IMAGE}
