"""Zoo specifications: strict parsing of the TOML recipes, and the grid of cells and models they span."""

from zoobench.spec.files import builtin_spec_paths, list_specs, load_spec, read_spec_file
from zoobench.spec.schema import (SECTIONS, AugmentationSpec, Axis, DataSpec, EvaluationSpec, GridSpec, ModelSpec,
                                  PhaseThresholds, TrainingSpec, ZooSpec, parse_table)
from zoobench.spec.strict import SpecError

__all__ = ["SECTIONS", "AugmentationSpec", "Axis", "DataSpec", "EvaluationSpec", "GridSpec", "ModelSpec",
           "PhaseThresholds", "SpecError", "TrainingSpec", "ZooSpec", "builtin_spec_paths", "list_specs", "load_spec",
           "parse_table", "read_spec_file"]
