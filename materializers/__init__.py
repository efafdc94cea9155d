"""ZenML materializers for the project's own artifact types."""

from materializers.image_dataset_materializer import ImageDatasetMaterializer
from materializers.keras_model_materializer import KerasModelMaterializer
from materializers.png_figure_materializer import PngFigureMaterializer

__all__ = ["ImageDatasetMaterializer", "KerasModelMaterializer", "PngFigureMaterializer"]
