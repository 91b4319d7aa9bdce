"""Tuning methods: one small file each, registered by name (the paper's nine baselines plus Mona)."""

from monatune.methods import (  # noqa: F401  (registration order = the paper's table order)
    full,
    fixed,
    bitfit,
    normtuning,
    partial1,
    adapter,
    lora,
    adaptformer,
    lorand,
    mona,
)
from monatune.methods.base import (
    MethodOptions,
    TuningMethod,
    build_method,
    get_method_class,
    methods,
    option_names,
    register_method,
)

__all__ = [
    "MethodOptions",
    "TuningMethod",
    "build_method",
    "get_method_class",
    "methods",
    "option_names",
    "register_method",
]
