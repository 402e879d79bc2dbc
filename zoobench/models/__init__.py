"""Architectures: the catalogue of families, their builders, and building a recipe's model."""

from zoobench.models.build import build_model, check_builder, initialize
from zoobench.models.catalog import ARCHITECTURES, ArchitectureInfo

__all__ = ["ARCHITECTURES", "ArchitectureInfo", "build_model", "check_builder", "initialize"]
