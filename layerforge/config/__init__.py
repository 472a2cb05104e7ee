"""Config loading: YAML with positions, overrides, pydantic validation."""

from .model import ModelConfig, ModelSpec, load_config, parse_model

__all__ = ["ModelConfig", "ModelSpec", "load_config", "parse_model"]
