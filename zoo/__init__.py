"""zoo: classic networks in PyTorch, faithful and readable. The public API is below, nothing else."""

from zoo.registry import create_model, list_models, model_info, register_model
from zoo.weights import load_pretrained

__all__ = ["create_model", "list_models", "model_info", "register_model", "load_pretrained"]
__version__ = "0.1.0"
