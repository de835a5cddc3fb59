"""hear_maeast: MSM-MAE and MAE-AST masked-autoencoder audio models as a HEAR 2021 module.

The HEAR API (`load_model`, `get_scene_embeddings`, `get_timestamp_embeddings`) lives in `hear_maeast.api`; it is
imported on first use, so that commands which need no model (`hear-maeast table`, `tasks`) start without torch.
"""

__version__ = "0.1.0"

__all__ = ["load_model", "get_scene_embeddings", "get_timestamp_embeddings", "__version__"]


def __getattr__(name):
    if name in __all__:
        from hear_maeast import api

        return getattr(api, name)
    raise AttributeError(f"module 'hear_maeast' has no attribute {name!r}")
