"""Fine-tuning methods: one module each, registered in one line (see
:mod:`tunelab.methods.base`); duplicates are rejected. Import order is listing order."""

# isort: off
from tunelab.methods import full, freeze, bitfit, lora, adalora, ia3, prompt, adapter  # noqa: F401
from tunelab.methods import setfit  # noqa: F401

# isort: on
from tunelab.methods.base import (
    METHODS,
    BuildFrom,
    Method,
    MethodContext,
    TrainingData,
    check_options,
    check_supported,
    count_parameters,
    field_problem,
    get_method,
    option,
    register_method,
    valid_pairs,
)

__all__ = [
    "METHODS",
    "BuildFrom",
    "Method",
    "MethodContext",
    "TrainingData",
    "check_options",
    "field_problem",
    "check_supported",
    "count_parameters",
    "get_method",
    "option",
    "register_method",
    "valid_pairs",
]
