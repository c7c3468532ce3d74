"""Built-in models and datasets (the offline default) and loaders for user models.

``load_model`` accepts a built-in name, ``timm:<name>``, a checkpoint path or
``package.module:factory``; ``load_dataset`` gives the digits or a planted dataset whose items
carry their ground truth (where, which Haar scale, which concept).
"""
from .datasets import ArrayDataset, PlantedDataset
from .loading import (BUILTIN_MODELS, CheckpointError, Normalize, list_datasets, list_models, load_dataset,
                      load_model, save_checkpoint)

__all__ = ["ArrayDataset", "PlantedDataset", "BUILTIN_MODELS", "CheckpointError", "Normalize", "list_datasets",
           "list_models", "load_dataset", "load_model", "save_checkpoint"]
