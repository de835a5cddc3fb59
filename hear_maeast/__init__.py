"""hear_maeast: MSM-MAE and MAE-AST masked-autoencoder audio models as a HEAR 2021 module."""

__version__ = "0.1.0"

from hear_maeast.api import get_scene_embeddings, get_timestamp_embeddings, load_model  # noqa: E402

__all__ = ["load_model", "get_scene_embeddings", "get_timestamp_embeddings", "__version__"]
